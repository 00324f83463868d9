"""Grading and the study figures in a real browser (streamlit run on loopback, Debian chromium).

One store: tests/dashboard_fixture.py's answers, tests/grading_fixture.py's grades and reader study.
Screenshots go to $MEDLENS_SCREENSHOTS (or a temporary folder): grading.png, quality-grades.png,
readers-roc.png. Values are asserted through AppTest (tests/test_dashboard_grading.py); here: the
blinded page's DOM holds no model, source, file name or truth, a grade clicked in the browser is
stored, and the figures draw.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cache.grades import next_interpretation
from cache.store import Store
from tests.dashboard_fixture import build_fixture_store
from tests.dashboard_server import browser_missing, chromium, streamlit_server, wait_idle
from tests.grading_fixture import add_grades, reader_rows

expect = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed").expect
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or ""),
]


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    fx = build_fixture_store(tmp_path_factory.mktemp("grading-browser") / "store")
    add_grades(fx)
    Store(fx.root).append(reader_rows())
    with streamlit_server(fx.root) as server, chromium(viewport=(1400, 1800)) as page:
        yield fx, server, page


def forbidden(root: Path) -> set[str]:
    con = Store(root).connect()
    values = set()
    for column in ("model", "provider", "model_version", "source", "image_path"):
        values |= {
            str(v[0])
            for v in con.execute(
                f"SELECT DISTINCT {column} FROM responses WHERE {column} IS NOT NULL"
            ).fetchall()
        }
    return values | {Path(v).name for v in values if v.endswith(".png")}


def test_grading_in_the_browser_is_blinded_and_stored(app, shots):
    fx, server, page = app
    page.goto(f"{server.url}/grading?model=openai:gpt-4o")
    wait_idle(page, "Grade interpretations")
    page.get_by_role("textbox", name="Your name (as a grader)").fill("Dana")
    page.get_by_role("button", name="Start grading").click()
    wait_idle(page, "Correctness")
    left, _ = next_interpretation(Store(fx.root).connect(), "Dana")
    expect(page.get_by_text(f"Grader: Dana · graded 0 · left {left}")).to_be_visible()
    text = page.locator('[data-testid="stMarkdownContainer"], [data-testid="stText"]').all_inner_texts()
    interpretation = next(
        t for t in text if t.startswith(("This appears", "The optic", "Clear lung", "Normal"))
    )
    # the whole DOM but the page list (its "Reader study" link is the app's, not a store value)
    dom = page.evaluate("""() => { const d = document.documentElement.cloneNode(true);
        d.querySelectorAll('[data-testid="stSidebarNav"]').forEach(n => n.remove()); return d.outerHTML; }""")
    assert "Correctness" in dom
    dom = dom.replace(interpretation, "")
    for value in forbidden(fx.root):  # as a word: provider "reader" is not in the page title "Readers & ROC"
        assert not re.search(rf"(?<!\w){re.escape(value)}(?!\w)", dom), value
    for word in ("real", "synthetic", "uncertain", "refused", "unparseable", "truth", "confidence"):
        assert not re.search(rf"\b{word}\b", page.inner_text("body").replace(interpretation, ""), re.I), word
    assert "model=" not in page.url
    page.screenshot(path=str(shots / "grading.png"), full_page=True)
    radios = page.locator('[data-testid="stRadio"]')
    radios.nth(0).get_by_text("4", exact=True).click()
    wait_idle(page)
    radios.nth(1).get_by_text("2", exact=True).click()
    wait_idle(page)
    radios.nth(2).get_by_text("no", exact=True).click()
    wait_idle(page)
    page.get_by_role("button", name="Save grade").click()
    wait_idle(page, "Saved. Here is the next interpretation.")
    expect(page.get_by_text(f"Grader: Dana · graded 1 · left {left - 1}")).to_be_visible()
    rows = (
        Store(fx.root)
        .connect()
        .execute("SELECT grader, correctness, specificity, hallucinated FROM grades WHERE grader = 'Dana'")
        .fetchall()
    )
    assert rows == [("Dana", 4, 2, False)]
    assert "Traceback" not in server.log_text()


def test_quality_and_roc_figures_draw(app, shots):
    fx, server, page = app
    page.set_viewport_size({"width": 1400, "height": 4400})  # full_page does not grow past the viewport
    page.goto(f"{server.url}/quality")
    wait_idle(page, "Graders' ratings")
    page.get_by_text("Graders' mean ratings (95% t interval over images)").first.wait_for()
    page.get_by_text("Generic by text vs. by graders").first.wait_for()
    page.screenshot(path=str(shots / "quality-grades.png"), full_page=True)
    page.goto(f"{server.url}/readers?modality=fundus")
    wait_idle(page, "ROC and AUC")
    page.get_by_text("ROC · fundus").first.wait_for()
    page.get_by_text("Reliability · fundus").first.wait_for()
    assert page.locator('[data-testid="stPlotlyChart"]').count() >= 2
    page.screenshot(path=str(shots / "readers-roc.png"), full_page=True)
    assert "Traceback" not in server.log_text()
