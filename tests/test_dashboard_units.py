"""Pure parts of the dashboard: filters <-> URL, exports, figures, statistics, vocabulary, launcher."""

from __future__ import annotations

import ast
import math
import time
import tomllib
from pathlib import Path

import duckdb
import pandas as pd
import plotly.graph_objects as go
import pytest

from cache.metrics import Filters
from cache.store import Store
from dashboard import exports, figures, vocab
from dashboard import filters as qf
from dashboard.__main__ import streamlit_command
from dashboard.context import store_argument

REPO = Path(__file__).resolve().parents[1]


# -- filters <-> query string -------------------------------------------------------------------------
def test_filters_round_trip_through_query_params():
    f = Filters(model=("openai:gpt-4o", "gemini:x"), modality=("fundus",), prompt_id=("paper",),
                source=("DALL-E 2",), truth=("synthetic",), outcome=("wrong", "error"))
    params = qf.params_from_filters(f)
    assert params == {"model": ["openai:gpt-4o", "gemini:x"], "modality": ["fundus"], "prompt": ["paper"],
                      "source": ["DALL-E 2"], "truth": ["synthetic"], "outcome": ["wrong", "error"]}
    assert qf.filters_from_params(params) == f
    assert qf.params_from_filters(Filters()) == {}


def test_filters_from_params_drop_bad_closed_values_and_duplicates():
    f = qf.filters_from_params({"truth": ["real", "fake"], "outcome": "bogus", "model": ["a", "a", ""],
                                "unknown": "x"})
    assert (f.truth, f.outcome, f.model) == (("real",), (), ("a",))


def test_page_link_and_describe():
    f = Filters(model=("openai:gpt-4o",), modality=("chest_xray",))
    link = qf.page_link("gallery", f, image="abc")
    assert link == "gallery?model=openai%3Agpt-4o&modality=chest_xray&image=abc"
    assert qf.page_link("gallery", Filters()) == "gallery"
    assert qf.describe(f) == "model=openai:gpt-4o; modality=chest_xray"
    assert qf.describe(Filters()) == "all rows"
    assert qf.without(f, "model") == Filters(modality=("chest_xray",))


def test_literal_makes_user_text_inert_markdown():
    from dashboard.ui import literal

    assert literal("[x](http://evil.example)") == "` [x](http://evil.example) `"
    assert literal("a`b``c") == "``` a`b``c ```"  # the fence is longer than any run inside
    assert literal("two\nlines  <b>") == "` two lines <b> `"


def test_store_argument_takes_only_store():
    assert store_argument(["--store", "/x"]) == "/x"
    assert store_argument(["-q", "tests/test_x.py", "--strict-markers"]) is None
    assert store_argument(["--sto", "/x"]) is None  # no abbreviations


# -- exports --------------------------------------------------------------------------------------------
GROUPS = [{"model": "openai:gpt-4o", "modality": "fundus", "prompt_id": "paper", "n": 12, "coverage": 0.75,
           "accuracy": 7 / 12, "accuracy_ci_low": 0.3195, "accuracy_ci_high": 0.8067, "accuracy_answered": 7 / 9,
           "sensitivity": 0.8, "sensitivity_ci_low": 0.376, "sensitivity_ci_high": 0.964, "specificity": None,
           "specificity_ci_low": None, "specificity_ci_high": None, "uncertain": 1, "refused": 1,
           "unparseable": 1, "errors": 1}]


def test_paper_table_latex_and_markdown():
    table = exports.paper_table(GROUPS)
    assert list(table.columns) == ["Model", "Modality", "Prompt", "n", "Coverage", "Accuracy [95% CI]",
                                   "Sensitivity", "Specificity", "Abstained", "Errors", "Cost"]
    assert table.loc[0, "Accuracy [95% CI]"] == "0.583 [0.320, 0.807]"
    assert table.loc[0, "Sensitivity"] == 0.8 and math.isnan(table.loc[0, "Specificity"])
    assert table.loc[0, "Abstained"] == 3 and table.loc[0, "Errors"] == 1
    text = exports.paper_text_table([GROUPS[0] | {"cost_usd": 0.0123456}])
    assert list(text.loc[0, ["Coverage", "Sensitivity", "Specificity", "Cost"]]) == ["0.750", "0.800", "–", "$0.0123"]
    latex = exports.to_latex(text, caption="Detection 100% of_images", label="tab:x")
    assert r"\caption{Detection 100\% of\_images}" in latex and r"\label{tab:x}" in latex
    assert r"openai:gpt-4o & fundus & paper & 12 & 0.750 & 0.583 [0.320, 0.807] & 0.800 & – & 3 & 1 & \$0.0123" in latex
    assert latex.count(r"\\") == 2 and r"\begin{tabular}{lllrrlrrrrr}" in latex
    md = exports.to_markdown(text).splitlines()
    assert md[0] == ("| Model | Modality | Prompt | n | Coverage | Accuracy [95% CI] | Sensitivity | Specificity "
                     "| Abstained | Errors | Cost |")
    assert md[1].startswith("| --- | --- | --- | ---: | ---: | --- |")
    assert md[2] == "| openai:gpt-4o | fundus | paper | 12 | 0.750 | 0.583 [0.320, 0.807] | 0.800 | – | 3 | 1 | $0.0123 |"


