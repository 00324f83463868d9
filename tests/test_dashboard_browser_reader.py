"""The Reader study page in a real browser (headless Debian chromium, Playwright).

1. On tests/reader_fixture.py: the served DOM of every case holds no truth, source, file name, sha256,
   model name or model answer, and a real case's page reads the same as a synthetic one's; the image
   shown is byte for byte the prepared image the models got; time is measured on the server; a
   reload resumes at the same case; no request leaves 127.0.0.1.
2. On the demo store (`python -m data demo`, slow): a reader reads 20 images and then stands beside
   the baseline detector on the overview and compare pages (screenshots).

Screenshots go to $MEDLENS_SCREENSHOTS (or a temporary folder, printed).
"""

from __future__ import annotations

import base64
import hashlib
import html
import random
import re
import time
from pathlib import Path
from urllib.parse import quote, urlparse

import pytest

from cache import reader_study as rs
from cache.store import Store
from tests.dashboard_server import browser_missing, chromium, streamlit_server, wait_idle
from tests.reader_fixture import build_reader_store, forbidden_texts

expect = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed").expect
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or ""),
]
IMAGE = "img[data-testid='reader-case-image']"


def shown_sha(page) -> str:
    """sha256 of the bytes of the case image in the page (its data: URL)."""
    src = page.locator(IMAGE).get_attribute("src")
    return hashlib.sha256(base64.b64decode(src.split(",", 1)[1])).hexdigest()


def create_study(page, size: int) -> None:
    page.get_by_label("Scored cases").fill(str(size))
    page.keyboard.press("Enter")
    wait_idle(page)
    page.get_by_role("button", name="Create study", exact=True).click()
    wait_idle(page, "Study")


def sign_in(page, name: str) -> None:
    page.get_by_label("Your name (stored with your answers)").fill(name)
    page.keyboard.press("Enter")
    page.locator(IMAGE).wait_for(timeout=30_000)
    wait_idle(page)


def answer(page, label: str, rating: int, number: int, total: int) -> None:
    """Pick the rating, press the button, wait for the next case (or the end)."""
    page.get_by_role("radio", name=f"{rating} · {rs.RATINGS[rating]}", exact=True).click()
    wait_idle(page)
    page.get_by_role("button", name=label.capitalize(), exact=True).click()
    if number < total:
        page.get_by_text(f"Case {number + 1} of {total}", exact=True).wait_for(timeout=30_000)
    else:
        page.get_by_text("Thank you", exact=False).wait_for(timeout=30_000)
    wait_idle(page)


def session(root: Path, name: str) -> rs.Session:
    store = Store(root)
    return rs.start_session(store, rs.studies(store)[0], name)


def test_reader_page_is_blinded_times_on_the_server_and_resumes(tmp_path, shots):
    fx = build_reader_store(tmp_path / "store")
    forbidden = forbidden_texts(fx)
    with streamlit_server(fx.root) as server, chromium((1200, 1500)) as page:
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(f"{server.url}/reader?source=SrcAlphaRetina")  # a filter in the URL must not leak
        wait_idle(page, "Reader study")
        create_study(page, 8)
        sign_in(page, "Alice")
        order = session(fx.root, "Alice").order["scored"]
        bodies: dict[str, str] = {}
        # at least four cases, and on until both truths were shown (a random order can open with 4 alike)
        answered = max(
            4, 1 + max(order.index(next(s for s in order if fx.truth(s) == t)) for t in ("real", "synthetic"))
        )
        for index, sha in enumerate(order[:answered]):
            expect(page.get_by_text(f"Case {index + 1} of 8", exact=True)).to_be_visible()
            assert shown_sha(page) == sha  # the same bytes the models got (image_sha256)
            dom = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", page.content())
            leaks = [t for t in forbidden if t in dom or html.escape(t) in dom or quote(t) in dom]
            assert leaks == [], (index, leaks)
            assert not re.search(r"(?i)\b(truth|correct|accuracy|score)\b", page.inner_text("body"))
            body = page.inner_text("body").replace(f"Case {index + 1} of 8", "Case N of 8")
            bodies.setdefault(fx.truth(sha), body)
            if index == 1:
                page.screenshot(path=str(shots / "reader.png"), full_page=True)
            time.sleep(0.4)  # reading time, measured by the server
            answer(page, "real", 2, index + 1, 8)
        assert set(bodies) == {"real", "synthetic"} and bodies["real"] == bodies["synthetic"]
        page.reload()  # a new browser session: the same reader resumes where they stopped
        wait_idle(page, "Reader study")
        sign_in(page, "Alice")
        expect(page.get_by_text(f"Case {answered + 1} of 8", exact=True)).to_be_visible()
        assert shown_sha(page) == order[answered]
        page.screenshot(path=str(shots / "reader-resumed.png"), full_page=True)
        assert "Traceback" not in server.log_text()
    rows = (
        Store(fx.root)
        .connect()
        .execute(
            "SELECT image_sha256, latency_ms FROM responses WHERE model = 'reader:Alice' ORDER BY created_at"
        )
        .fetchall()
    )
    assert [sha for sha, _ in rows] == order[:answered]
    assert all(400 <= latency < 60_000 for _, latency in rows), rows  # the sleep, plus clicks and a rerun
    # nothing of the study leaves the machine (page icons are emoji: no favicon from a font host)
    outside = [u for u in requests if not u.startswith("data:") and urlparse(u).hostname != "127.0.0.1"]
    assert outside == []


