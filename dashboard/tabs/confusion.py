"""Confusion matrices: one heatmap per model x modality (truth x predicted label), counts and row %."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cache.schema import LABELS, TRUTHS
from dashboard import figures, queries, ui
from dashboard import filters as qf
from dashboard.context import get_context


def long_frame(cms: dict[tuple[str, str], dict[str, dict[str, int]]]) -> pd.DataFrame:
    """One row per (model, modality, truth, predicted) with the count and the row share."""
    rows = []
    for (model, modality), cm in cms.items():
        for truth in TRUTHS:
            total = sum(cm[truth].values())
            for label in LABELS:
                count = cm[truth][label]
                rows.append({"model": model, "modality": modality, "truth": truth, "predicted": label,
                             "count": count, "row_share": count / total if total else None})
    return pd.DataFrame(rows, columns=["model", "modality", "truth", "predicted", "count", "row_share"])


def render() -> None:
    ctx = get_context()
    st.title("Confusion matrices")
    ui.filters_note(qf.describe(ctx.filters), ". Rows: truth; columns: predicted label; each cell shows the "
                    "count and the share of its row. Prompts in the filter are pooled: pick one prompt in the "
                    "sidebar to separate them. Same numbers as `python -m cache metrics --json`.")
    cms = queries.confusion(ctx.root, ctx.signature, ctx.filters)
    if not cms:
        st.warning("No responses match the filters.")
        return
    items = list(cms.items())
    for start in range(0, len(items), 2):
        columns = st.columns(2)
        for column, (index, ((model, modality), cm)) in zip(columns, enumerate(items[start:start + 2], start),
                                                            strict=False):
            with column:
                title = f"{model} · {modality}"
                ui.figure(figures.confusion_heatmap(cm, title), f"confusion-{model}-{modality}",
                          key=f"confusion_chart_{index}")
    st.subheader("All cells")
    ui.table(long_frame(cms), "medlens-confusion", key="confusion_table",
             column_config={"row_share": st.column_config.NumberColumn(format="%.3f")})


if __name__ == "__main__":
    render()
