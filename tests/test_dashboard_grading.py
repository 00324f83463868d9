"""AppTest for the grading queue (blinding, writing a grade, resuming), the graders' numbers on the
quality page, and the Readers & ROC page (its values are cache.readers' output)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest
from google.protobuf.json_format import MessageToJson
from streamlit.testing.v1 import AppTest

from cache.grade_stats import grade_summary
from cache.grades import next_interpretation
from cache.readers import calibration_table, reader_agreement, reader_metrics, retest_agreement, roc_table
from cache.readers_mrmc import mrmc_model_vs_panel, mrmc_readers
from cache.schema import LABELS, TRUTHS
from cache.store import Store
from tests.dashboard_fixture import MODEL_A, MODEL_B, build_fixture_store
from tests.grading_fixture import add_grades, write_reader_store

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_fixture_store(tmp_path_factory.mktemp("grading-app") / "store")


def run(root: Path, monkeypatch, page: str, **params: str) -> AppTest:
    monkeypatch.setenv("MEDLENS_STORE", str(root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(params)
    at.switch_page(f"tabs/{page}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def page_dump(at: AppTest) -> list[str]:
    """Every element's protobuf as JSON (labels, options, captions, help, values, widget ids): the page."""
    out = []

    def walk(node):
        proto = getattr(node, "proto", None)
        if proto is not None:
            out.append(MessageToJson(proto))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return out


def secrets_of(root: Path) -> dict[str, set[str]]:
    """What a blinded page must never show: every model, provider, version, source, file name, truth, label."""
    con = Store(root).connect()
    values: dict[str, set[str]] = {}
    for column in ("model", "provider", "model_version", "source", "image_path"):
        values[column] = {
            str(v[0])
            for v in con.execute(
                f"SELECT DISTINCT {column} FROM responses WHERE {column} IS NOT NULL"
            ).fetchall()
        }
    values["file"] = {Path(p).name for p in values["image_path"]} | {
        Path(p).stem for p in values["image_path"]
    }
    return values


def assert_blinded(at: AppTest, root: Path, shown_text: str) -> None:
    dump = page_dump(at)
    assert any(json.dumps(shown_text)[1:-1] in d for d in dump), "the dump holds what the page shows"
    text = "\n".join(dump).replace(json.dumps(shown_text)[1:-1], "")  # the interpretation itself is graded
    for column, values in secrets_of(root).items():
        for value in values:
            assert value not in text, (column, value)
    for word in (*TRUTHS, *LABELS, "truth", "confidence"):
        assert not re.search(rf"\b{word}\b", text, re.I), word


def start(at: AppTest, name: str) -> AppTest:
    at.text_input(key="grading_name").input(name)
    return at.button(key="FormSubmitter:grading_name_form-Start grading").click().run()


def test_grading_is_blinded_writes_one_row_and_resumes(fx, monkeypatch):
    at = run(fx.root, monkeypatch, "grading", model=MODEL_A)  # a filter in the link is dropped on this page
    assert "model" not in at.query_params and not at.multiselect, "no filters on a blinded page"
    at = start(at, "<b>x</b>")
    assert "grader's name is 1-40 letters" in at.error[0].value and not at.radio
    at = start(at, "Ann Lee")
    assert at.query_params["grader"] == "Ann Lee"
    (shown,) = [t.value for t in at.text if not t.value.startswith("Grader:")]
    assert "Grader: Ann Lee · graded 0 · left 48" in [t.value for t in at.text]
    assert len(at.image) == 1 and [r.label for r in at.radio][:2] == ["Correctness", "Specificity"]
    assert (
        at.radio(key="grading_specificity").proto.captions[0] == "would describe any image of this modality"
    )
    assert not at.markdown and not at.get("html"), "the text is never markdown or HTML"
    assert_blinded(at, fx.root, shown)
    answers = {r["key"]: r for r in fx.rows if r["status"] == "ok"}
    _, first = next_interpretation(Store(fx.root).connect(), "Ann Lee")  # the grader's own first item
    assert first["interpretation"] == shown
    at.radio(key="grading_correctness").set_value(4)
    at.radio(key="grading_specificity").set_value(2)
    at.radio(key="grading_hallucinated").set_value("yes").run()
    assert at.number_input(key="grading_count").value == 1
    at.button(key="grading_save").click().run()
    assert not at.exception and at.success[0].value.startswith("Saved")
    rows = Store(fx.root).connect().execute("SELECT * FROM grades").df()
    assert len(rows) == 1
    row = rows.iloc[0]
    assert (
        row["grader"],
        row["correctness"],
        row["specificity"],
        row["hallucinated"],
        row["hallucination_count"],
    ) == ("Ann Lee", 4, 2, True, 1)
    assert row["key"] == first["key"] and answers[row["key"]]["interpretation"] == shown
    assert row["session_id"].startswith("queue-")
    assert "Grader: Ann Lee · graded 1 · left 47" in [t.value for t in at.text]
    assert at.radio(key="grading_correctness").value is None, "the next interpretation starts blank"
    (following,) = [t.value for t in at.text if not t.value.startswith("Grader:")]
    # a reload (a new session with the link) resumes at the same next interpretation
    again = run(fx.root, monkeypatch, "grading", grader="Ann Lee")
    assert "Grader: Ann Lee · graded 1 · left 47" in [t.value for t in again.text]
    assert following in [t.value for t in again.text]
    assert_blinded(again, fx.root, following)


