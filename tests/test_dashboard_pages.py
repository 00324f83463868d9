"""AppTest for every dashboard page against the fixture store (tests/dashboard_fixture.py).

Expected numbers are counted by hand from the fixture's tables (see the comments) and cross-checked
against cache.metrics, which the CLI (`python -m cache metrics --json`) uses too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cache.metrics import Filters, compare_models, confusion_matrix, group_metrics, wilson
from cache.store import Store
from tests.dashboard_fixture import INJECTION, MODEL_A, MODEL_B, build_fixture_store

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "dashboard" / "app.py"


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return build_fixture_store(tmp_path_factory.mktemp("dashboard") / "store")


@pytest.fixture
def open_app(fx, monkeypatch):
    monkeypatch.setenv("MEDLENS_STORE", str(fx.root))

    def run(page: str = "overview", **params: str | list[str]) -> AppTest:
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.query_params.update(params)
        if page != "overview":  # url paths equal the file names, so this works before the first run
            at.switch_page(f"tabs/{page}.py")
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        return at

    return run


def frame(at: AppTest, column: str, index: int = 0):
    """The index-th dataframe shown that has ``column``."""
    frames = [d.value for d in at.dataframe if column in d.value.columns]
    return frames[index]


def row(df, **match):
    hits = df
    for key, value in match.items():
        hits = hits[hits[key] == value]
    assert len(hits) == 1, (match, hits)
    return hits.iloc[0]


def charts(at: AppTest) -> list[dict]:
    return [json.loads(c.proto.spec) for c in at.get("plotly_chart")]


# -- Overview ----------------------------------------------------------------------------------------
def test_overview_table_reads_like_a_papers_table(open_app, fx):
    at = open_app()
    df = frame(at, "Accuracy [95% CI]")
    assert list(df.columns) == ["Model", "Modality", "Prompt", "n", "Coverage", "Accuracy [95% CI]", "Sensitivity",
                                "Specificity", "Abstained", "Errors", "Cost"]
    assert len(df) == 5  # A fundus paper, A fundus brief, A chest, B fundus, B chest
    # A, fundus, paper: real -> real x3, synthetic, uncertain, refused; synthetic -> synthetic x4, real,
    # unparseable. correct = 3 + 4 = 7 of 12; answered 9; abstained 3; one open error (r7).
    a = row(df, Model=MODEL_A, Modality="fundus", Prompt="paper")
    assert (a["n"], a["Abstained"], a["Errors"]) == (12, 3, 1)
    assert a["Accuracy [95% CI]"] == "0.583 [0.320, 0.807]"  # 7/12, Wilson (0.3195, 0.8067)
    assert (a["Coverage"], a["Sensitivity"], a["Specificity"], a["Cost"]) == ("0.750", "0.800", "0.750", "$0.1200")
    # B, chest: correct r1-r4, s1, s6 = 6 of 12; s5 refused; one open error (s7)
    b = row(df, Model=MODEL_B, Modality="chest_xray")
    assert (b["n"], b["Abstained"], b["Errors"], b["Accuracy [95% CI]"]) == (12, 1, 1, "0.500 [0.254, 0.746]")
    # A fundus brief: r1 real -> real, s1 -> uncertain: no synthetic image answered, sensitivity undefined
    assert row(df, Model=MODEL_A, Prompt="brief")["Sensitivity"] == "–"
    # one interval column on screen: no other cell holds a bracketed interval
    assert not df.drop(columns="Accuracy [95% CI]").astype(str).apply(lambda col: col.str.contains(r"\[")).any().any()
    # every number equals cache.metrics (the CLI's `metrics --json`)
    for g in group_metrics(Store(fx.root).connect()):
        shown = row(df, Model=g["model"], Modality=g["modality"], Prompt=g["prompt_id"])
        assert shown["n"] == g["n"] and shown["Errors"] == g["errors"]
        assert shown["Coverage"] == f"{g['coverage']:.3f}"


def test_overview_csv_keeps_every_field_equal_to_cache_metrics(fx):
    from dashboard.tabs.overview import overview_frame

    expected = group_metrics(Store(fx.root).connect())
    csv = overview_frame(expected)
    assert set(expected[0]) <= set(csv.columns)  # every field of cache.metrics (the CLI's --json)
    assert list(csv.columns[:5]) == ["model", "modality", "prompt_id", "accuracy_ci", "n"]
    a = row(csv, model=MODEL_A, modality="fundus", prompt_id="paper")
    assert (a["n"], a["answered"], a["uncertain"], a["refused"], a["unparseable"], a["errors"]) == (12, 9, 1, 1, 1, 1)
    assert (a["accuracy_ci_low"], a["accuracy_ci_high"]) == pytest.approx(wilson(7, 12))
    assert (a["sensitivity_ci_low"], a["sensitivity_ci_high"]) == pytest.approx(wilson(4, 5))
    assert a["accuracy_answered"] == pytest.approx(7 / 9)
    assert (a["input_tokens"], a["output_tokens"], a["mean_latency_ms"]) == (9600, 1200, 1200.0)


def test_overview_says_who_set_the_labels(open_app):
    at = open_app()
    # 48 paper answers + 2 brief ones, all read by the parser at ingest time (no reading in this store)
    assert "All 50 labels read from the answer by the parser." in [c.value for c in at.caption]
    assert [b.label for b in at.get("download_button")][:3] == ["CSV", "LaTeX", "Markdown"]


def test_overview_chart_and_source_breakdown(open_app):
    at = open_app()
    bars, heatmap = charts(at)
    fundus = next(t for t in bars["data"] if t["name"] == "fundus · paper")
    index = fundus["x"].index(MODEL_A)
    assert fundus["y"][index] == pytest.approx(7 / 12)
    low, high = wilson(7, 12)
    assert fundus["error_y"]["array"][index] == pytest.approx(high - 7 / 12)
    assert fundus["error_y"]["arrayminus"][index] == pytest.approx(7 / 12 - low)
    # B on RetinaDiffusion (s4 real, s5 real, s6 uncertain): fooled every time
    breakdown = frame(at, "source")
    cell = row(breakdown, model=MODEL_B, modality="fundus", source="RetinaDiffusion")
    assert (cell["n"], cell["accuracy"]) == (3, 0.0)
    y = heatmap["data"][0]["y"].index("fundus · synthetic · RetinaDiffusion")
    x = heatmap["data"][0]["x"].index(MODEL_B)
    assert heatmap["data"][0]["text"][y][x] == "0.00 (n=3)"
    assert {b.label for b in at.get("download_button")} >= {"CSV", "LaTeX", "Markdown"}


def test_filters_come_from_the_url_and_go_back_into_it(open_app):
    at = open_app(model=MODEL_A, modality="fundus")
    df = frame(at, "Accuracy [95% CI]")
    assert sorted(df["Prompt"]) == ["brief", "paper"] and set(df["Model"]) == {MODEL_A}
    assert at.multiselect(key="sidebar_model").value == [MODEL_A]
    at.multiselect(key="sidebar_prompt").select("paper").run()
    assert at.query_params["prompt"] == "paper" and at.query_params["model"] == MODEL_A
    assert len(frame(at, "Accuracy [95% CI]")) == 1
    at.multiselect(key="sidebar_model").unselect(MODEL_A).run()
    assert "model" not in at.query_params


def test_unknown_url_values_are_dropped_with_a_warning(open_app):
    at = open_app(model=["nope:model", MODEL_B, "[x](http://evil.example)"])
    assert at.multiselect(key="sidebar_model").value == [MODEL_B]
    # URL values are echoed as code spans: a crafted link cannot put a link (or HTML) on the page
    assert at.warning[0].value == ("Not in this store, ignored: ` model=nope:model `, "
                                   "` model=[x](http://evil.example) `")


# -- Confusion matrices --------------------------------------------------------------------------------
def test_confusion_matrix_cells(open_app, fx):
    at = open_app("confusion")
    figures = {c["layout"]["title"]["text"]: c["data"][0] for c in charts(at)}
    assert len(figures) == 4
    a_fundus = figures[f"{MODEL_A} · fundus"]  # prompts pooled: paper + brief (r1 real, s1 uncertain)
    assert a_fundus["x"] == ["real", "synthetic", "uncertain", "refused", "unparseable"]
    assert [t.split("<br>")[0] for t in a_fundus["text"][0]] == ["4", "1", "1", "1", "0"]
    assert [t.split("<br>")[0] for t in a_fundus["text"][1]] == ["1", "4", "1", "0", "1"]
    assert a_fundus["text"][0][0] == "4<br>(57%)" and a_fundus["z"][0][0] == pytest.approx(4 / 7)
    cells = frame(at, "predicted")
    assert row(cells, model=MODEL_B, modality="chest_xray", truth="synthetic", predicted="refused")["count"] == 1
    expected = confusion_matrix(Store(fx.root).connect())
    for (model, modality), cm in expected.items():
        for truth, labels in cm.items():
            for label, count in labels.items():
                shown = row(cells, model=model, modality=modality, truth=truth, predicted=label)
                assert shown["count"] == count


def test_confusion_equals_cli_metrics_json(open_app, fx):
    """The dashboard and `python -m cache metrics --json` show the same numbers (both use cache.metrics)."""
    if not (REPO / "cache" / "__main__.py").exists():
        pytest.skip("python -m cache not available yet")
    out = subprocess.run([sys.executable, "-m", "cache", "metrics", "--json", "--store", str(fx.root),
                          "--prompt", "paper"], cwd=REPO, capture_output=True, text=True, check=True)
    cli = {(g["model"], g["modality"]): g for g in json.loads(out.stdout)}
    at = open_app("confusion", prompt="paper")
    cells = frame(at, "predicted")
    for (model, modality), g in cli.items():
        def count(truth, label, model=model, modality=modality):
            return row(cells, model=model, modality=modality, truth=truth, predicted=label)["count"]
        assert (count("synthetic", "synthetic"), count("synthetic", "real")) == (g["tp"], g["fn"])
        assert (count("real", "synthetic"), count("real", "real")) == (g["fp"], g["tn"])
    assert (cli[(MODEL_A, "fundus")]["tp"], cli[(MODEL_A, "fundus")]["tn"]) == (4, 3)
    overview = frame(open_app(prompt="paper"), "Accuracy [95% CI]")
    for (model, modality), g in cli.items():
        shown = row(overview, Model=model, Modality=modality)["Accuracy [95% CI]"]
        assert shown.startswith(f"{g['accuracy']:.3f} [{g['accuracy_ci_low']:.3f}, ")


# -- Gallery ------------------------------------------------------------------------------------------
def details_buttons(at: AppTest) -> int:
    return sum(b.label == "Details" for b in at.button)


def test_gallery_cards_and_paging(open_app):
    at = open_app("gallery")  # 13 fundus (r1-r7, s1-s6) + 13 chest (r1-r6, s1-s7) images
    assert any("Showing 1–12 of 26 images." in c.value for c in at.caption)
    assert details_buttons(at) == 12 and len(at.image) == 12
    at = open_app("gallery", gpage="3")
    assert any("Showing 25–26 of 26 images." in c.value for c in at.caption)
    assert details_buttons(at) == 2


@pytest.mark.parametrize(("params", "expected"), [
    # any wrong or abstained answer: fundus r4 r5 r6 s1(brief: uncertain) s3-s6 = 8; chest r5 r6 s2-s6 = 7
    ({"wrong": "1"}, 15),
    # two different labels: fundus r4 r5 r6 s1 s3 s4 s6 = 7 (s5: both 'real'); chest r5 r6 s2-s6 = 7
    ({"disagree": "1"}, 14),
    ({"outcome": "error"}, 2),  # open errors: fundus r7 (A), chest s7 (B)
    ({"outcome": "wrong", "model": MODEL_A}, 3),  # A: fundus r4, s5; chest s6
])
def test_gallery_filters_count_cards(open_app, params, expected):
    at = open_app("gallery", **params)
    assert details_buttons(at) == min(expected, 12)
    assert any(f"of {expected} images." in c.value for c in at.caption)


def test_gallery_placeholder_and_error_cards(open_app, fx):
    at = open_app("gallery", outcome="error")
    captions = [caption for image in at.image for caption in image.captions]
    assert captions == ["", "no thumbnail"]  # cards sorted by modality: chest s7 (thumbnail), fundus r7 (none)
    texts = [t.value for t in at.text]
    assert f"⚠ {MODEL_A} [paper]: error (rate_limit)" in texts


def test_gallery_marks_each_models_answer(open_app):
    at = open_app("gallery", modality="fundus", source="DRIVE", truth="real")
    texts = [t.value for t in at.text]
    assert f"✗ {MODEL_A} [paper]: synthetic" in texts  # r4
    assert f"✓ {MODEL_B} [paper]: real" in texts
    assert f"✗ {MODEL_A} [paper]: refused" in texts  # r6


def test_gallery_detail_shows_model_text_as_plain_text(open_app, fx):
    sha = fx.sha("chest_xray", "r1")
    at = open_app("gallery")
    at.button(key=f"gallery_open_{sha}").click().run()
    assert at.query_params["image"] == sha
    assert [t.value for t in at.title] == ["Image detail"]
    assert f"Answer: real\nInterpretation: {INJECTION}" in [c.value for c in at.code]
    assert INJECTION in [t.value for t in at.text]
    table = frame(at, "model_version")
    assert row(table, model=MODEL_B)["model_version"] == "gemini-2.5-pro-001"
    assert row(table, model=MODEL_B)["output_tokens"] == 150
    # model text never reaches markdown (which would render links) nor any HTML element
    rendered = [m.value for m in at.markdown] + [c.value for c in at.caption]
    assert not any("alert(" in v or "evil.example" in v for v in rendered)
    assert not at.get("html")


# -- Compare ------------------------------------------------------------------------------------------
def test_compare_mcnemar_kappa_and_disagreements(open_app, fx):
    at = open_app("compare", a=MODEL_A, b=MODEL_B)
    metrics = {m.label: m.value for m in at.metric}
    # paper pairs: fundus A-only 2 (s3 s4), B-only 2 (r4 r5); chest A-only 6 (r5 r6 s2-s5), B-only 1 (s6)
    # -> b = 8, c = 3: p = 2 * (C(11,0)+C(11,1)+C(11,2)+C(11,3)) / 2^11 = 464/2048
    assert metrics["Paired images"] == "24" and metrics["Disagreements"] == "13"
    assert metrics["McNemar exact p"] == "0.227"
    summary = frame(at, "scope")
    assert row(summary, scope="all")["mcnemar_p"] == pytest.approx(464 / 2048)
    chest = row(summary, scope="chest_xray")
    assert (chest["a_only_correct"], chest["b_only_correct"]) == (6, 1)
    assert chest["mcnemar_p"] == pytest.approx(0.125)  # 2 * (1 + 7) / 128
    assert chest["kappa"] == pytest.approx(-0.12)  # observed 5/12, expected 69/144
    reference = compare_models(Store(fx.root).connect(), MODEL_A, MODEL_B)
    overall = row(summary, scope="all")
    assert overall["n_pairs"] == reference["n_pairs"]
    assert overall["kappa"] == pytest.approx(reference["kappa"])
    assert overall["mcnemar_p"] == pytest.approx(reference["mcnemar_p"])


def test_compare_disagreement_links_open_the_gallery_detail(open_app, fx):
    at = open_app("compare", a=MODEL_A, b=MODEL_B, modality="chest_xray")
    assert {m.label: m.value for m in at.metric}["McNemar exact p"] == "0.125"
    links = frame(at, "open")
    assert len(links) == 7
    sha = fx.sha("chest_xray", "s5")
    assert row(links, image_sha256=sha)["open"] == f"gallery?modality=chest_xray&image={sha}"
    assert row(links, image_sha256=sha)[f"B: {MODEL_B}"] == "refused"
    # following the link: the gallery opens that image's detail
    detail = open_app("gallery", modality="chest_xray", image=sha)
    assert [t.value for t in detail.title] == ["Image detail"]


# -- Runs & errors ------------------------------------------------------------------------------------
def test_runs_errors_costs_latency_and_provenance(open_app):
    at = open_app("runs")
    errors = frame(at, "still_open")
    timeout = row(errors, model=MODEL_A, error_type="timeout")  # r1 (fixed later) and r7's first attempt
    assert (timeout["error_rows"], timeout["keys_affected"], timeout["still_open"]) == (2, 2, 0)
    limit = row(errors, model=MODEL_A, error_type="rate_limit")
    assert limit["still_open"] == 1 and limit["latest_message"].startswith("429")
    costs = frame(at, "cost_usd")
    run_a = row(costs, run_id="run-a")  # 24 + 2 ok rows and one error
    assert (run_a["rows"], run_a["ok"], run_a["errors"], run_a["input_tokens"]) == (27, 26, 1, 26 * 800)
    assert run_a["cost_usd"] == pytest.approx(0.26)
    latency = frame(at, "median")
    assert row(latency, model=MODEL_A)["median"] == 1200 and row(latency, model=MODEL_B)["median"] == 2000
    provenance = frame(at, "started_at")
    assert list(provenance["run_id"]) == ["run-a", "run-b"]
    assert json.loads(row(provenance, run_id="run-b")["summary"]) == {"ok": 24}
    assert len(charts(at)) == 3  # cost per run, latency box, latency histogram


# -- Interpretation quality ---------------------------------------------------------------------------
def test_quality_shares(open_app):
    at = open_app("quality")
    df = frame(at, "hedge_share")
    # A fundus: 14 answers (12 paper + 2 brief), r6 refused has no text -> 13; findings r1 r2 s1 (paper) +
    # r1 s1 (brief) = 5; the other 8 are the generic, hedged text.
    a = row(df, model=MODEL_A, modality="fundus")
    assert (a["answers"], a["with_text"], a["names_finding"], a["hedged"]) == (14, 13, 5, 8)
    assert a["finding_share"] == pytest.approx(5 / 13) and a["hedge_share"] == pytest.approx(8 / 13)
    # B chest: s5 refused (no text); r1 is the injection text (no finding): 10 of 11
    b = row(df, model=MODEL_B, modality="chest_xray")
    assert (b["with_text"], b["names_finding"], b["hedged"]) == (11, 10, 0)
    assert row(df, model=MODEL_A, modality="chest_xray")["hedge_share"] == pytest.approx(9 / 12)
    at.toggle(key="quality_terms").set_value(True).run()
    fundus = frame(at, "optic disc")
    assert row(fundus, model=MODEL_B)["optic disc"] == 12 and row(fundus, model=MODEL_A)["optic disc"] == 5
    chest = frame(at, "costophrenic angles")
    assert row(chest, model=MODEL_B)["costophrenic angles"] == 10


# -- Empty store and Refresh --------------------------------------------------------------------------
def test_empty_store_explains_how_to_fill_it_and_refresh_picks_up_rows(tmp_path, monkeypatch, fx):
    root = tmp_path / "empty"
    monkeypatch.setenv("MEDLENS_STORE", str(root))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    commands = "\n".join(c.value for c in at.code)
    assert "python -m data demo" in commands and "python -m ingest scan" in commands
    assert "python -m ingest run" in commands and str(root) in commands
    Store(root).append(fx.rows)
    at.button(key="sidebar_refresh").click().run()
    assert not at.exception
    df = frame(at, "Accuracy [95% CI]")
    assert row(df, Model=MODEL_A, Modality="fundus", Prompt="paper")["Accuracy [95% CI]"].startswith("0.583 ")
    assert df["n"].sum() == 50  # 12 * 4 + 2 (brief); superseded row and errors not counted


def test_page_params_do_not_leak_to_other_pages(open_app):
    at = open_app("overview", model=MODEL_A, image="abc", a=MODEL_B, metric="sensitivity")
    assert at.query_params.get("model") == MODEL_A and at.query_params.get("metric") == "sensitivity"
    assert "image" not in at.query_params and "a" not in at.query_params
    assert charts(at)[0]["layout"]["title"]["text"].startswith("Sensitivity")
    assert Filters(model=(MODEL_A,)).where()[1] == [MODEL_A]


def test_a_bundle_zip_opens_like_its_store_and_a_bad_one_says_why(tmp_path, monkeypatch, fx):
    from cache.bundle import export_bundle

    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundles"))
    zip_path = tmp_path / "study.zip"
    export_bundle(Store(fx.root), zip_path)
    monkeypatch.setenv("MEDLENS_STORE", str(zip_path))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    df = frame(at, "Accuracy [95% CI]")
    assert row(df, Model=MODEL_A, Modality="fundus", Prompt="paper")["Accuracy [95% CI]"] == "0.583 [0.320, 0.807]"
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    monkeypatch.setenv("MEDLENS_STORE", str(broken))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and "Cannot open the store" in at.error[0].value and "broken.zip" in at.error[0].value


# -- Demo notice and confound audit ----------------------------------------------------------------
def test_demo_store_says_what_it_holds_and_audit_confounds_are_shown(tmp_path, monkeypatch, fx):
    import shutil

    root = tmp_path / "demo"
    shutil.copytree(fx.root, root)
    (root / "demo.json").write_text(json.dumps({
        "demo": True, "contents": "Only the offline baseline answered here; no cloud model was called."}))
    audit = {"modalities": {"fundus": {"findings": [
        {"attribute": "format", "severity": "high",
         "message": "all 20 synthetic fundus images are PNG and all 16 real ones JPEG"},
        {"attribute": "mode", "severity": "info", "message": "a minor difference"}]}}}
    Store(root).write_run("run-z", {"run_id": "run-z", "started_at": "2026-11-28T00:00:00", "audit": audit})
    monkeypatch.setenv("MEDLENS_STORE", str(root))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert any("Demo store" in i.value and "no cloud model was called" in i.value for i in at.info)
    warnings = "\n".join(w.value for w in at.warning)
    assert "all 20 synthetic fundus images are PNG" in warnings and "a minor difference" not in warnings
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update({"modality": "chest_xray"})
    at.run()
    assert not any("Confound audit" in w.value for w in at.warning), "fundus findings hide on chest_xray"
    monkeypatch.setenv("MEDLENS_STORE", str(fx.root))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not any("Demo store" in i.value for i in at.info), "a research store shows no demo notice"


# -- Charts without data -------------------------------------------------------------------------------
def test_charts_without_data_become_one_sentence(tmp_path, monkeypatch, fx):
    errors_only = tmp_path / "errors"
    Store(errors_only).append([r for r in fx.rows if r["status"] == "error"])
    monkeypatch.setenv("MEDLENS_STORE", str(errors_only))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    assert frame(at, "Accuracy [95% CI]")["n"].tolist() == [0, 0]  # two models' open errors, no answer
    assert not at.get("plotly_chart")  # neither the accuracy bars nor the source heatmap: empty axes
    assert sum(i.value.startswith("No chart: no image under these filters has an answer") for i in at.info) == 2
    unpriced = tmp_path / "unpriced"  # a local detector: every cost is 0 (the demo's baseline)
    Store(unpriced).append([r | {"cost_usd": 0.0} if r["status"] == "ok" else r for r in fx.rows])
    monkeypatch.setenv("MEDLENS_STORE", str(unpriced))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.switch_page("tabs/runs.py")
    at.run()
    assert not at.exception
    titles = [c["layout"]["title"]["text"] for c in charts(at)]
    assert not any(t.startswith("Cost per run") for t in titles) and len(titles) == 2  # latency box + histogram
    assert any(i.value.startswith("No cost chart: nothing in these runs was priced") for i in at.info)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update({"truth": "synthetic", "metric": "specificity"})
    monkeypatch.setenv("MEDLENS_STORE", str(fx.root))
    at.run()
    assert [c["layout"]["title"]["text"] for c in charts(at)][0] != "Specificity (95% Wilson CI)"
    assert any("specificity is undefined for every group here (no real images answered)" in i.value for i in at.info)
