"""MRMC tables from a ``results`` relation: readers vs readers across conditions, and each model
against the reader panel (cache.mrmc does the statistics; cache.readers loads and scores rows).

The design must be fully crossed, so each table keeps only the images every reader (and the
model) answered, under every condition; one answer per rater and image (the lowest repeat).
Figure of merit ``auc`` uses the scores of cache.readers.load_results (rating; P(synthetic) from
stated confidence); ``accuracy`` uses label == truth (an abstention is wrong).
"""

from __future__ import annotations

from typing import Any

import duckdb
import numpy as np
import pandas as pd

from cache.metrics import Filters
from cache.mrmc import or_analysis, single_vs_panel
from cache.readers import first_answers, plain, results_frame

_SEP = "\x1f"  # a rater key joins two strings; the unit separator never occurs in a name


def _key(a: str, b: str) -> str:
    return f"{a}{_SEP}{b}"


def _keys(a: pd.Series, b: pd.Series) -> list[str]:
    return [_key(x, y) for x, y in zip(a, b, strict=True)]


def _unkey(key: str) -> tuple[str, str]:
    a, _sep, b = key.partition(_SEP)
    return a, b


def _crossed(g: pd.DataFrame, raters: list[Any], value: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Images answered by every rater in ``raters`` (keys of column ``_rater``): (images, truth
    (K,) bool, values (len(raters), K)), images sorted by sha256 for a stable order."""
    table = g[g["_rater"].isin(raters)].pivot(index="image_sha256", columns="_rater", values=value).dropna()
    table = table.reindex(columns=raters).dropna().sort_index()
    truth_by_image = g.drop_duplicates("image_sha256").set_index("image_sha256")["truth"]
    truth = (truth_by_image.reindex(table.index) == "synthetic").to_numpy()
    return list(table.index), truth, table.to_numpy(dtype=float).T


def _fom_value(fom: str) -> str:
    if fom not in ("auc", "accuracy"):
        raise ValueError(f"unknown figure of merit {fom!r} (auc | accuracy)")
    return "score" if fom == "auc" else "correct_value"


def _enough(truth: np.ndarray) -> bool:
    return truth.sum() >= 2 and (~truth).sum() >= 2


def mrmc_readers(
    con: duckdb.DuckDBPyConnection | pd.DataFrame,
    filters: Filters | None = None,
    condition: str = "prompt_id",
    fom: str = "auc",
) -> list[dict[str, Any]]:
    """Readers vs readers across conditions (the classic MRMC): per modality, the values of
    ``condition`` (default prompt_id) are the treatments; the readers who answered under every
    condition are the readers; the images all of them answered under all of them are the cases.
    One row per modality with >= 2 conditions and >= 2 such readers: FOMs and the RRRC, FRRC,
    RRFC tests (cache.mrmc.or_analysis)."""
    frame = first_answers(results_frame(con, filters))
    if condition not in frame.columns or condition in ("image_sha256", "truth"):
        raise ValueError(f"condition must be a column of results such as prompt_id, not {condition!r}")
    frame["correct_value"] = frame["correct"].astype(float)
    value = _fom_value(fom)
    rows = []
    for modality, g in frame[frame["is_reader"]].groupby("modality"):
        conditions = sorted(g[condition].astype(str).unique())
        per_reader = g.groupby("model")[condition].nunique()
        readers = sorted(per_reader[per_reader == len(conditions)].index)
        if len(conditions) < 2 or len(readers) < 2:
            continue
        g = g.assign(_rater=_keys(g[condition].astype(str), g["model"]))
        cells = [_key(c, r) for c in conditions for r in readers]
        images, truth, values = _crossed(g, cells, value)
        if not _enough(truth):
            continue
        result = or_analysis(truth, values.reshape(len(conditions), len(readers), -1), fom, conditions)
        rows.append(
            plain(
                {
                    "modality": modality,
                    "fom": fom,
                    "condition": condition,
                    "conditions": conditions,
                    "readers": readers,
                    "n_cases": len(images),
                    "n_synthetic": int(truth.sum()),
                    "n_real": int((~truth).sum()),
                    "foms": result.foms,
                    "treatment_means": result.treatment_means,
                    "components": result.components,
                    "tests": {name: vars(test) for name, test in result.tests.items()},
                }
            )
        )
    return rows


def mrmc_model_vs_panel(
    con: duckdb.DuckDBPyConnection | pd.DataFrame, filters: Filters | None = None, fom: str = "auc"
) -> list[dict[str, Any]]:
    """Each model (and prompt) against the reader panel of its modality (and reader prompt), on
    the images the model and every panel reader answered: cache.mrmc.single_vs_panel, i.e. Hillis
    (2007) sec. 5.3 as RJafroc's StCadVsRad "1T-RRRC" (plus FRRC and RRFC variants). difference =
    model FOM - panel mean FOM."""
    frame = results_frame(con, filters)
    if not frame["is_reader"].any():  # no panel: nothing to compare with (and no pass over every answer)
        return []
    frame = first_answers(frame)
    frame["correct_value"] = frame["correct"].astype(float)
    value = _fom_value(fom)
    rows = []
    for modality, g in frame.groupby("modality"):
        g = g.assign(_rater=_keys(g["model"], g["prompt_id"]))
        panels = g[g["is_reader"]].groupby("prompt_id")["_rater"].unique()
        models = g[~g["is_reader"]]
        if fom == "auc":  # a model without any stated confidence has no graded scores
            models = models[models["has_confidence"]]
        for panel_prompt, panel in panels.items():
            panel = sorted(panel)
            if len(panel) < 2:
                continue
            for model in sorted(models["_rater"].unique()):
                images, truth, values = _crossed(g, [model, *panel], value)
                if not _enough(truth):
                    continue
                result = single_vs_panel(truth, values[0], values[1:], fom)
                rows.append(
                    plain(
                        {
                            "modality": modality,
                            "model": _unkey(model)[0],
                            "prompt_id": _unkey(model)[1],
                            "panel_prompt_id": panel_prompt,
                            "readers": [_unkey(r)[0] for r in panel],
                            "fom": fom,
                            "n_cases": len(images),
                            "n_synthetic": int(truth.sum()),
                            "n_real": int((~truth).sum()),
                            "model_fom": result.model_fom,
                            "panel_foms": result.panel_foms,
                            "panel_mean": result.panel_mean,
                            "difference": result.difference,
                            "var": result.var,
                            "cov2": result.cov2,
                            "tests": result.tests,
                        }
                    )
                )
    return rows
