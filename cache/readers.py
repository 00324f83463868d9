"""Reader-study and answer-quality tables from a DuckDB connection's ``results`` relation.

Needs the columns ``model, provider, modality, prompt_id, image_sha256, truth, label, confidence,
rating, interpretation, repeat`` (a missing ``rating`` reads as NULL: stores before schema v2).
A human reader is a row with provider ``reader`` (model ``reader:<name>``). A "rater" is a
(model, prompt_id) pair, as on the overview. Tables are plain lists of dicts (JSON-ready: numpy
scalars become floats, infinities and NaN become None).

Conventions (cache.roc, cache.calibration, cache.mrmc say why):
- ROC, calibration and MRMC use one answer per rater and image: the lowest ``repeat`` present.
  Reader metrics use every row, like ``cache.metrics.group_metrics``, so they equal the overview.
- Scores: readers' rating (``cache.roc.rating_scores``); models' confidence turned into
  P(synthetic) (``cache.roc.answer_scores``). A model group with no usable confidence has no ROC
  row and no AUC MRMC row (its scores would all be 0.5): use ``fom="accuracy"``.

The MRMC tables (readers vs readers across conditions; each model vs the panel) are in
cache.readers_mrmc; ``python -m cache readers`` prints them with these (cache.readers_report).
"""

from __future__ import annotations

import math
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from cache.agreement import cohen_kappa, fleiss_kappa_from_labels, krippendorff_alpha
from cache.calibration import calibration_summary
from cache.genericness import MAX_PAIRS, NEAR_DUPLICATE, genericness
from cache.metrics import Filters, finish_group
from cache.roc import answer_scores, auc_interval, rating_scores, roc_curve, thinned, usable_confidence_mask
from cache.schema import ANSWERED_LABELS, READER_PREFIX, READER_PROVIDER

COLUMNS = (
    "model",
    "provider",
    "modality",
    "prompt_id",
    "image_sha256",
    "truth",
    "label",
    "confidence",
    "rating",
    "interpretation",
    "repeat",
)
RATER = ["model", "prompt_id"]
EXCLUDED_TASKS = ("judge", "reader_training")


def plain(value: Any) -> Any:
    """JSON-ready copy: numpy to Python, non-finite floats to None, recursively."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


#: operating points drawn per ROC curve (the AUC and its interval use every answer)
DRAWN_POINTS = 1000
#: what the score tables read (the swap test reads ``interpretation`` too: the texts are most of the bytes)
SCORE_COLUMNS = tuple(c for c in COLUMNS if c != "interpretation")


def load_results(
    con: duckdb.DuckDBPyConnection, filters: Filters | None = None, columns: tuple[str, ...] = COLUMNS
) -> pd.DataFrame:
    """The needed columns of ``results`` (missing ones as NULL), with ``is_reader``, ``correct``
    (label == truth) and ``score`` (rating for readers, P(synthetic) for models)."""
    present = {row[0] for row in con.execute("DESCRIBE results").fetchall()}
    select = ", ".join(c if c in present else f"NULL AS {c}" for c in columns)
    where, params = (filters or Filters()).where()
    if "task" in present:  # the v2 view keeps detect rows only; say it here too for other relations
        where += (" AND " if where else "WHERE ") + f"coalesce(task, 'detect') NOT IN {EXCLUDED_TASKS}"
    frame = con.execute(f"SELECT {select} FROM results {where}", params).df()
    frame["prompt_id"] = frame["prompt_id"].fillna("")
    frame["repeat"] = pd.to_numeric(frame["repeat"]).fillna(0).astype(int)
    frame["confidence"] = pd.to_numeric(frame["confidence"], errors="coerce").astype(float)
    frame["rating"] = pd.to_numeric(frame["rating"], errors="coerce").astype(float)
    frame["is_reader"] = (frame["provider"] == READER_PROVIDER) | frame["model"].str.startswith(READER_PREFIX)
    frame["correct"] = frame["label"] == frame["truth"]
    labels, confidences = frame["label"].to_numpy(object), frame["confidence"].to_numpy(float)
    frame["has_confidence"] = usable_confidence_mask(labels, confidences)
    frame["score"] = np.where(
        frame["is_reader"],
        rating_scores(frame["rating"].to_numpy(float), labels),
        answer_scores(labels, confidences),
    )
    return frame


def results_frame(source: duckdb.DuckDBPyConnection | pd.DataFrame, filters: Filters | None = None) -> pd.DataFrame:
    """What the score tables read: ``source`` itself when it is a frame ``load_results`` made (its
    filters were applied when it was loaded, so ``filters`` is not applied again), else
    ``results`` of the connection ``source`` read now. The dashboard and ``cache readers`` load
    once and pass the frame to every table: each read of ``results`` costs seconds at 10^6 rows."""
    return source if isinstance(source, pd.DataFrame) else load_results(source, filters, SCORE_COLUMNS)


def first_answers(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per rater and image: the lowest repeat."""
    return frame.sort_values("repeat", kind="stable").drop_duplicates([*RATER, "modality", "image_sha256"])


