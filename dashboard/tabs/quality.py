"""Interpretation quality: answer length, naming of modality-specific findings, and hedging."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cache import grade_stats
from dashboard import exports, figures, queries, study_figures, ui, vocab
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
    summary = graders_section(ctx.root, filters)
    genericness_section(ctx.root, filters, summary, int(df["with_text"].sum()))


GRADE_COLUMNS = ("model", "modality", "correctness", "specificity", "hallucinated_share", "n_graders", "n_grades",
                 "n_interpretations", "n_images", "agreement_method", "correctness_agreement",
                 "specificity_agreement", "n_paired", "mean_hallucinations", "correctness_mean", "correctness_ci_low",
                 "correctness_ci_high", "specificity_mean", "specificity_ci_low", "specificity_ci_high")
RATE = st.column_config.NumberColumn(format="%.3f")
GENERIC_COLUMNS = ("model", "modality", "median_similarity", "near_duplicate_share", "specificity", "n_grades",
                   "n_texts", "n_pairs_scored", "sampled")


def _with_intervals(rows: list[dict]) -> list[dict]:
    return [r | {s: exports.fmt_interval(r.get(f"{s}_mean"), r.get(f"{s}_ci_low"), r.get(f"{s}_ci_high"), 2)
                 for s in ("correctness", "specificity")} for r in rows]


def graders_section(root: str, filters: qf.Filters) -> list[dict]:
    """Graders' ratings (cache.grades): the table and the figure; returns the summary rows."""
    st.subheader("Graders' ratings")
    st.caption("Blinded grades (the Grade interpretations page): correctness and specificity 1-5, hallucinated "
               "findings. Each mean is over images (an image's grades averaged first), with a 95% t interval over "
               "images, clipped to 1-5. Agreement: quadratic-weighted kappa for two graders, Krippendorff's alpha "
               "(ordinal) for three or more, on the interpretations graded by more than one.")
    summary = queries.grade_summary(root, queries.store_signature(root), filters)
    if summary:
        ui.table(pd.DataFrame(_with_intervals(summary)).reindex(columns=list(GRADE_COLUMNS)), "medlens-grades",
                 key="quality_grades", column_config={c: RATE for c in GRADE_COLUMNS if c.endswith(("_share",
                                                      "_agreement", "_mean", "_low", "_high", "hallucinations"))})
        ui.figure(study_figures.grade_means(summary), "medlens-grades", key="quality_grades_chart")
    else:
        st.info("No grades for these answers yet: grade interpretations on the Grade interpretations page.")
    return summary


def genericness_section(root: str, filters: qf.Filters, summary: list[dict], texts: int) -> None:
    """The TF-IDF swap test (cache.readers.genericness_table) beside the graders' specificity."""
    st.subheader("Generic by text, generic by graders")
    st.caption("Swap test: an interpretation is generic when it would fit another image of the same modality. Per "
               "model and modality, the median TF-IDF cosine similarity between its interpretations of different "
               "images, and the share of near-duplicate pairs (similarity >= 0.9); beside it the graders' mean "
               "specificity. Generic by both: high similarity, low specificity.")
    if texts > queries.SWAP_TEST_AUTO and not st.toggle(
            f"Run the swap test on {texts:,} interpretations", key="quality_swap_test",
            help="It reads every interpretation (about 40 s at a million answers); the result is kept until the "
                 "answers change."):
        return
    # keyed on the responses alone: a new grade does not redo the swap test
    generic = queries.genericness(root, queries.parts_signature(root, "responses"), filters)
    rows = grade_stats.beside_genericness(generic, summary)
    if not rows:
        st.info("No interpretations to compare.")
        return
    ui.table(pd.DataFrame(_with_intervals(rows)).reindex(columns=list(GENERIC_COLUMNS)), "medlens-genericness",
             key="quality_generic", column_config={"median_similarity": RATE, "near_duplicate_share": RATE})
    if any(r["median_similarity"] is not None and r["specificity_mean"] is not None for r in rows):
        ui.figure(study_figures.generic_vs_specific(rows), "medlens-generic-vs-specific", key="quality_generic_chart")
    else:
        st.info("No chart: it needs a model with both a swap-test similarity and graders' specificity.")


if __name__ == "__main__":
    render()
