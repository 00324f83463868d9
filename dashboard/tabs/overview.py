"""Overview: metrics per model x modality x prompt, the accuracy chart, and the source breakdown."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import exports, figures, queries, ui
from dashboard import filters as qf
from dashboard.context import get_context

CHART_METRICS = ("accuracy", "sensitivity", "specificity")
COLUMNS = ("model", "modality", "prompt_id", "accuracy_ci", "n", "answered", "coverage", "accuracy",
           "accuracy_ci_low", "accuracy_ci_high", "accuracy_answered", "sensitivity", "specificity",
           "tp", "fn", "fp", "tn", "uncertain", "refused", "unparseable", "errors", "mean_latency_ms",
           "input_tokens", "output_tokens", "cost_usd")
BREAKDOWN_COLUMNS = ("model", "modality", "truth", "source", "n", "answered", "accuracy", "accuracy_ci_low",
                     "accuracy_ci_high", "uncertain", "refused", "unparseable", "errors")
RATE = st.column_config.NumberColumn(format="%.3f")
CONFIG = {c: RATE for c in ("coverage", "accuracy", "accuracy_ci_low", "accuracy_ci_high",
                            "accuracy_answered", "sensitivity", "specificity")} | {
    "accuracy_ci": st.column_config.TextColumn("accuracy [95% CI]"),
    "mean_latency_ms": st.column_config.NumberColumn("mean latency (ms)", format="%.0f"),
    "cost_usd": st.column_config.NumberColumn("cost (USD)", format="%.4f"),
}


def overview_frame(groups: list[dict[str, Any]], columns: tuple[str, ...] = COLUMNS) -> pd.DataFrame:
    rows = [g | {"accuracy_ci": exports.fmt_interval(g["accuracy"], g["accuracy_ci_low"], g["accuracy_ci_high"])}
            for g in groups]
    return pd.DataFrame(rows, columns=list(columns))


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
    ui.table(overview_frame(groups), "medlens-overview", key="overview_table", column_config=CONFIG)
    paper = exports.paper_table(groups)
    caption = f"Real vs. synthetic detection ({qf.describe(ctx.filters)})."
    left, right, _ = st.columns([1, 1, 5])
    left.download_button("LaTeX", data=lambda: exports.to_latex(paper, caption=caption, label="tab:medlens"),
                         file_name="medlens-overview.tex", mime="text/x-tex", key="overview_latex",
                         on_click="ignore", icon=":material/download:")
    right.download_button("Markdown", data=lambda: exports.to_markdown(paper), file_name="medlens-overview.md",
                          mime="text/markdown", key="overview_markdown", on_click="ignore",
                          icon=":material/download:")

    ui.url_state("overview_metric", "metric", "accuracy")
    if st.session_state["overview_metric"] not in CHART_METRICS:
        st.session_state["overview_metric"] = "accuracy"
    metric = st.segmented_control("Chart", CHART_METRICS, key="overview_metric") or "accuracy"
    ui.set_url_param("metric", metric, "accuracy")
    ui.figure(figures.accuracy_bars(groups, metric), f"medlens-{metric}", key="overview_chart")

    st.subheader("Which generator fools which model")
    st.caption("Accuracy per source: on synthetic sources it is the share detected as synthetic.")
    breakdown = queries.overview(ctx.root, ctx.signature, ctx.filters, ("model", "modality", "truth", "source"))
    ui.figure(figures.source_heatmap(breakdown), "medlens-by-source", key="overview_source_chart")
    ui.table(pd.DataFrame(breakdown, columns=list(BREAKDOWN_COLUMNS)), "medlens-by-source",
             key="overview_source_table", column_config=CONFIG)


if __name__ == "__main__":
    render()
