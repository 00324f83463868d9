"""The Review labels page in a real browser (headless Debian chromium, Playwright) on the review fixture.

Screenshots go to $MEDLENS_SCREENSHOTS (or a temporary folder, printed).
"""

from __future__ import annotations

import pytest

from cache.store import Store
from tests.dashboard_fixture import MODEL_B
from tests.dashboard_server import browser_missing, chromium, streamlit_server, wait_idle
from tests.review_fixture import build_review_store, latest_ok

expect = pytest.importorskip("playwright.sync_api", reason="playwright (python) is not installed").expect
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or ""),
]


def test_review_page_marks_the_span_and_saves_a_review(tmp_path, shots):
    fx = build_review_store(tmp_path / "store")
    with streamlit_server(fx.root) as server, chromium((1400, 1600)) as page:
        dialogs: list[str] = []
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(f"{server.url}/review")
        wait_idle(page, "Review labels")
        page.get_by_label("Your name (stored with every label you set)").fill("Ann Reviewer")
        page.keyboard.press("Enter")
        wait_idle(page, "Change name")
        expect(page.get_by_text("Ann Reviewer").first).to_be_visible()
        span = page.locator("mark[data-testid='review-span']")
        expect(span).to_have_text("Answer: real")  # B chest r1: the labelled line decided the label
        answer = page.locator("[data-testid='review-answer']")
        expect(answer).to_contain_text("<script>alert(1)</script>")  # shown as text, never run
        assert (
            page.locator('a[href*="evil.example"]').count() == 0 and page.locator('img[src="x"]').count() == 0
        )
        assert (
            page.evaluate("() => Array.from(document.scripts).some((s) => s.text.includes('alert('))")
            is False
        )
        buttons = page.locator("[data-testid='stMain'] button", has_text="Synthetic")
        expect(buttons.first).to_be_enabled()
        for label in ("Real", "Uncertain", "Refused"):
            expect(page.get_by_role("button", name=label, exact=True)).to_be_visible()
        page.screenshot(path=str(shots / "review.png"), full_page=True)
        page.get_by_role("button", name="Real", exact=True).click()
        # the next item (B chest r5), its span marked; the queue is one shorter
        expect(page.locator("mark[data-testid='review-span']")).to_have_text(
            "Verdict: synthetic", timeout=30_000
        )
        wait_idle(page)
        expect(page.get_by_text("4 answer(s) in this queue.", exact=False)).to_be_visible()
        page.screenshot(path=str(shots / "review-after-save.png"), full_page=True)
        assert dialogs == []
        assert "Traceback" not in server.log_text()
    saved = (
        Store(fx.root).connect().execute("SELECT key, label, made_by FROM readings WHERE made_by <> 'Dr Rev'")
    )
    assert saved.fetchall() == [(latest_ok(fx, MODEL_B, "chest_xray", "r1")["key"], "real", "Ann Reviewer")]