def reader_metrics(con: duckdb.DuckDBPyConnection | pd.DataFrame, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Per reader, modality and prompt: n, accuracy, sensitivity, specificity with 95% Wilson
    intervals (cache.metrics.finish_group: the overview's definitions)."""
    frame = results_frame(con, filters)
    rows = []
    for (model, modality, prompt), g in frame[frame["is_reader"]].groupby(["model", "modality", "prompt_id"]):
        synthetic, real = g["truth"] == "synthetic", g["truth"] == "real"
        counts = {
            "model": model,
            "modality": modality,
            "prompt_id": prompt,
            "n": len(g),
            "answered": int(g["label"].isin(ANSWERED_LABELS).sum()),
            "correct": int(g["correct"].sum()),
            "tp": int((synthetic & (g["label"] == "synthetic")).sum()),
            "fn": int((synthetic & (g["label"] == "real")).sum()),
            "fp": int((real & (g["label"] == "synthetic")).sum()),
            "tn": int((real & (g["label"] == "real")).sum()),
            "input_tokens": None,
            "output_tokens": None,
        }
        g_out = finish_group(counts)
        for k in ("input_tokens", "output_tokens", "errors"):
            g_out.pop(k, None)
        rows.append(plain(g_out))
    return rows


def reader_agreement(con: duckdb.DuckDBPyConnection | pd.DataFrame, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Inter-reader agreement per modality and prompt (>= 2 readers): Fleiss' kappa of the labels
    on the images every reader answered, Krippendorff's alpha (nominal labels; ordinal ratings)
    on every image at least two readers answered."""
    frame = first_answers(results_frame(con, filters))
    rows = []
    for (modality, prompt), g in frame[frame["is_reader"]].groupby(["modality", "prompt_id"]):
        labels = g.pivot(index="image_sha256", columns="model", values="label")
        if labels.shape[1] < 2:
            continue
        common = labels.dropna()
        ratings = g.pivot(index="image_sha256", columns="model", values="rating")
        has_ratings = ratings.notna().sum(axis=1).ge(2).any()
        rows.append(
            plain(
                {
                    "modality": modality,
                    "prompt_id": prompt,
                    "n_readers": labels.shape[1],
                    "n_images_common": len(common),
                    "n_images": len(labels),
                    "fleiss_kappa": fleiss_kappa_from_labels(common.values.tolist()) if len(common) else None,
                    "alpha_nominal": krippendorff_alpha(labels.T.values),
                    "alpha_ordinal_rating": krippendorff_alpha(ratings.T.values, "ordinal")
                    if has_ratings
                    else None,
                }
            )
        )
    return rows


def roc_table(
    con: duckdb.DuckDBPyConnection | pd.DataFrame,
    filters: Filters | None = None,
    method: str = "delong",
    with_points: bool = False,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """AUC with a 95% interval per rater and modality (readers by rating, models by confidence);
    ``points`` (fpr, tpr lists, at most ``DRAWN_POINTS`` per curve: cache.roc.thinned) when
    ``with_points``."""
    frame = first_answers(results_frame(con, filters))
    rows = []
    for (model, prompt, modality), g in frame.groupby([*RATER, "modality"]):
        reader = bool(g["is_reader"].iloc[0])
        scored = int(g["rating"].notna().sum() if reader else g["has_confidence"].sum())
        truth = (g["truth"] == "synthetic").to_numpy()
        if (not reader and scored == 0) or truth.sum() < 2 or (~truth).sum() < 2:
            continue
        row = {
            "model": model,
            "prompt_id": prompt,
            "modality": modality,
            "kind": "reader" if reader else "model",
            "score": "rating" if reader else "confidence",
            "n": len(g),
            "n_scored": scored,
        }
        row |= auc_interval(truth, g["score"].to_numpy(), method=method, seed=seed)
        if with_points:
            curve = thinned(roc_curve(truth, g["score"].to_numpy()), DRAWN_POINTS)
            row["points"] = {"fpr": curve.fpr.tolist(), "tpr": curve.tpr.tolist()}
        rows.append(plain(row))
    return rows


def calibration_table(
    con: duckdb.DuckDBPyConnection | pd.DataFrame, filters: Filters | None = None, n_bins: int = 10
) -> list[dict[str, Any]]:
    """Reliability bins and ECE per model, prompt and modality (models with a stated confidence)."""
    frame = first_answers(results_frame(con, filters))
    rows = []
    for (model, prompt, modality), g in frame[~frame["is_reader"]].groupby([*RATER, "modality"]):
        summary = calibration_summary(
            g["label"].tolist(), g["confidence"].tolist(), g["truth"].tolist(), n_bins
        )
        if summary["n"]:
            rows.append(plain({"model": model, "prompt_id": prompt, "modality": modality} | summary))
    return rows


def retest_agreement(con: duckdb.DuckDBPyConnection | pd.DataFrame, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Agreement of a rater with itself across ``--repeats`` K >= 2, on the images with all K:
    Fleiss' kappa over the K labels, Cohen's kappa of the first two repeats, share identical."""
    frame = results_frame(con, filters)
    rows = []
    for (model, prompt, modality), g in frame.groupby([*RATER, "modality"]):
        labels = g.drop_duplicates(["image_sha256", "repeat"]).pivot(
            index="image_sha256", columns="repeat", values="label"
        )
        if labels.shape[1] < 2:
            continue
        complete = labels.dropna().to_numpy(dtype=object)  # numpy: row-wise pandas ops are slow here
        rows.append(
            plain(
                {
                    "model": model,
                    "prompt_id": prompt,
                    "modality": modality,
                    "repeats": labels.shape[1],
                    "n_images": len(complete),
                    "fleiss_kappa": fleiss_kappa_from_labels(complete),
                    "cohen_kappa_first_two": cohen_kappa(
                        list(zip(complete[:, 0], complete[:, 1], strict=True))
                    ),
                    "share_identical": float((complete == complete[:, :1]).all(axis=1).mean())
                    if len(complete)
                    else None,
                }
            )
        )
    return rows


def genericness_table(
    con: duckdb.DuckDBPyConnection,
    filters: Filters | None = None,
    threshold: float = NEAR_DUPLICATE,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Swap-test genericness per model and modality (models only; readers' cues are not
    interpretations). All prompts and repeats of the model pooled; same-image pairs never scored."""
    frame = load_results(con, filters)
    rows = []
    for (model, modality), g in frame[~frame["is_reader"]].groupby(["model", "modality"]):
        texts = [t if isinstance(t, str) else None for t in g["interpretation"]]
        summary = genericness(texts, g["image_sha256"].tolist(), threshold, max_pairs, seed)
        rows.append(plain({"model": model, "modality": modality} | summary))
    return rows
