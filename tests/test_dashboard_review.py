"""AppTest for the Review labels page against tests/review_fixture.py (hand-counted there)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cache.metrics import confusion_matrix
from cache.review import check_person_name, judge_agreement, reviewer_reading
from cache.store import Store
from dashboard.tabs.review import marked_answer
from tests.dashboard_fixture import INJECTION, MODEL_A, MODEL_B
from tests.review_fixture import JUDGE, build_review_store, latest_ok

APP = str(Path(__file__).resolve().parents[1] / "dashboard" / "app.py")


@pytest.fixture
def fx(tmp_path):
    return build_review_store(tmp_path / "store")


def open_review(root: Path, monkeypatch, **params: str) -> AppTest:
    monkeypatch.setenv("MEDLENS_STORE", str(root))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.switch_page("tabs/review.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def queue_table(at: AppTest):
    return next(d.value for d in at.dataframe if "reason" in d.value.columns)


def texts(at: AppTest) -> list[str]:
    return [t.value for t in at.text]


def sign_in(at: AppTest, name: str = "Ann Reviewer") -> AppTest:
    at.text_input(key="review_name_input").input(name).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_the_queue_lists_exactly_the_answers_that_need_review(fx, monkeypatch):
    at = open_review(fx.root, monkeypatch)
    queue = queue_table(at)
    want = {
        r[0]
        for r in Store(fx.root).connect().execute("SELECT key FROM results WHERE needs_review").fetchall()
    }
    shown = [
        (m, mod, Path(p).stem)
        for m, mod, p in zip(queue["model"], queue["modality"], queue["image_path"], strict=True)
    ]
    assert shown == [
        (MODEL_B, "chest_xray", "r1"),
        (MODEL_B, "chest_xray", "r5"),
        (MODEL_A, "chest_xray", "s6"),
        (MODEL_A, "fundus", "r5"),
        (MODEL_A, "fundus", "s6"),
    ]
    assert {latest_ok(fx, *item)["key"] for item in shown} == want  # B fundus s6 was reviewed: not queued
    assert list(queue["reason"]) == [
        "the parser was undecided",
        "parser and judge disagree",
        "parser and judge disagree",
        "the parser was undecided",
        "the parser was undecided",
    ]
    assert any("5 answer(s) in this queue." in c.value for c in at.caption)
    # the first item: B chest r1, whose answer carries HTML and a script, shown escaped with its span marked
    body = at.get("html")[0].proto.body
    assert "<mark data-testid='review-span'>Answer: real</mark>" in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>" not in body and "<img" not in body
    assert "Current label: real, set by parser (labelled_line, parser-fixture-1)." in texts(at)
    assert all(b.disabled for b in at.button if b.key and b.key.startswith("review_label_"))  # no name yet
    assert [b.label for b in at.button if b.key and b.key.startswith("review_label_")] == [
        "Real",
        "Synthetic",
        "Uncertain",
        "Refused",
    ]


def test_a_review_is_written_at_once_and_changes_the_confusion_matrix(fx, monkeypatch):
    key = latest_ok(fx, MODEL_A, "fundus", "r5")["key"]
    before = confusion_matrix(Store(fx.root).connect())[(MODEL_A, "fundus")]["real"]
    assert before == {"real": 4, "synthetic": 1, "uncertain": 1, "refused": 1, "unparseable": 0}
    at = sign_in(open_review(fx.root, monkeypatch))
    assert any("Reviewing as ` Ann Reviewer `" in c.value for c in at.caption)
    at.number_input(key="review_position").set_value(4).run()  # A fundus r5: 'uncertain'
    assert f"{MODEL_A} · prompt paper · fundus · repeat 0" in texts(at)
    at.text_input(key="review_note").input("says real in the end").run()
    at.button(key="review_label_real").click().run()
    assert not at.exception, [e.value for e in at.exception]
    readings = (
        Store(fx.root)
        .connect()
        .execute(
            "SELECT key, authority, label, made_by, note, raw_sha256, rule FROM readings WHERE made_by = ?",
            ["Ann Reviewer"],
        )
        .fetchall()
    )
    reread = latest_ok(fx, MODEL_A, "fundus", "r5")["raw_text"]  # the later (re-read) row of the key
    assert reread.startswith("Real or synthetic? Hard to say")
    assert readings == [
        (
            key,
            "reviewer",
            "real",
            "Ann Reviewer",
            "says real in the end",
            hashlib.sha256(reread.encode()).hexdigest(),
            "reviewer",
        )
    ]
    after = confusion_matrix(Store(fx.root).connect())[(MODEL_A, "fundus")]["real"]
    assert after == {"real": 5, "synthetic": 1, "uncertain": 0, "refused": 1, "unparseable": 0}
    # the page moved on: the next item (A fundus s6) is shown, the note is cleared, the queue is one shorter
    assert any("4 answer(s) in this queue." in c.value for c in at.caption)
    assert at.number_input(key="review_position").value == 4 and at.text_input(key="review_note").value == ""
    assert "Current label: unparseable, set by parser (none, parser-fixture-1)." in texts(at)
    # the confusion page and the overview see it in this session
    at.switch_page("tabs/confusion.py").run()
    figures = {
        f["layout"]["title"]["text"]: f["data"][0]
        for f in map(json.loads, (c.proto.spec for c in at.get("plotly_chart")))
    }
    assert figures[f"{MODEL_A} · fundus"]["text"][0] == [
        "5<br>(71%)",
        "1<br>(14%)",
        "0<br>(0%)",
        "1<br>(14%)",
        "0<br>(0%)",
    ]
    at.switch_page("tabs/overview.py").run()
    assert (
        "2 of 50 labels set by 2 reviewers, 5 by ` openai:gpt-4o-mini ` as judge, the other 43 read from the "
        "answer by the parser."
    ) in [c.value for c in at.caption]


def test_the_reviewer_name_is_validated(fx, monkeypatch):
    at = open_review(fx.root, monkeypatch)
    sign_in(at, "bell\x07")
    assert "cannot be printed" in at.error[0].value
    assert all(b.disabled for b in at.button if b.key and b.key.startswith("review_label_"))
    with pytest.raises(ValueError, match="at most 64"):  # the input box stops at 64 characters too
        check_person_name("x" * 65)
    with pytest.raises(ValueError, match="give a name"):
        check_person_name("   ")
    assert check_person_name("  Dr  A.\tB ") == "Dr A. B"
    with pytest.raises(ValueError, match="not one of"):
        reviewer_reading(key="k", raw_text="", label="unparseable", reviewer="A")


def test_parser_vs_judge_agreement_and_the_disagreement_queue(fx, monkeypatch):
    at = open_review(fx.root, monkeypatch)
    table = next(d.value for d in at.dataframe if "kappa" in d.value.columns).set_index("model")
    # A: (real, real), (synthetic, synthetic), (real, synthetic): 2/3, kappa (2/3 - 4/9) / (5/9) = 0.4
    assert tuple(table.loc[MODEL_A, ["judge_model", "judged", "agree", "disagreements"]]) == (JUDGE, 3, 2, 1)
    assert table.loc[MODEL_A, "agreement"] == pytest.approx(2 / 3) and table.loc[
        MODEL_A, "kappa"
    ] == pytest.approx(0.4)
    # B: (synthetic, synthetic), (synthetic, real): 1/2, expected 1/2 -> kappa 0
    assert tuple(table.loc[MODEL_B, ["judged", "agree"]]) == (2, 1) and table.loc[
        MODEL_B, "kappa"
    ] == pytest.approx(0)
    assert judge_agreement(Store(fx.root).connect())[1]["kappa"] == pytest.approx(0.4)
    at.segmented_control(key="review_mode").set_value("parser ≠ judge").run()
    queue = queue_table(at)
    assert [Path(p).stem for p in queue["image_path"]] == ["r5", "s6"] and set(queue["judge_model"]) == {
        JUDGE
    }


def test_the_queue_by_filter_and_label(fx, monkeypatch):
    at = open_review(fx.root, monkeypatch, model=MODEL_A)
    at.segmented_control(key="review_mode").set_value("by filter").run()
    assert any("26 answer(s) in this queue." in c.value for c in at.caption)  # A: 12 + 12 + 2 brief
    at.multiselect(key="review_labels").select("uncertain").run()
    queue = queue_table(at)  # A fundus r5 (paper) and s1 (brief)
    assert [(p, Path(i).stem) for p, i in zip(queue["prompt_id"], queue["image_path"], strict=True)] == [
        ("paper", "r5"),
        ("brief", "s1"),
    ]


def test_a_bundle_is_read_only_and_continues_in_a_writable_copy(fx, tmp_path, monkeypatch):
    from cache.bundle import export_bundle

    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundles"))
    monkeypatch.setenv("MEDLENS_COPY_DIR", str(tmp_path / "copies"))
    zip_path = tmp_path / "review.zip"
    export_bundle(Store(fx.root), zip_path)
    at = open_review(zip_path, monkeypatch)
    assert any("opened from a bundle (.zip): it is read-only" in w.value for w in at.warning)
    assert not any(t.key == "review_name_input" for t in at.text_input)  # no name asked: nothing can be saved
    assert all(b.disabled for b in at.button if b.key and b.key.startswith("review_label_"))
    at.text_input(key="review_copy_name").input("../escape").run()
    at.button(key="review_copy").click().run()
    assert "use a plain folder name" in at.error[0].value and not (tmp_path / "escape").exists()
    at.text_input(key="review_copy_name").input("my-review").run()
    at.button(key="review_copy").click().run()
    assert not at.exception, [e.value for e in at.exception]
    copy = tmp_path / "copies" / "my-review"
    assert not any("read-only" in w.value for w in at.warning)
    assert any(str(copy.resolve()) in c.value for c in at.sidebar.caption)
    sign_in(at)
    at.button(key="review_label_synthetic").click().run()
    written = (
        Store(copy).connect().execute("SELECT label, made_by FROM readings WHERE made_by = 'Ann Reviewer'")
    )
    assert written.fetchall() == [("synthetic", "Ann Reviewer")]
    extracted = [p.name for p in (tmp_path / "bundles").rglob("readings/*.parquet")]
    assert extracted == ["bundle.parquet"]  # the bundle's own readings; nothing was written into it
    n_queue = Store(copy).connect().execute("SELECT count(*) FROM results WHERE needs_review").fetchone()[0]
    assert any(f"{n_queue} answer(s) in this queue." in c.value for c in at.caption)


def test_marked_answer_escapes_and_checks_offsets():
    assert marked_answer("a <b> c", 2, 5).count("<mark") == 1
    assert "<mark data-testid='review-span'>&lt;b&gt;</mark>" in marked_answer("a <b> c", 2, 5)
    for start, end in ((None, None), (3, 99), (-1, 2), (4, 4), (math.nan, 2)):
        out = marked_answer("a <b> c", start, end)
        assert "<mark" not in out and "a &lt;b&gt; c" in out
    assert INJECTION not in marked_answer(INJECTION, 0, 5)  # never the raw HTML
    assert "<mark data-testid='review-span'>a</mark>" in marked_answer("a b", np.int32(0), np.int32(1))
