"""The app in a real browser: Playwright (sync API) driving Debian's Chromium against a real uvicorn server.

The story of the Core ML tutorial: a photo of a breed the demo model confuses is called the wrong
animal; the user relabels a few photos of that breed, presses Train, watches the progress, and the
same photo is now called right; the progress arrives live (several updates of the bar and the loss chart
before "Done"). Also: the API docs work offline, a page of another origin cannot reset the model, and the
rough edges (messages that cover content, the same file chosen twice, broken images, phone wording).
Screenshots go to ``tests/artifacts/`` (not committed).
"""

from __future__ import annotations

import http.server
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

    # Train: progress is pushed live; record every update of the bar and of the phase line.
    page.evaluate("""() => {
      window.__seen = [];
      const note = () => window.__seen.push({t: performance.now(), value: document.querySelector('#bar').value,
        phase: document.querySelector('#phase').textContent,
        points: document.querySelectorAll('#chart polyline').length});
      new MutationObserver(note).observe(document.querySelector('#progress'),
        {attributes: true, childList: true, subtree: true, characterData: true});
    }""")
    page.click("#train")
    log = page.locator("#log")
    expect(log).to_contain_text("Training started on 5 photos", timeout=60_000)
    expect(log).to_contain_text("Epoch 1/", timeout=120_000)
    expect(log).to_contain_text("the model is personalised", timeout=300_000)
    expect(page.locator("#model-badge")).to_have_text("Personalised model")
    expect(page.locator("#count")).to_have_text("0")
    seen = page.evaluate("window.__seen")
    done = next(i for i, s in enumerate(seen) if s["phase"] == "Done.")
    phases = [s["phase"] for s in seen[:done]]
    assert any(p.startswith("Preparing") for p in phases) and any(p.startswith("Saving") for p in phases), phases
    values = sorted({s["value"] for s in seen[:done] if 0 < s["value"] < 100})
    assert len(values) >= 5, values  # the bar moved through several intermediate positions before "Done"
    assert page.locator("#chart polyline").count() == 1
    assert len(page.locator("#chart polyline").get_attribute("points").split()) >= 10  # a point per mini-batch
    page.screenshot(path=str(ARTIFACTS / "app-2-trained.png"), full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.screenshot(path=str(ARTIFACTS / "app-2-trained-phone.png"), full_page=True)
    page.set_viewport_size({"width": 1100, "height": 1000})

    # The first photo is now called a Dog.
    assert choose(page, first) == "Dog"
    expect(page.locator("#answered-by")).to_contain_text("personalised")
    page.screenshot(path=str(ARTIFACTS / "app-3-corrected.png"), full_page=True)

    # Bad input gets a clear message, in the page's flow, and no broken-image icon.
    predictions: list[str] = []
    page.on("request", lambda r: predictions.append(r.url) if r.url.endswith("/api/predict") else None)
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}])
    expect(page.locator("#msg-result")).to_contain_text("not an image file we can read")
    expect(page.locator("#preview")).to_be_hidden()
    expect(page.locator("#no-preview")).to_be_visible()
    page.click("#train")
    expect(page.locator("#msg-training")).to_contain_text("no examples")
    for target in ("#train", "#examples-empty", ".label-btn"):  # nothing is covered by a message
        assert page.evaluate("""(sel) => { const el = document.querySelector(sel); const b = el.getBoundingClientRect();
            const hit = document.elementFromPoint(b.x + b.width / 2, b.y + b.height / 2);
            return hit === el || el.contains(hit); }""", target), target
    # A good photo clears the error; the same file chosen twice is classified twice.
    before = len(predictions)
    assert choose(page, first) == "Dog"
    expect(page.locator("#msg-result")).to_be_hidden()
    expect(page.locator("#preview")).to_be_visible()
    page.set_input_files("#file", str(first))
    expect(page.locator("#label")).to_have_text("Dog", timeout=60_000)
    page.wait_for_timeout(300)
    assert len(predictions) - before == 2, predictions
    assert not errors, errors


def test_api_docs_work_offline(server: str, browser) -> None:
    from playwright.sync_api import expect

    page = browser.new_page()
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.goto(server + "/docs")
    expect(page.locator(".opblock-summary-path").first).to_be_visible(timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    for path in ("/api/predict", "/api/examples", "/api/train", "/api/train/events", "/api/reset"):
        assert any(path == p.strip().replace("\u200b", "") for p in paths), paths
    assert all(u.startswith(server) or u.startswith("data:") for u in requests), requests  # no CDN
    assert not problems, problems  # the CSP blocks nothing the page needs


def test_another_origin_cannot_reset_the_model(server: str, browser) -> None:
    """A page served from another port posts a form to /api/reset, as a malicious site would."""
    import httpx

    html = (f'<form id="f" method="post" action="{server}/api/reset"></form>'
            '<script>document.getElementById("f").submit()</script>').encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args) -> None:
            pass

    evil = http.server.HTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        assert httpx.get(server + "/api/model").json()["personalized"] is True
        page = browser.new_page()
        with page.expect_response(server + "/api/reset") as answer:
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
        assert answer.value.status == 403
        assert httpx.get(server + "/api/model").json()["personalized"] is True
    finally:
        evil.shutdown()


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
    # Phone wording: no "on the left" (it is above) and no "drop it here" (no dragging on a phone).
    page.goto(server)
    assert "on the left" not in page.locator("#empty").inner_text()
    assert "drop" not in page.locator("#drop").inner_text().lower()
    page.locator(".sample").first.click()
    expect(page.locator("#label")).not_to_have_text("…", timeout=60_000)
    page.screenshot(path=str(ARTIFACTS / "app-phone.png"), full_page=True)