def export_demo_images(root: Path, demo_dir: Path) -> dict[str, int]:
    """Keep the demo's prepared images in its store (what `ingest run --keep-images` would do): each
    image prepared again with the run's options, kept only when it hashes to the stored sha256."""
    from cache.prepared import export_prepared
    from ingest.images import PrepOptions, prepare_image

    prep = Store(root).runs()[-1]["prep"]
    options = PrepOptions(
        image_format=prep["format"],
        max_side=prep["max_side"],
        color_mode=prep["color_mode"],
        jpeg_quality=prep.get("quality", 90),
        square=bool(prep.get("square")),
    )
    images = Store(root).connect().execute("SELECT DISTINCT image_sha256, image_path FROM results").fetchall()

    def prepare(path: Path) -> tuple[bytes, str]:
        image = prepare_image(path, options)
        return image.data, image.mime

    return export_prepared(Store(root), [(sha, demo_dir / p) for sha, p in images], prepare)


@pytest.mark.slow
def test_demo_reader_beside_the_baseline(tmp_path, shots, samples_dir):
    from data.demo import build_demo

    root, demo_dir = tmp_path / "demo_store", tmp_path / "demo"
    build_demo(store=root, demo_dir=demo_dir, offline=True, log=lambda _line: None)
    counts = export_demo_images(root, demo_dir)  # the run kept every prepared image already
    assert counts["present"] == 71 and counts["kept"] == counts["mismatch"] == 0, counts
    truths = dict(Store(root).connect().execute("SELECT image_sha256, truth FROM results").fetchall())
    name, rng = "Scripted reader (test)", random.Random(7)
    with streamlit_server(root) as server, chromium((1400, 2000)) as page:
        page.goto(f"{server.url}/reader")
        wait_idle(page, "Reader study")
        create_study(page, 20)
        sign_in(page, name)
        for number, sha in enumerate(session(root, name).order["scored"], start=1):
            right = rng.random() < 0.8  # a plausible reader: right four times in five
            label = truths[sha] if right else ("real" if truths[sha] == "synthetic" else "synthetic")
            rating = {"real": 1 if right else 2, "synthetic": 5 if right else 4}[label]
            if number == 3:
                page.screenshot(path=str(shots / "demo-reader.png"), full_page=True)
            answer(page, label, rating, number, 20)
        page.screenshot(path=str(shots / "demo-reader-done.png"), full_page=True)
        page.goto(f"{server.url}/")
        wait_idle(page, "Overview")
        page.wait_for_function(
            "(t) => Array.from(document.querySelectorAll('td[id^=\"glide-cell\"]'))"
            ".some((c) => c.textContent.startsWith(t))",
            arg=f"reader:{name}",
            timeout=15_000,
        )
        page.screenshot(path=str(shots / "demo-overview-reader.png"), full_page=True)
        page.goto(f"{server.url}/compare?a={quote(f'reader:{name}')}&b=baseline:forensic")
        wait_idle(page, "Compare two models")
        expect(page.get_by_text("Paired images")).to_be_visible()
        expect(page.get_by_text("answered different prompts", exact=False)).to_be_visible()
        page.screenshot(path=str(shots / "demo-compare-reader.png"), full_page=True)
        assert "Traceback" not in server.log_text()
    n = (
        Store(root)
        .connect()
        .execute("SELECT count(*) FROM results WHERE model = ?", [f"reader:{name}"])
        .fetchone()
    )
    assert n == (20,)