def test_label_sources_sentence():
    from cache.metrics import label_sources_sentence

    rows = [{"label_source": "reviewer", "label_by": "Ann", "n": 41},
            {"label_source": "judge", "label_by": "openai:gpt-4o-mini", "n": 112},
            {"label_source": "parser", "label_by": "parser-2", "n": 1000},
            {"label_source": "parser", "label_by": "parser-1", "n": 77}]
    assert label_sources_sentence(rows) == ("41 of 1,230 labels set by a reviewer, 112 by openai:gpt-4o-mini as "
                                            "judge, the other 1,077 read from the answer by the parser.")
    assert label_sources_sentence(rows[1:2], quote=lambda s: f"`{s}`") == "All 112 labels by `openai:gpt-4o-mini` as judge."
    two = [{"label_source": "reviewer", "label_by": name, "n": 1} for name in ("Ann", "Bob")]
    assert label_sources_sentence(two + [{"label_source": "provider", "label_by": "provider", "n": 8}]) == \
        "2 of 10 labels set by 2 reviewers, the other 8 decided by a local detector."
    assert label_sources_sentence([]) == ""


def test_markdown_and_latex_escape_cell_text():
    df = pd.DataFrame({"source": ["a|b", "x_y & z"]})
    assert "| a\\|b |" in exports.to_markdown(df)
    assert r"x\_y \& z \\" in exports.to_latex(df)


def test_csv_and_filename():
    assert exports.to_csv(pd.DataFrame({"a": [1], "b": ["x,y"]})) == b'a,b\n1,"x,y"\n'
    assert exports.safe_filename("confusion", "compat:llava@http://h/v1", "fundus") == \
        "confusion-compat_llava_http___h_v1-fundus"


def test_static_export_without_chromium_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert exports.chromium_path() is None
    started = time.monotonic()
    with pytest.raises(exports.StaticExportUnavailable, match="apt-get install -y chromium"):
        exports.figure_bytes(go.Figure(go.Bar(x=[1], y=[1])), "png")
    assert time.monotonic() - started < 1  # no hang on a browser download
    monkeypatch.setenv("BROWSER_PATH", str(tmp_path / "missing"))
    assert exports.chromium_path() is None


@pytest.mark.skipif(exports.chromium_path() is None, reason="no Chromium for kaleido")
def test_static_export_png_and_svg():
    fig = figures.confusion_heatmap({"real": {"real": 3}, "synthetic": {"synthetic": 2}}, "a · b")
    png = exports.figure_bytes(fig, "png")
    svg = exports.figure_bytes(fig, "svg")
    assert png.startswith(b"\x89PNG") and b"<svg" in svg[:200]
    with pytest.raises(ValueError):
        exports.figure_bytes(fig, "eps")


# -- figures --------------------------------------------------------------------------------------------
def test_accuracy_bars_whiskers_are_the_wilson_interval():
    fig = figures.accuracy_bars(GROUPS + [GROUPS[0] | {"model": "<b>evil</b>", "accuracy": None}])
    bar = fig.data[0]
    assert bar.y[0] == pytest.approx(7 / 12)
    assert bar.error_y.array[0] == pytest.approx(0.8067 - 7 / 12)
    assert bar.error_y.arrayminus[0] == pytest.approx(7 / 12 - 0.3195)
    assert bar.x[1] == "&lt;b&gt;evil&lt;/b&gt;"  # category names cannot inject plotly HTML


def test_confusion_heatmap_counts_and_row_percentages():
    cm_ = {"real": {"real": 3, "synthetic": 1, "uncertain": 1, "refused": 1, "unparseable": 0},
           "synthetic": {"real": 1, "synthetic": 4, "uncertain": 0, "refused": 0, "unparseable": 1}}
    trace = figures.confusion_heatmap(cm_, "m · fundus").data[0]
    assert list(trace.y) == ["real", "synthetic"] and trace.x[-1] == "unparseable"
    assert trace.text[0][0] == "3<br>(50%)" and trace.text[1][1] == "4<br>(67%)"
    assert trace.z[1][4] == pytest.approx(1 / 6)


