"""Overview: metrics per model x modality x prompt, the accuracy chart, and the source breakdown."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from cache import metrics as cm
from dashboard import exports, figures, queries, ui
from dashboard import filters as qf
from dashboard.context import get_context

CHART_METRICS = ("accuracy", "sensitivity", "specificity")
#: every field of cache.metrics.group_metrics, in the CSV (the screen shows exports.PAPER_COLUMNS)
COLUMNS = ("model", "modality", "prompt_id", "accuracy_ci", "n", "answered", "coverage", "accuracy",
           "accuracy_ci_low", "accuracy_ci_high", "accuracy_answered", "sensitivity", "specificity",
           "tp", "fn", "fp", "tn", "uncertain", "refused", "unparseable", "errors", "mean_latency_ms",
           "input_tokens", "output_tokens", "cost_usd", "correct", "sensitivity_ci_low", "sensitivity_ci_high",
           "specificity_ci_low", "specificity_ci_high", "param_sets", "prompt_versions")
BREAKDOWN_COLUMNS = ("model", "modality", "truth", "source", "n", "answered", "accuracy", "accuracy_ci_low",
                     "accuracy_ci_high", "uncertain", "refused", "unparseable", "errors")
RATE = st.column_config.NumberColumn(format="%.3f")
CONFIG = {c: RATE for c in ("coverage", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                            "accuracy_answered", "sensitivity", "specificity")}
PAPER_CONFIG = {
    "Coverage": st.column_config.Column(help="answered (real or synthetic) / n", alignment="right"),
    "Accuracy [95% CI]": st.column_config.TextColumn(help="correct / n (abstentions count as wrong), 95% Wilson"),
    "Sensitivity": st.column_config.Column(help="synthetic read as synthetic, answered only", alignment="right"),
    "Specificity": st.column_config.Column(help="real read as real, answered only", alignment="right"),
    "Abstained": st.column_config.NumberColumn(help="uncertain + refused + unparseable"),
    "Errors": st.column_config.NumberColumn(help="calls still failing (see Runs & errors)"),
    "Cost": st.column_config.Column(help="USD, from the price table (–: not priced)", alignment="right"),
}
NO_ANSWERS = ("No chart: no image under these filters has an answer yet (every response is an error; see "
              "Runs & errors).")


def overview_frame(groups: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> pd.DataFrame:
    """Every field per group (the CSV download), with the accuracy interval as text too."""
    rows = [g | {"accuracy_ci": exports.fmt_interval(g["accuracy"], g["accuracy_ci_low"], g["accuracy_ci_high"])}
            for g in groups]
    return pd.DataFrame(rows, columns=list(columns))


def has_answers(groups: list[dict[str, Any]], metric: str | None = None) -> bool:
    """Whether any group has an ok answer (and a value of ``metric``): else a chart is empty axes."""
    return any(g.get("n") and (metric is None or g.get(metric) is not None) for g in groups)


def _downloads(groups: list[dict[str, Any]], caption: str) -> None:
    """CSV (every field), LaTeX and Markdown (the table as shown) on one row."""
    paper = exports.paper_text_table(groups)
    with st.container(horizontal=True, key="overview_downloads"):
        st.download_button("CSV", data=lambda: exports.to_csv(overview_frame(groups)),
                           file_name="medlens-overview.csv", mime="text/csv", key="overview_table_csv",
                           on_click="ignore", help="every field, including all intervals and counts")
        st.download_button("LaTeX", data=lambda: exports.to_latex(paper, caption=caption, label="tab:medlens"),
                           file_name="medlens-overview.tex", mime="text/x-tex", key="overview_latex",
                           on_click="ignore", help="the table as shown (booktabs)")
        st.download_button("Markdown", data=lambda: exports.to_markdown(paper), file_name="medlens-overview.md",
                           mime="text/markdown", key="overview_markdown", on_click="ignore",
                           help="the table as shown")


def render() -> None:
    ctx = get_context()
    st.title("Overview")
    ui.filters_note(qf.describe(ctx.filters), ". Accuracy counts abstentions (uncertain, refused, unparseable) "
                    "as wrong; sensitivity (synthetic = positive) and specificity are over answered images; "
                    "intervals are 95% Wilson.")
    if ctx.filters.outcome:
        st.caption("The outcome filter applies to the gallery and the row lists; metrics use every outcome.")
    groups = queries.overview(ctx.root, ctx.signature, ctx.filters)
    if not groups:
        st.warning("No responses match the filters.")
        return
    warnings = queries.confound_warnings(queries.run_records(ctx.root, ctx.signature), ctx.filters.modality)
    if warnings:  # a real-vs-synthetic score means little if file properties give the answer away
        st.warning("Confound audit: real and synthetic images differ in ways a model could read instead of "
                   "the anatomy; read these scores with care.\n\n"
                   + "\n".join(f"- {ui.literal(w)}" for w in warnings[:6]), icon=":material/warning:")
    st.dataframe(exports.paper_text_table(groups), width="stretch", hide_index=True,
                 column_config=PAPER_CONFIG, key="overview_table")
    sources = queries.label_sources(ctx.root, ctx.signature, ctx.filters)
    if sources:
        st.caption(cm.label_sources_sentence(sources, quote=ui.literal))
    _downloads(groups, f"Real vs. synthetic detection ({qf.describe(ctx.filters)}).")

    if has_answers(groups):
        ui.url_state("overview_metric", "metric", "accuracy")
        if st.session_state["overview_metric"] not in CHART_METRICS:
            st.session_state["overview_metric"] = "accuracy"
        metric = st.segmented_control("Chart", CHART_METRICS, key="overview_metric") or "accuracy"
        ui.set_url_param("metric", metric, "accuracy")
        if has_answers(groups, metric):
            ui.figure(figures.accuracy_bars(groups, metric), f"medlens-{metric}", key="overview_chart")
        else:
            st.info(f"No chart: {figures.METRIC_TITLES[metric].lower()} is undefined for every group here "
                    f"({'no real images' if metric == 'specificity' else 'no synthetic images'} answered).")
    else:
        st.info(NO_ANSWERS)

    st.subheader("Which generator fools which model")
    st.caption("Accuracy per source: on synthetic sources it is the share detected as synthetic.")
    breakdown = queries.overview(ctx.root, ctx.signature, ctx.filters, ("model", "modality", "truth", "source"))
    if has_answers(breakdown):
        ui.figure(figures.source_heatmap(breakdown), "medlens-by-source", key="overview_source_chart")
    else:
        st.info(NO_ANSWERS)
    ui.table(pd.DataFrame(breakdown, columns=list(BREAKDOWN_COLUMNS)), "medlens-by-source",
             key="overview_source_table", column_config=CONFIG)


if __name__ == "__main__":
    render()