def test_grading_refuses_incomplete_grades_and_one_image_queue(fx, monkeypatch, tmp_path):
    sha = fx.sha("fundus", "s2")  # answered by A and B (prompt paper)
    at = start(run(fx.root, monkeypatch, "grading", image=sha), "Zoe")
    assert "Grader: Zoe · graded 0 · left 2" in [t.value for t in at.text]
    at.radio(key="grading_correctness").set_value(3)
    at.button(key="grading_save").click().run()
    assert "Not saved" in at.error[0].value
    at.radio(key="grading_specificity").set_value(3)
    at.radio(key="grading_hallucinated").set_value("no")
    at.button(key="grading_save").click().run()
    at.radio(key="grading_correctness").set_value(5)
    at.radio(key="grading_specificity").set_value(1)
    at.radio(key="grading_hallucinated").set_value("no")
    at.button(key="grading_save").click().run()
    assert "Nothing left to grade here" in at.info[0].value
    grades = (
        Store(fx.root)
        .connect()
        .execute(
            "SELECT g.session_id, r.image_sha256 FROM grades g JOIN results r USING (key) WHERE grader = 'Zoe'"
        )
        .fetchall()
    )
    assert (
        len(grades) == 2
        and {g[1] for g in grades} == {sha}
        and all(g[0].startswith("image-") for g in grades)
    )


def test_a_bundle_is_read_only_for_grading(fx, monkeypatch, tmp_path):
    from cache.bundle import export_bundle

    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundles"))
    export_bundle(Store(fx.root), tmp_path / "study.zip")
    at = run(tmp_path / "study.zip", monkeypatch, "grading")
    assert "read-only" in at.warning[0].value and "writable copy" in at.warning[0].value
    assert not at.text_input, "no name form: nothing could be saved"


def test_gallery_detail_links_to_blinded_grading_of_its_image(fx, monkeypatch):
    sha = fx.sha("fundus", "r1")
    at = run(fx.root, monkeypatch, "gallery", image=sha)
    with pytest.raises(
        AssertionError, match="model|source|image_path|file"
    ):  # the check sees an unblinded page
        assert_blinded(at, fx.root, at.text[-1].value)
    (link,) = [e for e in at.get("page_link")]
    assert link.proto.page == "grading" and f"image={sha}" in link.proto.query_string


def frame(at: AppTest, column: str):
    (df,) = [d.value for d in at.dataframe if column in d.value.columns][:1]
    return df


