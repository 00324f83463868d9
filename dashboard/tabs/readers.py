"""Readers & ROC: the statistics of graded answers, for readers and models side by side (issue 12.4).

One page, because a researcher asks one question here: how do the models compare with the people
who read the same images? Per-reader accuracy with Wilson intervals and inter-reader agreement;
ROC curves and AUC for readers (5-point rating) and models (stated confidence); calibration of the
models' confidence; test-retest agreement across ``--repeats``; and the MRMC tables
(Obuchowski-Rockette-Hillis: readers across conditions, each model against the reader panel). Every
number comes from cache.readers / cache.readers_mrmc, as ``python -m cache readers`` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import exports, queries, study_figures, ui
from dashboard import filters as qf
from dashboard.context import get_context

RATE = st.column_config.NumberColumn(format="%.3f")
P_VALUE = st.column_config.NumberColumn(format="%.4f")
READER_COLUMNS = (
    "model",
    "modality",
    "prompt_id",
    "n",
    "accuracy_ci",
    "sensitivity_ci",
    "specificity_ci",
    "accuracy",
    "accuracy_ci_low",
    "accuracy_ci_high",
    "sensitivity",
    "sensitivity_ci_low",
    "sensitivity_ci_high",
    "specificity",
    "specificity_ci_low",
    "specificity_ci_high",
    "answered",
    "correct",
    "tp",
    "fn",
    "fp",
    "tn",
)
ROC_COLUMNS = (
    "model",
    "prompt_id",
    "modality",
    "kind",
    "score",
    "n",
    "n_scored",
    "n_synthetic",
    "n_real",
    "auc",
    "ci_low",
    "ci_high",
    "se",
    "method",
)
CALIBRATION_COLUMNS = (
    "model",
    "prompt_id",
    "modality",
    "n",
    "n_excluded",
    "mean_confidence",
    "accuracy",
    "overconfidence",
    "ece",
    "n_bins",
)


def frame(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> pd.DataFrame:
    df = pd.DataFrame(list(rows))
    return df if columns is None else df.reindex(columns=list(columns))


def reader_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Per-reader metrics with 'value [low, high]' text columns beside the numbers."""
    shown = [
        r
        | {
            f"{m}_ci": exports.fmt_interval(r[m], r[f"{m}_ci_low"], r[f"{m}_ci_high"])
            for m in ("accuracy", "sensitivity", "specificity")
        }
        for r in rows
    ]
    return frame(shown, READER_COLUMNS)


def mrmc_conditions_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Readers across conditions: one line per modality, figure of merit, analysis and comparison."""
    out = []
    for r in rows:
        foms = " · ".join(f"{c} {m:.3f}" for c, m in zip(r["conditions"], r["treatment_means"], strict=True))
        for analysis, test in r["tests"].items():
            for diff in test["differences"]:
                out.append(
                    {
                        "modality": r["modality"],
                        "fom": r["fom"],
                        "analysis": analysis,
                        "readers": len(r["readers"]),
                        "cases": r["n_cases"],
                        "condition_foms": foms,
                        "comparison": diff["comparison"],
                        "difference": diff["difference"],
                        "ci_low": diff["ci_low"],
                        "ci_high": diff["ci_high"],
                        "F_or_chi2": test["statistic"],
                        "ndf": test["ndf"],
                        "ddf": test["ddf"],
                        "p": test["p"],
                    }
                )
    return pd.DataFrame(out)


def mrmc_panel_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Each model against the reader panel: one line per comparison and analysis."""
    out = []
    for r in rows:
        for analysis, test in r["tests"].items():
            out.append(
                {
                    "model": r["model"],
                    "prompt_id": r["prompt_id"],
                    "modality": r["modality"],
                    "panel_prompt_id": r["panel_prompt_id"],
                    "readers": len(r["readers"]),
                    "fom": r["fom"],
                    "analysis": analysis,
                    "cases": r["n_cases"],
                    "model_fom": r["model_fom"],
                    "panel_mean": r["panel_mean"],
                    "difference": r["difference"],
                    "ci_low": test["ci_low"],
                    "ci_high": test["ci_high"],
                    "t": test["statistic"],
                    "df": test["df"],
                    "p": test["p"],
                }
            )
    return pd.DataFrame(out)


def _section(title: str, caption: str) -> None:
    st.subheader(title)
    st.caption(caption)


def _readers(stats: dict[str, list[dict[str, Any]]]) -> None:
    _section(
        "Readers",
        "Accuracy counts an abstention as wrong; sensitivity (synthetic = positive) and "
        "specificity are over answered images; 95% Wilson intervals. Readers are rows of provider reader.",
    )
    if not stats["readers"]:
        st.info("No reader answers match the filters: a reader study adds them (the Reader page).")
        return
    ui.table(reader_frame(stats["readers"]), "medlens-readers", key="readers_table")
    st.markdown(
        "**Agreement between readers** (Fleiss' kappa on the images every reader answered; "
        "Krippendorff's alpha on every image two or more answered: nominal labels, ordinal ratings)"
    )
    if stats["agreement"]:
        ui.table(
            frame(stats["agreement"]),
            "medlens-reader-agreement",
            key="readers_agreement",
            column_config={c: RATE for c in ("fleiss_kappa", "alpha_nominal", "alpha_ordinal_rating")},
        )
    else:
        st.info("Agreement needs two or more readers on the same images.")


