"""Interpretation grading (cache/grades.py, cache/grade_stats.py) and the methods paragraphs of the reader study and grading.

Grades: tests/grading_fixture.py. Every expected number is worked out by hand in the comments;
the weighted kappas are checked against scikit-learn too.
"""

from __future__ import annotations

import math
import re

import pytest
from sklearn.metrics import cohen_kappa_score

from cache.filters import Filters
from cache.grade_stats import beside_genericness, grade_summary, t_interval
from cache.grades import Grade, next_interpretation, valid_grader
from cache.methods import methods_text
from cache.store import Store
from tests.dashboard_fixture import MODEL_A, MODEL_B, build_fixture_store
from tests.grading_fixture import GRADES, add_grades, answer_key, write_reader_store

T_975 = {2: 4.302652729911275, 3: 3.182446305284263}  # Student's t quantiles (any table)


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    fx = build_fixture_store(tmp_path_factory.mktemp("grading") / "store")
    add_grades(fx)
    return fx


def by(rows, **keys):
    (match,) = [r for r in rows if all(r[k] == v for k, v in keys.items())]
    return match


def test_summary_two_graders_hand_computed(graded):
    b = by(grade_summary(Store(graded.root).connect()), model=MODEL_B, modality="fundus")
    assert (b["n_graders"], b["n_grades"], b["n_interpretations"], b["n_images"]) == (2, 8, 4, 4)
    # correctness per image (ann, bob): r1 4,4 -> 4; r2 4,3 -> 3.5; r3 3,3 -> 3; s1 3,2 -> 2.5
    # mean 3.25; sd = sqrt((.75^2 + .25^2 + .25^2 + .75^2) / 3) = sqrt(1.25 / 3); half = t(.975, 3) sd / 2
    half = T_975[3] * math.sqrt(1.25 / 3) / 2
    assert b["correctness_mean"] == pytest.approx(3.25)
    assert (b["correctness_ci_low"], b["correctness_ci_high"]) == pytest.approx((3.25 - half, 3.25 + half))
    assert (b["correctness_ci_low"], b["correctness_ci_high"]) == pytest.approx((2.2229, 4.2771), abs=1e-4)
    # specificity per image: 5, 4, 4.5, 2.5 -> mean 4; sd = sqrt(3.5 / 3); the upper bound 5.72 is clipped to 5
    half = T_975[3] * math.sqrt(3.5 / 3) / 2
    assert (b["specificity_mean"], b["specificity_ci_low"], b["specificity_ci_high"]) == pytest.approx(
        (4.0, 4.0 - half, 5.0)
    )
    # quadratic-weighted kappa. correctness ann 4 4 3 3, bob 4 3 3 2: observed mean (i-j)^2 = 2/4; expected
    # E[A^2] - 2 E[A] E[B] + E[B^2] = 12.5 - 2 * 3.5 * 3 + 9.5 = 1 -> kappa = 1 - 0.5 / 1 = 0.5
    assert b["agreement_method"] == "weighted kappa (quadratic)" and b["n_paired"] == 4
    assert b["correctness_agreement"] == pytest.approx(0.5)
    assert b["correctness_agreement"] == pytest.approx(
        cohen_kappa_score([4, 4, 3, 3], [4, 3, 3, 2], weights="quadratic")
    )
    # specificity ann 5 4 4 3, bob 5 4 5 2: observed 2/4; expected 16.5 - 2 * 4 * 4 + 17.5 = 2 -> 0.75
    assert b["specificity_agreement"] == pytest.approx(0.75)
    assert b["specificity_agreement"] == pytest.approx(
        cohen_kappa_score([5, 4, 4, 3], [5, 4, 5, 2], weights="quadratic")
    )
    assert (b["hallucinated_share"], b["mean_hallucinations"]) == (0.0, 0.0)