def test_quality_page_shows_graders_numbers(tmp_path, monkeypatch):
    fx = build_fixture_store(tmp_path / "store")
    add_grades(fx)
    at = run(fx.root, monkeypatch, "quality")
    table = frame(at, "agreement_method")
    a = table[(table["model"] == MODEL_A) & (table["modality"] == "fundus")].iloc[0]
    # hand-computed in tests/test_grading.py
    assert (a["n_graders"], a["n_grades"], a["n_images"]) == (3, 11, 3)
    assert a["correctness_mean"] == pytest.approx(149 / 45) and a["correctness"] == "3.31 [1.00, 5.00]"
    assert a["correctness_agreement"] == pytest.approx(17 / 22) and a["hallucinated_share"] == pytest.approx(
        2 / 11
    )
    b = table[(table["model"] == MODEL_B) & (table["modality"] == "fundus")].iloc[0]
    assert b["correctness"] == "3.25 [2.22, 4.28]" and b["specificity_agreement"] == pytest.approx(0.75)
    assert b["agreement_method"] == "weighted kappa (quadratic)"
    for want in grade_summary(Store(fx.root).connect()):
        got = table[(table["model"] == want["model"]) & (table["modality"] == want["modality"])].iloc[0]
        assert got["specificity_mean"] == pytest.approx(want["specificity_mean"])
    generic = frame(at, "median_similarity")
    # model A's generic text repeats across images: A's fundus texts are 5 with findings, 8 generic
    a_generic = generic[(generic["model"] == MODEL_A) & (generic["modality"] == "fundus")].iloc[0]
    b_generic = generic[(generic["model"] == MODEL_B) & (generic["modality"] == "fundus")].iloc[0]
    assert b_generic["median_similarity"] == pytest.approx(1.0), "B writes one text for every fundus image"
    assert a_generic["specificity"] == "2.96 [1.00, 5.00]" and b_generic["n_grades"] == 8
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [c["layout"]["title"]["text"] for c in charts]
    assert "Graders' mean ratings (95% t interval over images)" in titles
    scatter = charts[titles.index("Generic by text vs. by graders (generic: right and low)")]["data"][0]
    assert scatter["y"][scatter["text"].index(f"{MODEL_B} · fundus")] == pytest.approx(4.0)


def test_quality_page_without_grades_says_so(fx, monkeypatch, tmp_path):
    root = tmp_path / "plain"
    build_fixture_store(root)
    from dashboard import queries

    monkeypatch.setattr(queries, "SWAP_TEST_AUTO", 10)  # a large store: the swap test on request
    at = run(root, monkeypatch, "quality")
    assert any("No grades for these answers yet" in i.value for i in at.info)
    assert not [d for d in at.dataframe if "median_similarity" in d.value.columns]
    at.toggle(key="quality_swap_test").set_value(True).run()
    generic = frame(at, "median_similarity")
    assert set(generic["n_grades"]) == {0} and len(generic) == 4


def records(at: AppTest, column: str) -> list[dict]:
    return frame(at, column).to_dict("records")


def test_readers_page_values_are_cache_readers_output(tmp_path, monkeypatch):
    store = write_reader_store(tmp_path / "study")
    at = run(store.root, monkeypatch, "readers")
    con: duckdb.DuckDBPyConnection = store.connect()
    shown = {(r["model"], r["prompt_id"]): r for r in records(at, "sensitivity_ci")}
    for want in reader_metrics(con):
        got = shown[(want["model"], want["prompt_id"])]
        for key in ("n", "accuracy", "accuracy_ci_low", "accuracy_ci_high", "sensitivity", "specificity"):
            assert got[key] == pytest.approx(want[key]), key
    assert shown[("reader:ann", "unaided")]["accuracy_ci"] == "0.833 [0.552, 0.953]"  # 10 of 12, Wilson
    (agreement,) = [r for r in records(at, "fleiss_kappa") if r["prompt_id"] == "unaided"]
    (want,) = [r for r in reader_agreement(con) if r["prompt_id"] == "unaided"]
    assert agreement["fleiss_kappa"] == pytest.approx(want["fleiss_kappa"])
    roc = {(r["model"], r["prompt_id"]): r for r in records(at, "n_scored")}
    for want in roc_table(con):
        assert roc[(want["model"], want["prompt_id"])]["auc"] == pytest.approx(want["auc"])
        assert roc[(want["model"], want["prompt_id"])]["ci_low"] == pytest.approx(want["ci_low"])
    ece = {r["model"]: r["ece"] for r in records(at, "ece")}
    assert ece == pytest.approx({r["model"]: r["ece"] for r in calibration_table(con)})
    (retest,) = records(at, "share_identical")
    assert retest["fleiss_kappa"] == pytest.approx(retest_agreement(con)[0]["fleiss_kappa"])
    panel = records(at, "panel_mean")
    want = {
        (r["model"], r["fom"], r["panel_prompt_id"]): r
        for r in mrmc_model_vs_panel(con, fom="auc") + mrmc_model_vs_panel(con, fom="accuracy")
    }
    assert len(panel) == 3 * len(want)  # RRRC, FRRC, RRFC each
    for got in panel:
        ref = want[(got["model"], got["fom"], got["panel_prompt_id"])]
        assert got["difference"] == pytest.approx(ref["difference"])
        assert got["p"] == pytest.approx(ref["tests"][got["analysis"]]["p"])
    conditions = records(at, "condition_foms")
    (rrrc,) = [r for r in conditions if r["analysis"] == "RRRC" and r["fom"] == "auc"]
    assert rrrc["p"] == pytest.approx(mrmc_readers(con, fom="auc")[0]["tests"]["RRRC"]["p"])
    charts = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    (roc_chart,) = [c for c in charts if c["layout"]["title"]["text"].startswith("ROC · fundus")]
    ann = next(t for t in roc_chart["data"] if t["name"].startswith("reader:ann · unaided"))
    (ann_row,) = [
        r
        for r in roc_table(con, with_points=True)
        if (r["model"], r["prompt_id"]) == ("reader:ann", "unaided")
    ]
    assert ann["x"] == ann_row["points"]["fpr"] and ann["y"] == ann_row["points"]["tpr"]
    assert any(c["layout"]["title"]["text"].startswith("Reliability · fundus") for c in charts)


