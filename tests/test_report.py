"""`python -m cache report`: one self-contained HTML file, checked as text and in headless chromium."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest

from cache.report import build_report
from cache.store import Store
from tests.dashboard_fixture import INJECTION, MODEL_A, MODEL_B, build_fixture_store
from tests.pipeline_helpers import cli, store_rows

CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Model A on fundus, prompt paper (tests/dashboard_fixture.py): real r1-r6, synthetic s1-s6.
EXPECTED_A_FUNDUS = {
    ("real", "real"): ("3", "50.0%"), ("real", "synthetic"): ("1", "16.7%"), ("real", "uncertain"): ("1", "16.7%"),
    ("real", "refused"): ("1", "16.7%"), ("real", "unparseable"): ("0", "0.0%"),
    ("synthetic", "real"): ("1", "16.7%"), ("synthetic", "synthetic"): ("4", "66.7%"),
    ("synthetic", "uncertain"): ("0", "0.0%"), ("synthetic", "refused"): ("0", "0.0%"),
    ("synthetic", "unparseable"): ("1", "16.7%"),
}  # fmt: skip


@pytest.fixture
def report(tmp_path: Path) -> Path:
    build_fixture_store(tmp_path / "store")
    out = tmp_path / "report.html"
    printed = cli("cache", "report", str(out), "--store", str(tmp_path / "store")).stdout
    assert "5 metric group(s), 5 confusion matrices, 24 of 24 image(s) in the gallery" in printed
    return out


def test_report_is_self_contained_and_escaped(report: Path) -> None:
    page = report.read_text(encoding="utf-8")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?!data:)[a-z]+:""", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "@import" not in page and "url(" not in page
    assert "default-src 'none'; img-src data:" in page
    assert INJECTION not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert page.count('<img class="thumb"') == 24 and page.count("data:image/jpeg;base64,") == 24
    assert "McNemar exact p" in page and "Cohen&#x27;s kappa" in page
    assert "429 Too Many Requests" in page, "open errors are listed"
    assert "Wilson" in page and "Real or synthetic?" in page, "methods and prompt text are included"


def test_report_filters_and_gallery_limit(tmp_path: Path) -> None:
    build_fixture_store(tmp_path / "store")
    page, summary = build_report(Store(tmp_path / "store"), gallery_limit=5)
    assert summary["gallery"] == 5 and summary["images"] == 24
    assert {m for m in re.findall(r'data-truth="(\w+)"><img', page)} == {"real", "synthetic"}, "balanced sample"
    out = tmp_path / "b.html"
    cli("cache", "report", str(out), "--model", MODEL_B, "--modality", "chest_xray", "--store", str(tmp_path / "store"))
    text = out.read_text()
    assert text.count('<section class="confusion"') == 1 and MODEL_A not in text.split("<h2>Methods")[0]


def _browser_or_skip():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; never `playwright install`)")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip(f"Debian chromium not found at {CHROMIUM} (make chromium, or apt-get install chromium)")
    return sync_playwright


@pytest.mark.browser
def test_report_renders_offline_in_chromium(report: Path) -> None:
    sync_playwright = _browser_or_skip()
    url = report.resolve().as_uri()
    blocked: list[str] = []

    def only_the_file(route) -> None:
        if route.request.url == url:
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 2000})
            page.route("**/*", only_the_file)
            page.goto(url, wait_until="load")
            widths = page.eval_on_selector_all(
                "img.thumb", "imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)")
            section = page.locator(f'section.confusion[data-model="{MODEL_A}"][data-modality="fundus"]'
                                   '[data-prompt="paper"]')
            cells = {}
            for (truth, label), _expected in EXPECTED_A_FUNDUS.items():
                cell = section.locator(f'td[data-truth="{truth}"][data-label="{label}"]')
                cells[(truth, label)] = (cell.locator(".count").inner_text(), cell.locator(".pct").inner_text())
            shade = section.locator('td[data-truth="synthetic"][data-label="synthetic"]').evaluate(
                "td => getComputedStyle(td).backgroundColor")
            matrices = page.locator("section.confusion").count()
            heading = page.locator("h1").inner_text()
        finally:
            browser.close()
    assert heading == "MedLens report"
    assert len(widths) == 24 and all(w > 0 for w in widths), widths
    assert cells == EXPECTED_A_FUNDUS
    assert shade.startswith("rgba(27, 127, 59"), shade
    assert matrices == 5
    assert blocked == [], f"the report asked for {blocked}"


def test_report_carries_no_local_paths(tmp_path: Path) -> None:
    build_fixture_store(tmp_path / "store")
    store = Store(tmp_path / "store")
    rows = store_rows(store.root, "status = 'ok' LIMIT 1") + store_rows(store.root, "status = 'error' LIMIT 1")
    ok, error = ({k: v for k, v in row.items() if k != "schema_version"} for row in rows)
    ok |= {"key": "k-abs-ok", "image_sha256": "f" * 64, "image_path": "/home/alice/study/fundus/real/r9.png",
           "created_at": ok["created_at"] + timedelta(days=1)}
    error |= {"key": "k-abs-err", "error_message": "/home/alice/study/fundus/real/r8.png: file not found"}
    store.append([ok, error])
    page, _summary = build_report(store)
    assert "alice" not in page and ">r9.png<" in page and "r8.png: file not found" in page