def _roc(stats: dict[str, list[dict[str, Any]]]) -> None:
    _section(
        "ROC and AUC",
        "Scores: a reader's 5-point rating; a model's stated confidence as P(synthetic) "
        "(confidence for 'synthetic', 1 - confidence for 'real', 0.5 for abstentions). One answer per rater "
        "and image (the first repeat). AUC with a 95% DeLong interval. Models without any stated "
        "confidence (e.g. a prompt without the json answer) have no curve.",
    )
    rows = stats["roc"]
    if not rows:
        st.info("No ROC curve: no rater has graded scores on both synthetic and real images (two of each).")
        return
    ui.table(
        frame(rows, ROC_COLUMNS),
        "medlens-roc-auc",
        key="readers_roc_table",
        column_config={c: RATE for c in ("auc", "ci_low", "ci_high", "se")},
    )
    for modality in sorted({r["modality"] for r in rows}):
        ui.figure(
            study_figures.roc_curves(rows, modality), f"medlens-roc-{modality}", key=f"readers_roc_{modality}"
        )


def _calibration(stats: dict[str, list[dict[str, Any]]]) -> None:
    _section(
        "Calibration of stated confidence",
        "Top-label calibration: the confidence a model states in its "
        "own label against how often that label is right; 10 equal-width bins; ECE = sum of bin share x "
        "|accuracy - mean confidence|. Answered rows with a confidence in [0, 1] only (n_excluded: the rest).",
    )
    rows = stats["calibration"]
    if not rows:
        st.info("No reliability diagram: no model answer with a stated confidence matches the filters.")
        return
    ui.table(
        frame(rows, CALIBRATION_COLUMNS),
        "medlens-calibration",
        key="readers_calibration_table",
        column_config={c: RATE for c in ("mean_confidence", "accuracy", "overconfidence", "ece")},
    )
    for modality in sorted({r["modality"] for r in rows}):
        ui.figure(
            study_figures.reliability_diagram(rows, modality),
            f"medlens-reliability-{modality}",
            key=f"readers_reliability_{modality}",
        )


def _retest(stats: dict[str, list[dict[str, Any]]]) -> None:
    _section(
        "Test-retest agreement (--repeats)",
        "A rater against itself across K repeats of the same images: "
        "Fleiss' kappa over the K labels, Cohen's kappa of the first two repeats, share with identical labels.",
    )
    if stats["retest"]:
        ui.table(
            frame(stats["retest"]),
            "medlens-test-retest",
            key="readers_retest",
            column_config={c: RATE for c in ("fleiss_kappa", "cohen_kappa_first_two", "share_identical")},
        )
    else:
        st.info("No repeats: run an ingest with --repeats 2 or more to measure test-retest agreement.")


def _mrmc(stats: dict[str, list[dict[str, Any]]]) -> None:
    _section(
        "Multi-reader multi-case (Obuchowski-Rockette-Hillis)",
        "Random readers and random cases (RRRC, "
        "Hillis's ddf), fixed readers (FRRC) and fixed cases (RRFC); figures of merit AUC and accuracy; the "
        "images every reader (and the model) answered under every condition, one answer each.",
    )
    conditions = mrmc_conditions_frame(stats["readers_across_conditions"])
    st.markdown("**Readers across conditions** (prompts as conditions)")
    if conditions.empty:
        st.info("Needs two or more conditions read by two or more readers on the same images.")
    else:
        ui.table(
            conditions,
            "medlens-mrmc-readers",
            key="readers_mrmc_conditions",
            column_config={c: RATE for c in ("difference", "ci_low", "ci_high", "F_or_chi2", "ddf")}
            | {"p": P_VALUE},
        )
    panel = mrmc_panel_frame(stats["model_vs_panel"])
    st.markdown(
        "**Each model against the reader panel** (Hillis 2007, sec. 5.3; difference = model - panel mean)"
    )
    if panel.empty:
        st.info(
            "Needs a model and two or more readers on the same images, with both synthetic and real images."
        )
    else:
        ui.table(
            panel,
            "medlens-mrmc-model-vs-panel",
            key="readers_mrmc_panel",
            column_config={
                c: RATE for c in ("model_fom", "panel_mean", "difference", "ci_low", "ci_high", "t", "df")
            }
            | {"p": P_VALUE},
        )


def render() -> None:
    ctx = get_context()
    filters = qf.without(ctx.filters, "outcome")
    st.title("Readers & ROC")
    ui.filters_note(
        qf.describe(filters),
        ". Readers and models on the same images: the tables of "
        "`python -m cache readers`, with ROC curves, calibration and test-retest agreement.",
    )
    # keyed on what `results` reads (answers and readings): a new grade does not redo these tables
    signature = "|".join(queries.parts_signature(ctx.root, table) for table in ("responses", "readings"))
    stats = queries.reader_statistics(ctx.root, signature, filters)
    if not stats:
        st.warning("No answers match the filters.")
        return
    _readers(stats)
    _roc(stats)
    _calibration(stats)
    _retest(stats)
    _mrmc(stats)


if __name__ == "__main__":
    render()
