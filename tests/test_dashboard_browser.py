"""The dashboard in a real browser: `streamlit run` on loopback, headless Debian chromium via Playwright.

Screenshots go to $MEDLENS_SCREENSHOTS (or a temporary folder, printed). Table values are asserted
through AppTest (tests/test_dashboard_pages.py); here: pages render, links reproduce views, and model
text containing HTML, script or Markdown links stays inert.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urljoin, urlparse

import pytest

from cache.metrics import Filters
from dashboard import filters as qf
from tests.dashboard_fixture import INJECTION, MODEL_A, MODEL_B, build_fixture_store
from tests.dashboard_server import PAGES, browser_missing, chromium, streamlit_server, wait_idle

expect = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed").expect
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")]

CELLS = "() => Array.from(document.querySelectorAll('td[id^=\"glide-cell\"]')).map((c) => c.textContent)"
HAS_CELL = "(t) => Array.from(document.querySelectorAll('td[id^=\"glide-cell\"]')).some((c) => c.textContent.startsWith(t))"
#: url path -> texts that must be visible once the page has rendered
KEY_TEXT = {
    "": ["Which generator fools which model", "Accuracy (95% Wilson CI)"],
    "confusion": [f"{MODEL_A} · fundus", "(57%)", "All cells"],
    "gallery": ["Showing 1–12 of 26 images.", "real · KagglePneumonia"],
    "compare": ["McNemar exact p", "0.227", "Per modality"],
    "runs": ["Errors by model and type", "Cost per run (USD)", "Run provenance"],
    "quality": ["Interpretation quality", "names a finding"],
    "readers": ["No reader answers match the filters", "Calibration of stated confidence"],
    "review": ["Nothing to review here.", "Parser vs judge"],
    "grading": ["Your name (as a grader)"],
    "reader": ["No reader study in this store yet."],
}
#: url path -> values that must appear in the first table drawn on the page
KEY_CELLS = {"": "0.583 [0.320, 0.807]", "runs": "429 Too Many Requests: retry after 20 s", "quality": "0.3846"}


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    fx = build_fixture_store(tmp_path_factory.mktemp("browser") / "store")
    with streamlit_server(fx.root) as server, chromium() as page:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        yield fx, server, page, dialogs


def test_every_page_renders(app, shots):
    fx, server, page, dialogs = app
    for url, title in PAGES.items():
        started = time.monotonic()
        page.goto(f"{server.url}/{url}")
        wait_idle(page, title)
        elapsed = time.monotonic() - started
        for text in KEY_TEXT[url]:
            expect(page.get_by_text(text).first).to_be_visible(timeout=10_000)
        if url in KEY_CELLS:
            page.wait_for_function(HAS_CELL, arg=KEY_CELLS[url], timeout=15_000)
        assert page.get_by_text("Deploy", exact=True).count() == 0  # toolbarMode = viewer
        page.screenshot(path=str(shots / f"{url or 'overview'}.png"), full_page=True)
        assert elapsed < 30, (url, elapsed)
    assert dialogs == []
    assert "Traceback" not in server.log_text()


def test_a_copied_link_reproduces_the_view_across_pages(app, shots):
    fx, server, page, _ = app
    link = f"{server.url}/gallery?model={MODEL_A}&outcome=error"
    page.goto(link)
    wait_idle(page, "Gallery")
    expect(page.get_by_text("Showing 1–1 of 1 images.")).to_be_visible()  # A's open error: fundus r7
    expect(page.get_by_text("no thumbnail")).to_be_visible()
    page.screenshot(path=str(shots / "gallery-linked.png"), full_page=True)
    page.locator('[data-testid="stSidebarNav"] a', has_text="Overview").click()
    wait_idle(page, "Which generator fools which model")
    query = parse_qs(urlparse(page.url).query)
    assert query.get("model") == [MODEL_A] and query.get("outcome") == ["error"]  # filters survive navigation
    page.wait_for_function(HAS_CELL, arg=MODEL_A, timeout=15_000)
    assert MODEL_B not in page.evaluate(CELLS)


def test_model_text_is_shown_literally_and_never_runs(app, shots):
    fx, server, page, dialogs = app
    sha = fx.sha("chest_xray", "r1")
    for url in (f"{server.url}/gallery?source=KagglePneumonia", f"{server.url}/gallery?image={sha}"):
        page.goto(url)
        wait_idle(page, "Image detail" if "image=" in url else "Gallery")
        expect(page.get_by_text("<script>alert(1)</script>", exact=False).first).to_be_visible()
        assert page.locator('a[href*="evil.example"]').count() == 0
        assert page.locator('img[src="x"]').count() == 0
        assert page.evaluate("() => Array.from(document.scripts).some((s) => s.text.includes('alert('))") is False
    assert INJECTION.split(" <img")[0] in page.inner_text("body")
    page.goto(f"{server.url}/?source=[x](http://evil.example)&model=<b>m</b>")  # a crafted link
    wait_idle(page, "Overview")
    expect(page.get_by_text("source=[x](http://evil.example)").first).to_be_visible()
    assert page.locator('a[href*="evil.example"]').count() == 0 and page.locator("b", has_text="m").count() == 0
    page.screenshot(path=str(shots / "gallery-detail-injection.png"), full_page=True)
    time.sleep(0.5)
    assert dialogs == []


def test_disagreement_link_from_compare_opens_the_gallery_detail(app):
    fx, server, page, _ = app
    page.goto(f"{server.url}/compare?modality=chest_xray&a={MODEL_A}&b={MODEL_B}")
    wait_idle(page, "Disagreements")
    expect(page.get_by_text("7 image(s) where the labels differ.")).to_be_visible()
    sha = fx.sha("chest_xray", "s5")
    target = urljoin(page.url, qf.page_link("gallery", Filters(modality=("chest_xray",)), image=sha))
    assert urlparse(target).path == "/gallery"
    page.goto(target)
    wait_idle(page, "Image detail")
    expect(page.get_by_text(f"image sha256: {sha}", exact=False)).to_be_visible()


def test_downloads_deliver_csv_latex_and_png(app, tmp_path):
    fx, server, page, _ = app
    page.goto(server.url)
    wait_idle(page, "Overview")
    buttons = page.locator('[data-testid="stMain"] [data-testid="stDownloadButton"]')
    rows = {label: buttons.get_by_role("button", name=label, exact=True).first.bounding_box()["y"]
            for label in ("CSV", "LaTeX", "Markdown")}
    assert max(rows.values()) - min(rows.values()) < 2, rows  # the table's downloads sit on one row
    files = {}
    for label in ("CSV", "LaTeX", "PNG"):
        with page.expect_download(timeout=60_000) as download:
            buttons.get_by_role("button", name=label, exact=True).first.click()
        target = tmp_path / download.value.suggested_filename
        download.value.save_as(target)
        files[label] = target
    assert files["CSV"].name == "medlens-overview.csv"
    header = files["CSV"].read_text().splitlines()[0]
    assert header.startswith("model,modality,prompt_id,accuracy_ci,n,") and "specificity_ci_high" in header
    assert r"0.583 [0.320, 0.807]" in files["LaTeX"].read_text()
    if files["PNG"].read_bytes()[:4] != b"\x89PNG":
        pytest.fail(f"PNG export returned {files['PNG'].read_bytes()[:200]!r}")
