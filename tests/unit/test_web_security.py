"""The web app against other sites' pages, foreign hosts and odd input, over real HTTP to a real uvicorn server.

The attack requests are the ones a browser sends without asking (no CORS preflight): a form posted from
``http://evil.example``, a ``no-cors`` fetch with a ``text/plain`` body, a request from another port of
this machine; the test checks the answer and that nothing changed in the data directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.unit.web_support import BLUE, RED, live_server, png, wait_trained

EVIL = "http://evil.example"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture(scope="module")
def trained(small_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A live server whose model is personalised and which has one pending example."""
    from mlupdate.web import create_app

    data = tmp_path_factory.mktemp("data")
    samples = tmp_path_factory.mktemp("samples")
    (samples / "red.png").write_bytes(png(RED))
    with live_server(create_app(small_model, data, samples)) as url, httpx.Client(base_url=url) as c:
        own = {"X-Requested-With": "tests"}
        assert c.post("/api/examples", data={"label": "Cat"}, files={"image": ("r.png", png(RED))},
                      headers=own).status_code == 201
        assert c.post("/api/train", headers=own).status_code == 202
        assert wait_trained(c)["state"] == "completed"
        assert c.post("/api/examples", data={"label": "Dog"}, files={"image": ("b.png", png(BLUE))},
                      headers=own).status_code == 201
        yield url, data


def snapshot(c: httpx.Client, data: Path) -> tuple:
    model = c.get("/api/model").json()
    files = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file() and "sqlite" not in p.name)
    return model["personalized"], model["trained"], c.get("/api/examples").json(), c.get("/api/train").json(), files