def test_source_heatmap_latency_and_quality_figures():
    heat = figures.source_heatmap([{"model": "m", "modality": "fundus", "truth": "synthetic", "source": "GAN",
                                    "accuracy": 0.25, "n": 4}]).data[0]
    assert heat.text[0][0] == "0.25 (n=4)" and heat.y[0] == "fundus · synthetic · GAN"
    box = figures.latency_box([{"model": "m", "q1": 1, "median": 2, "q3": 3, "p05": 0.5, "p95": 4, "mean": 2}])
    assert box.data[0].median[0] == 2 and box.data[0].upperfence[0] == 4
    hist = figures.latency_histogram([{"model": "m", "bin_start": 0, "bin_end": 10, "count": 5}]).data[0]
    assert hist.x[0] == 5 and hist.y[0] == 5 and hist.width[0] == 10
    quality = figures.quality_bars([{"model": "m", "modality": "fundus", "finding_share": 0.4, "hedge_share": 0.6}])
    assert [t.y[0] for t in quality.data] == [0.4, 0.6]


# -- vocabulary -----------------------------------------------------------------------------------------
def test_vocabulary_matches_findings_and_hedges():
    assert vocab.family("fundus") == "fundus" and vocab.family("chest_xray") == "chest"
    assert vocab.family("CXR") == "chest" and vocab.family("dermoscopy") is None
    assert vocab.names_finding("Dot haemorrhages near the macula.", "fundus")
    assert vocab.names_finding("Small hemorrhage; cup-to-disc ratio 0.3", "retina")
    assert vocab.names_finding("Blunted costophrenic angle, small effusion.", "chest_xray")
    assert not vocab.names_finding("This is a medical image of the eye.", "fundus")
    assert not vocab.names_finding("Normal lungs.", "chest_xray")  # 'lung fields' needed, not 'lungs'
    assert vocab.hedges("It may be synthetic") and vocab.hedges("I cannot determine whether")
    assert vocab.hedges("Possibly generated.") and not vocab.hedges("The image is synthetic. Mayo clinic.")


def test_quality_sql_matches_the_python_mirror(tmp_path):
    """The DuckDB regexes (RE2) agree with Python's re on the same vocabulary."""
    texts = ["Dot haemorrhages near the macula.", "It may be synthetic; cannot determine.", "",
             "Blunted costophrenic angle.", "The drusen might suggest AMD.", "Plain text."]
    con = duckdb.connect()
    for text in texts:
        for modality in ("fundus", "chest_xray"):
            fam = vocab.family(modality)
            sql_finding, sql_hedge = con.execute(  # as in dashboard.queries.quality: case-insensitive
                "SELECT regexp_matches(?, ?, 'i'), regexp_matches(?, ?, 'i')",
                [text.upper(), vocab.findings_pattern(fam), text.upper(), vocab.hedge_pattern()]).fetchone()
            assert sql_finding == vocab.names_finding(text, modality), (text, modality)
            assert sql_hedge == vocab.hedges(text), text


def test_quality_query_leaves_unknown_modalities_without_a_share(tmp_path):
    from dashboard import queries

    store = Store(tmp_path / "s")
    store.append([{"key": f"k{i}", "status": "ok", "model": "m", "modality": modality, "truth": "real",
                   "label": "real", "prompt_id": "p", "image_sha256": f"i{i}", "interpretation": text}
                  for i, (modality, text) in enumerate([("dermoscopy", "A pigmented lesion; may be benign."),
                                                        ("fundus", "The optic disc is normal.")])])
    root = str(store.root)
    df = queries.quality(root, queries.store_signature(root), Filters(), ("dermoscopy", "fundus")).set_index("modality")
    assert not df.loc["dermoscopy", "has_vocabulary"] and df.loc["dermoscopy", "hedged"] == 1
    assert df.loc["fundus", "has_vocabulary"] and df.loc["fundus", "names_finding"] == 1


# -- launcher, config, import boundaries --------------------------------------------------------------
def test_launcher_and_config_bind_to_loopback_without_telemetry():
    cmd = streamlit_command("/data/s", 8600)
    joined = " ".join(cmd)
    assert "--server.address 127.0.0.1" in joined and "--browser.gatherUsageStats false" in joined
    assert "--server.headless true" in joined and cmd[-3:] == ["--", "--store", "/data/s"]
    config = tomllib.loads((REPO / "dashboard" / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1" and config["server"]["headless"] is True
    assert config["browser"]["gatherUsageStats"] is False


#: the only st.html calls: page -> the pure builder (escapes the text, tested) whose result it shows
HTML_BUILDERS = {"review.py": "marked_answer", "reader.py": "image_html"}


def test_dashboard_never_imports_ingest_nor_uses_unsafe_html():
    for path in (REPO / "dashboard").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "ingest" for a in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "ingest", path
            elif isinstance(node, ast.keyword):
                assert node.arg not in ("unsafe_allow_html", "unsafe_allow_javascript"), path
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "html":
                arg = node.args[0] if node.args else None
                builder = arg.func.id if isinstance(arg, ast.Call) and isinstance(arg.func, ast.Name) else None
                assert builder == HTML_BUILDERS.get(path.name), f"{path}: st.html of something not escaped"
        assert "use_container_width" not in path.read_text(), path