def test_readers_page_without_readers_says_so_in_one_sentence(fx, monkeypatch):
    at = run(fx.root, monkeypatch, "readers")
    infos = [i.value for i in at.info]
    assert any(i.startswith("No reader answers match the filters") for i in infos)
    assert any(i.startswith("No repeats") for i in infos)
    calibration = frame(at, "ece")  # the fixture's answers state confidence 0.8
    assert set(calibration["model"]) == {MODEL_A, MODEL_B}
    assert not any(
        c
        for c in at.get("plotly_chart")
        if "ROC" in json.loads(c.proto.spec)["layout"]["title"]["text"]
        and len(json.loads(c.proto.spec)["data"]) < 2
    )


def grade_it(at: AppTest, correctness: int) -> AppTest:
    at.radio(key="grading_correctness").set_value(correctness)
    at.radio(key="grading_specificity").set_value(3)
    at.radio(key="grading_hallucinated").set_value("no")
    return at.button(key="grading_save").click().run()


def test_the_queue_is_walked_a_page_at_a_time(fx, monkeypatch):
    """Pages of one item: skip, grade across page ends, the skipped one comes back last."""
    import cache.grades

    monkeypatch.setattr(cache.grades, "QUEUE_PAGE", 1)
    sha = fx.sha("fundus", "r1")  # A (paper), A (brief), B (paper)
    expected = []
    con = Store(fx.root).connect()
    for _ in range(3):
        expected.append(next_interpretation(con, "Walker", expected, image=sha)[1]["interpretation"])
    at = start(run(fx.root, monkeypatch, "grading", image=sha), "Walker")

    def status(at):
        texts = [t.value for t in at.text]
        return next(t for t in texts if t.startswith("Grader:")), next(
            t for t in texts if not t.startswith("Grader:")
        )

    assert status(at) == ("Grader: Walker · graded 0 · left 3", expected[0])
    at.button(key="grading_skip").click().run()
    assert status(at) == ("Grader: Walker · graded 0 · left 3", expected[1])
    at = grade_it(at, 4)
    assert status(at) == ("Grader: Walker · graded 1 · left 2", expected[2])
    at = grade_it(at, 5)
    assert status(at) == ("Grader: Walker · graded 2 · left 1", expected[0]), "the skipped one comes back"
    at = grade_it(at, 2)
    assert "Nothing left to grade here" in at.info[0].value
    keys = (
        Store(fx.root)
        .connect()
        .execute(
            "SELECT r.interpretation, g.correctness FROM grades g JOIN results r USING (key) "
            "WHERE grader = 'Walker' ORDER BY g.created_at"
        )
        .fetchall()
    )
    assert keys == [(expected[1], 4), (expected[2], 5), (expected[0], 2)]