def test_summary_three_graders_hand_computed(graded):
    a = by(grade_summary(Store(graded.root).connect()), model=MODEL_A, modality="fundus")
    # 11 grades: ann's first grade of r1 (paper) is replaced by her later one; 4 interpretations of 3 images
    assert (a["n_graders"], a["n_grades"], a["n_interpretations"], a["n_images"]) == (3, 11, 4, 3)
    # correctness per image: r1 = paper 4 5 4 + brief 2 3 -> 18/5; r2 5 4 5 -> 14/3; r3 1 2 2 -> 5/3
    assert a["correctness_mean"] == pytest.approx((18 / 5 + 14 / 3 + 5 / 3) / 3)  # 149/45
    assert (a["correctness_ci_low"], a["correctness_ci_high"]) == (1.0, 5.0)  # -0.47 .. 7.09, clipped
    assert a["specificity_mean"] == pytest.approx((16 / 5 + 13 / 3 + 4 / 3) / 3)  # 133/45
    # Krippendorff's alpha, ordinal, by hand from the coincidence matrix (Krippendorff 2011):
    # correctness units {4,5,4} {2,3} {5,4,5} {1,2,2}: n_c = 1 3 1 3 3, sum o*d2 = 52, sum n_c n_k d2 = 2288,
    # alpha = 1 - (11 - 1) 52 / 2288 = 17/22; specificity {3,4,3} {3,3} {4,4,5} {1,1,2}: 1 - 10 * 37 / 2255
    assert a["agreement_method"] == "Krippendorff's alpha (ordinal)" and a["n_paired"] == 4
    assert a["correctness_agreement"] == pytest.approx(17 / 22)
    assert a["specificity_agreement"] == pytest.approx(377 / 451)
    # hallucinations: bob on r1 (brief, 1) and cat on r3 (2) of 11 grades
    assert (a["hallucinated_share"], a["mean_hallucinations"]) == pytest.approx((2 / 11, 3 / 11))
    chest = by(grade_summary(Store(graded.root).connect()), model=MODEL_A, modality="chest_xray")
    assert (chest["n_grades"], chest["correctness_mean"], chest["correctness_ci_low"]) == (1, 3.0, None)
    assert chest["agreement_method"] is None and chest["correctness_agreement"] is None


def test_summary_follows_filters_and_t_interval(graded):
    rows = grade_summary(Store(graded.root).connect(), Filters(model=[MODEL_B], truth=["real"]))
    assert [(r["model"], r["n_grades"]) for r in rows] == [(MODEL_B, 6)]  # s1 left out
    mean, low, high = t_interval([1, 2, 3])  # sd 1, se 1/sqrt(3)
    assert (mean, high - mean) == pytest.approx((2.0, T_975[2] / math.sqrt(3)))
    assert t_interval([4]) == (4.0, None, None) and t_interval([]) == (None, None, None)


def test_genericness_beside_specificity():
    generic = [
        {
            "model": "m",
            "modality": "fundus",
            "median_similarity": 0.8,
            "near_duplicate_share": 0.5,
            "n_texts": 10,
            "n_pairs_scored": 45,
            "sampled": False,
        }
    ]
    summary = [
        {
            "model": "m",
            "modality": "fundus",
            "specificity_mean": 1.5,
            "specificity_ci_low": 1.0,
            "specificity_ci_high": 2.0,
            "n_grades": 4,
        },
        {
            "model": "n",
            "modality": "fundus",
            "specificity_mean": 4.0,
            "specificity_ci_low": None,
            "specificity_ci_high": None,
            "n_grades": 1,
        },
    ]
    rows = beside_genericness(generic, summary)
    assert [(r["model"], r["median_similarity"], r["specificity_mean"]) for r in rows] == [
        ("m", 0.8, 1.5),
        ("n", None, 4.0),
    ]


def test_queue_is_a_per_grader_permutation_across_models(graded):
    con = Store(graded.root).connect()
    left, first = next_interpretation(con, "dan")
    assert left == 48 and set(first) == {
        "key",
        "image_sha256",
        "interpretation",
    }  # 50 answers, 2 refusals empty
    order = []
    skipped: list[str] = []
    while True:  # skipping walks the whole queue in the grader's order
        _, item = next_interpretation(con, "dan", skipped)
        if item is None or item["key"] in skipped:
            break
        order.append(item["key"])
        skipped.append(item["key"])
    assert len(order) == 48 == len(set(order))
    other = []
    for _ in range(48):
        _, item = next_interpretation(con, "eve", other)
        other.append(item["key"])
    assert set(other) == set(order) and other != order  # same items, another order
    models = {r["key"]: r["model"] for r in graded.rows}
    assert len({models[k] for k in order[:6]}) == 2, "models are interleaved, not one after the other"
    assert next_interpretation(con, "dan") == (48, first), "derived again from the name: a reload resumes"
    # ann graded 9 interpretations (+ one superseded): those leave her queue
    assert next_interpretation(con, "ann")[0] == 48 - 9
    sha = graded.sha("fundus", "r1")  # A paper, A brief, B paper: ann graded all three
    assert next_interpretation(con, "ann", image=sha) == (0, None)
    assert next_interpretation(con, "cat", image=sha)[0] == 2


