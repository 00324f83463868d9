"""Interpretation quality: answer length, naming of modality-specific findings, and hedging."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import figures, queries, ui, vocab
from dashboard import filters as qf
from dashboard.context import get_context

COLUMNS = ("model", "modality", "answers", "with_text", "mean_chars", "median_chars",
           "names_finding", "finding_share", "hedged", "hedge_share")


def quality_frame(raw: pd.DataFrame) -> pd.DataFrame:
    """Shares over answers with text; finding_share is empty for modalities without a vocabulary."""
    df = raw.copy()
    with_text = df["with_text"].where(df["with_text"] > 0)
    df["finding_share"] = (df["names_finding"] / with_text).where(df["has_vocabulary"].fillna(False))
    df["hedge_share"] = df["hedged"] / with_text
    return df[list(COLUMNS)]


def render() -> None:
    ctx = get_context()
    filters = qf.without(ctx.filters, "outcome")
    st.title("Interpretation quality")
    ui.filters_note(qf.describe(filters), ". The seed study found GPT-4V's interpretations generic. Per model "
                    "and modality: how long the interpretations are, how many name a finding specific to the "
                    "modality (fundus: optic disc, macula, vessels, exudates, haemorrhages...; chest: lung fields, "
                    "costophrenic angles, cardiac silhouette, effusion...), and how many hedge (may, might, "
                    "possibly, cannot determine...). Shares are over answers with an interpretation.")
    raw = queries.quality(ctx.root, ctx.signature, filters, tuple(ctx.options.get("modality", [])))
    if raw.empty:
        st.warning("No answers match the filters.")
        return
    df = quality_frame(raw)
    rate = st.column_config.NumberColumn(format="%.3f")
    ui.table(df, "medlens-interpretation-quality", key="quality_table",
             column_config={"finding_share": rate, "hedge_share": rate,
                            "mean_chars": st.column_config.NumberColumn(format="%.0f")})
    if df["with_text"].sum() > 0:
        ui.figure(figures.quality_bars(df.to_dict("records")), "medlens-interpretation-quality", key="quality_chart")
    else:
        st.info("No chart: none of these answers has an interpretation text.")

    if st.toggle("Count each finding", key="quality_terms", help="One column per finding of the vocabulary."):
        for modality in sorted(df["modality"].unique()):
            terms = queries.finding_terms(ctx.root, ctx.signature, filters, modality)
            if not terms.empty:
                st.caption(f"{ui.literal(modality)}: answers naming each finding")
                ui.table(terms, f"medlens-findings-{modality}", key=f"quality_terms_{modality}")
    with st.expander("What counts as a finding or a hedge"):
        for fam, terms in vocab.FINDINGS.items():
            st.text(f"{fam} ({', '.join(vocab.FAMILY_HINTS[fam])} in the modality name): {', '.join(terms)}")
        st.code(vocab.hedge_pattern(), language=None, wrap_lines=True)


if __name__ == "__main__":
    render()
