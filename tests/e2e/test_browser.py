"""The app in a real browser: Playwright (sync API) driving Debian's Chromium against a real uvicorn server.

The story of the Core ML tutorial: a photo of a breed the demo model confuses is called the wrong
animal; the user relabels a few photos of that breed, presses Train, watches the progress, and the
same photo is now called right. Screenshots go to ``tests/artifacts/`` (not committed).
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(pets: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    import uvicorn

    from mlupdate.demo import demo_model_path
    from mlupdate.web import create_app

    app = create_app(demo_model_path(), tmp_path_factory.mktemp("appdata"), pets)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    end = time.time() + 60
    while not srv.started:
        if time.time() > end or not thread.is_alive():
            pytest.fail("the uvicorn server did not start")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's Chromium (apt-get install -y chromium); .ci/run does.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        yield b
        b.close()


def choose(page, photo: Path) -> str:
    """Upload a photo with the file picker and return the label the page shows."""
    from playwright.sync_api import expect

    page.set_input_files("#file", str(photo))
    label = page.locator("#label")
    expect(label).not_to_have_text("…", timeout=60_000)
    expect(page.locator("#preview")).to_be_visible()
    return label.inner_text()


def test_relabel_train_and_see_the_correction(server: str, browser, pets: Path) -> None:
    from playwright.sync_api import expect

    from mlupdate.demo import demo_info

    breed = demo_info()["dog_as_cat"]  # a dog breed the demo model calls Cat
    first = sorted((pets / "test" / "dog").glob(f"{breed}_*.jpg"))[0]
    corrections = sorted((pets / "train" / "dog").glob(f"{breed}_*.jpg"))[:6]
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(server)
    expect(page.locator("h1")).to_contain_text("Cat or Dog")
    expect(page.locator("#model-badge")).to_have_text("Original model")
    assert page.locator(".sample").count() > 100  # the gallery of pet photos
    expect(page.locator("footer")).to_contain_text("Oxford-IIIT Pet")

    # The deliberately confused breed is called a Cat.
    assert choose(page, first) == "Cat"
    cat_pct = float(page.locator('.bar[data-label="Cat"] .bar-value').inner_text().rstrip("%"))
    dog_pct = float(page.locator('.bar[data-label="Dog"] .bar-value').inner_text().rstrip("%"))
    assert cat_pct > 50 and abs(cat_pct + dog_pct - 100) < 0.2
    page.screenshot(path=str(ARTIFACTS / "app-1-wrong.png"), full_page=True)

    # Relabel several photos of that breed.
    for i, photo in enumerate(corrections, 1):
        choose(page, photo)
        page.click('button.label-btn[data-label="Dog"]')
        expect(page.locator("#count")).to_have_text(str(i), timeout=30_000)
    expect(page.locator("#examples li")).to_have_count(len(corrections))
    # Every pending photo says "Dog": the page warns that one-label training pulls everything toward it.
    expect(page.locator("#one-sided")).to_be_visible()
    expect(page.locator("#one-sided")).to_contain_text("say “Dog”")

    # Remove one, as a user who changed their mind.
    page.locator("#examples li .remove").last.click()
    expect(page.locator("#count")).to_have_text(str(len(corrections) - 1))

    # Train: progress appears live, then the model is personalised.
    page.click("#train")
    log = page.locator("#log")
    expect(log).to_contain_text("Training started on 5 photos", timeout=60_000)
    expect(log).to_contain_text("Epoch 1/", timeout=120_000)
    expect(log).to_contain_text("the model is personalised", timeout=300_000)
    expect(page.locator("#model-badge")).to_have_text("Personalised model")
    expect(page.locator("#count")).to_have_text("0")
    page.screenshot(path=str(ARTIFACTS / "app-2-trained.png"), full_page=True)

    # The first photo is now called a Dog.
    assert choose(page, first) == "Dog"
    expect(page.locator("#answered-by")).to_contain_text("personalised")
    page.screenshot(path=str(ARTIFACTS / "app-3-corrected.png"), full_page=True)

    # Bad input gets a clear message and the page keeps working.
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}])
    expect(page.locator("#toast")).to_contain_text("not an image")
    page.click("#train")
    expect(page.locator("#toast")).to_contain_text("no examples")
    assert not errors, errors


def test_phone_layout(server: str, browser, pets: Path) -> None:
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                            has_touch=True)
    page.goto(server)
    page.locator(".sample").first.click()
    expect(page.locator("#label")).not_to_have_text("…", timeout=60_000)
    # Nothing wider than the screen: no horizontal scrolling on a phone.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    box = page.locator('button.label-btn[data-label="Cat"]').bounding_box()
    assert box is not None and box["height"] >= 40  # big enough to tap
    page.screenshot(path=str(ARTIFACTS / "app-phone.png"), full_page=True)