def test_grade_rows_are_validated():
    key = "a" * 64
    row = Grade(
        key=key,
        grader="  Dr.  O'Neil ",
        correctness=3,
        specificity=5,
        hallucinated=True,
        hallucination_count=2,
        session_id="queue-x",
        note="  ",
    ).row()
    assert (row["grader"], row["note"], row["key"], row["hallucination_count"]) == (
        "Dr. O'Neil",
        None,
        key,
        2,
    )
    assert re.fullmatch(r"[0-9a-f]{32}", row["grade_id"]) and row["created_at"].tzinfo is not None
    for bad in ("", "<b>x</b>", "../etc", "_x", "x" * 41, "[a](http://e.x)"):
        with pytest.raises(ValueError):
            valid_grader(bad)
    good = dict(
        key=key,
        grader="ann",
        correctness=3,
        specificity=3,
        hallucinated=False,
        hallucination_count=0,
        session_id="queue-x",
    )
    for change in (
        {"correctness": 0},
        {"specificity": 6},
        {"specificity": None},
        {"hallucination_count": 1},
        {"hallucinated": True},
        {"key": "abc"},
        {"session_id": "x"},
    ):
        with pytest.raises(ValueError):
            Grade(**(good | change))


def test_methods_describe_grading(graded):
    text = " ".join(methods_text(Store(graded.root).connect()).split())
    assert (
        "Interpretation grading. 3 graders (grades each: ann 9, bob 8, cat 3) gave 20 grades to 9 of the 48 "
        "interpretations written by 2 models about 5 images." in text
    )
    for phrase in (
        "blinded: they saw the image thumbnail and the interpretation as plain text, never the model",
        "1 = would describe any image of this modality",
        "5 = findings with location or extent unique",
        "95% t interval over images",
        "Cohen's weighted kappa (quadratic) for two graders",
        "Krippendorff's alpha (ordinal) for three or more",
        "1 grade was given from an image's gallery detail",
        "between 2026-03-02 and 2026-03-02",
    ):
        assert phrase in text, phrase
    assert "Reader study" not in text, "no reader answers in this store"
    text = " ".join(methods_text(Store(graded.root).connect(), Filters(model=[MODEL_B])).split())
    assert "2 graders (grades each: ann 4, bob 4) gave 8 grades to 4 of the 23 interpretations" in text


def test_methods_describe_the_reader_study(tmp_path):
    store = write_reader_store(tmp_path / "study")
    text = " ".join(methods_text(store.connect(), runs=store.runs()).split())
    assert "We asked 2 models" in text and "reader:ann (version" not in text, "readers are not models"
    assert (
        "Reader study. 3 human readers (ann, bob, cat) read 12 cases (fundus: 6 real and 6 synthetic) under 2 "
        "conditions (prompts aided, unaided): each read all 12, giving 72 scored answers."
    ) in text
    assert "random permutation per reader, stored" in text
    assert "only the prepared image (the same bytes the models received) and an opaque case number" in text
    # latency 2, 4, 6, 8 s in turn, 18 times each: quartiles 3.5, 5.0, 6.5 s (linear interpolation)
    assert "measured on the server" in text and "median 5.0 s (interquartile range 3.5-6.5 s" in text
    assert "2 readers answered a training block (2 cases, 4 answers)" in text and "enter no metric" in text
    assert "The image set comprised 12 images" in text, "training images are not study images"
    assert "Obuchowski-Rockette" in text and "Grading" not in text
    readers_only = " ".join(methods_text(store.connect(), Filters(model=["reader:ann"])).split())
    assert readers_only.startswith("Reader study. 1 human reader (ann) read 12 cases")


def test_report_carries_both_paragraphs(graded, tmp_path):
    from cache.report import build_report

    page, _ = build_report(Store(graded.root))
    assert "Interpretation grading. 3 graders" in " ".join(page.split())
    page, _ = build_report(write_reader_store(tmp_path / "study"))
    assert "Reader study. 3 human readers" in " ".join(page.split())


def test_answer_keys_of_the_fixture_exist(graded):
    assert len({answer_key(graded, *item) for item in GRADES}) == len(GRADES)