ATTACKS = [
    # the three: plain cross-origin form posts, empty or multipart
    ("POST", "/api/reset", {"Origin": EVIL, "Content-Type": FORM}, {"content": b""}),
    ("POST", "/api/train", {"Origin": EVIL, "Content-Type": FORM}, {"content": b""}),
    ("POST", "/api/examples", {"Origin": EVIL}, {"data": {"label": "Cat"}, "files": {"image": ("x.png", png(RED))}}),
    # what Chromium adds to the same form posts
    ("POST", "/api/reset", {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Content-Type": FORM}, {"content": b""}),
    # a no-cors fetch with a JSON-looking text/plain body
    ("POST", "/api/train", {"Origin": EVIL, "Content-Type": "text/plain"}, {"content": b'{"epochs": 1}'}),
    # a page of another port on this machine is "same-site", not "same-origin"
    ("POST", "/api/reset", {"Origin": "http://127.0.0.1:1", "Sec-Fetch-Site": "same-site"}, {}),
    ("POST", "/api/reset", {"Origin": "null", "Content-Type": FORM}, {}),  # a sandboxed iframe's form
    ("POST", "/api/reset", {"Sec-Fetch-Site": "cross-site"}, {}),
    ("DELETE", "/api/examples/{id}", {"Origin": EVIL}, {}),
    # no Origin at all (a form from a page that hides it) and no JSON body nor client header
    ("POST", "/api/reset", {"Content-Type": FORM}, {"content": b""}),
    ("POST", "/api/examples", {}, {"data": {"label": "Cat", "sample": "red.png"}}),
]


@pytest.mark.parametrize("method,path,headers,body", ATTACKS)
def test_cross_site_requests_change_nothing(trained: tuple[str, Path], method: str, path: str, headers: dict,
                                            body: dict) -> None:
    url, data = trained
    with httpx.Client(base_url=url) as c:
        before = snapshot(c, data)
        assert before[0] is True and before[2]["count"] == 1
        path = path.format(id=before[2]["examples"][0]["id"])
        r = c.request(method, path, headers=headers, **body)
        assert r.status_code == 403, r.text
        assert r.json()["detail"].startswith("Refused")
        assert snapshot(c, data) == before


def test_foreign_host_is_refused(trained: tuple[str, Path], small_model: Path, tmp_path: Path) -> None:
    url, _ = trained
    with httpx.Client(base_url=url) as c:
        for path in ("/", "/api/model", "/api/examples"):  # a DNS-rebinding page reading the answers
            r = c.get(path, headers={"Host": "evil.example"})
            assert r.status_code == 400 and "--allow-host" in r.json()["detail"]
        assert c.get("/api/model", headers={"Host": "localhost:8000"}).status_code == 200
    from mlupdate.web import create_app

    with live_server(create_app(small_model, tmp_path / "d", allowed_hosts=["cats.lan"])) as other, \
            httpx.Client(base_url=other) as c:
        assert c.get("/api/model", headers={"Host": "cats.lan:8000"}).status_code == 200
        assert c.get("/api/model", headers={"Host": "dogs.lan"}).status_code == 400


def test_the_apps_own_requests_pass(small_model: Path, tmp_path: Path) -> None:
    from mlupdate.web import create_app

    with live_server(create_app(small_model, tmp_path / "d")) as url, httpx.Client(base_url=url) as c:
        own = {"Origin": url, "Sec-Fetch-Site": "same-origin", "X-Requested-With": "mlupdate"}
        r = c.post("/api/examples", data={"label": "Cat"}, files={"image": ("r.png", png(RED))}, headers=own)
        assert r.status_code == 201, r.text
        assert c.post("/api/train", json={"epochs": 1}, headers={"Origin": url}).status_code == 202  # JSON body
        assert wait_trained(c)["state"] == "completed"
        assert c.post("/api/reset", headers={"X-Requested-With": "curl"}).json()["reset"] is True  # a script


def test_security_headers_and_no_inline_script(trained: tuple[str, Path]) -> None:
    url, _ = trained
    with httpx.Client(base_url=url) as c:
        for r in (c.get("/"), c.get("/docs"), c.get("/api/model"), c.get("/nope"), c.post("/api/reset")):
            csp = r.headers["content-security-policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
            assert r.headers["x-content-type-options"] == "nosniff"
            assert r.headers["x-frame-options"] == "DENY" and r.headers["referrer-policy"] == "no-referrer"
        for page in ("/", "/docs"):
            html = c.get(page).text
            assert "<style" not in html and " style=" not in html and " on" + "click=" not in html
            assert html.count("<script") == html.count("<script src=")


LONG = "a" * 5000
ODD_REQUESTS = [
    ("GET", "/samples/a%00b", {}, 404),
    ("GET", "/samples/" + LONG, {}, 404),
    ("GET", "/samples/" + "/".join(["b" * 200] * 30), {}, 404),
    ("GET", "/samples/..%2f..%2fetc%2fpasswd", {}, 404),
    ("POST", "/api/predict", {"data": {"sample": LONG}}, 404),
    ("POST", "/api/predict", {"data": {"sample": "a\x00b"}}, 404),
    ("POST", "/api/examples", {"data": {"label": "Cat", "sample": LONG}}, 404),
    ("POST", "/api/examples", {"data": {"label": LONG, "sample": "red.png"}}, 400),
    ("POST", "/api/examples", {"data": {"label": "Cat"}, "files": {"image": (LONG, png(RED))}}, 400),
    ("GET", "/api/examples/" + LONG + "/image", {}, 404),
    ("DELETE", "/api/examples/%00", {}, 404),
    ("POST", "/api/train", {"json": {"epochs": "many"}}, 422),
    ("POST", "/api/train", {"content": b"{not json", "headers": {"Content-Type": "application/json"}}, 422),
    ("GET", "/api/train/events", {"headers": {"Last-Event-ID": "x"}}, 422),
    ("GET", "/api/model/download", {"params": {"original": "maybe"}}, 422),
]


@pytest.mark.parametrize("method,path,kw,status", ODD_REQUESTS)
def test_odd_input_gets_a_4xx_with_a_message(small_model: Path, tmp_path: Path, method: str, path: str, kw: dict,
                                             status: int) -> None:
    from mlupdate.web import create_app

    samples = tmp_path / "s"
    samples.mkdir()
    (samples / "red.png").write_bytes(png(RED))
    kw = {**kw, "headers": {"X-Requested-With": "tests", **kw.get("headers", {})}}
    with live_server(create_app(small_model, tmp_path / "d", samples)) as url, httpx.Client(base_url=url) as c:
        r = c.request(method, path, **kw)
        assert r.status_code == status, r.text
        detail = r.json()["detail"]
        assert isinstance(detail, str) and 10 < len(detail) < 400, detail


def test_405_names_the_allowed_methods(trained: tuple[str, Path]) -> None:
    url, _ = trained
    with httpx.Client(base_url=url) as c:
        for method, path, allow in [("OPTIONS", "/api/examples", "GET, POST"), ("OPTIONS", "/api/train", "GET, POST"),
                                    ("PUT", "/api/reset", "POST"), ("PATCH", "/api/model", "GET")]:
            r = c.request(method, path, headers={"X-Requested-With": "tests"})
            assert r.status_code == 405 and r.headers["allow"] == allow, (method, path, r.headers)
            assert allow.split(", ")[0] in r.json()["detail"]


def test_422_bodies_match_the_published_schema(trained: tuple[str, Path]) -> None:
    url, _ = trained
    with httpx.Client(base_url=url) as c:
        spec = c.get("/openapi.json").json()
        assert "HTTPValidationError" not in spec["components"]["schemas"]
        for path, ops in spec["paths"].items():
            for method, op in ops.items():
                if "422" in op["responses"]:
                    ref = op["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
                    assert ref == "#/components/schemas/ErrorOut", (path, method)
        r = c.post("/api/train", json={"epochs": 0}, headers={"X-Requested-With": "tests"})
        assert r.status_code == 422 and list(r.json()) == ["detail"] and "epochs" in r.json()["detail"]
