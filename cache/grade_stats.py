"""Summaries of interpretation grades (issue 12, part 2) for the quality page, methods and report.

Counting. The latest grade of a grader for an interpretation is the one that counts
(``current_grades``). Per model and modality, a scale's mean is the mean over images of each
image's mean grade (all graders, prompts and repeats of that model on that image), with a 95% t
interval over images, clipped to 1-5: images, not grades, are the independent units (several
graders and repeats grade one image). Agreement between graders on the interpretations graded by
more than one: Cohen's quadratic-weighted kappa for two graders, Krippendorff's alpha (ordinal) for
three or more (cache.agreement).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy.stats import t as student_t

from cache.agreement import krippendorff_alpha, weighted_kappa
from cache.filters import Filters
from cache.grades import CURRENT_GRADES, GRADES, SCALES
from cache.readers import plain

AGREEMENT = {2: "weighted kappa (quadratic)", 3: "Krippendorff's alpha (ordinal)"}


def current_grades(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> pd.DataFrame:
    """The grade that counts per grader and interpretation, with the model, modality, prompt and
    image of the answer graded (current answers matching ``filters``; outcome ignored)."""
    where, params = (filters or Filters()).where("r")
    return con.execute(
        f"""
        SELECT g.grade_id, g.key, g.grader, g.correctness, g.specificity, g.hallucinated,
               g.hallucination_count, g.session_id, g.created_at, r.model, r.modality, r.prompt_id,
               r.image_sha256
        FROM ({CURRENT_GRADES}) g JOIN results r USING (key) {where}
        ORDER BY r.model, r.modality, g.key, g.grader""",
        params,
    ).df()


def t_interval(
    values: Sequence[float], level: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """(mean, low, high): Student's t interval of the mean; the bounds are None below two values."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return None, None, None
    mean = float(data.mean())
    if data.size < 2:
        return mean, None, None
    half = (
        float(student_t.ppf(0.5 + level / 2, data.size - 1)) * float(data.std(ddof=1)) / math.sqrt(data.size)
    )
    return mean, mean - half, mean + half


def agreement(grades: pd.DataFrame, scale: str) -> dict[str, Any]:
    """Inter-grader agreement on ``scale`` over interpretations (keys): method, value and the number
    of interpretations graded by two or more graders (two graders: by both)."""
    table = grades.pivot_table(index="key", columns="grader", values=scale, aggfunc="last")
    graders = table.shape[1]
    if graders < 2:
        return {"method": None, "value": None, "n_paired": 0}
    if graders == 2:
        both = table.dropna()
        value = weighted_kappa([int(v) for v in both.iloc[:, 0]], [int(v) for v in both.iloc[:, 1]])
        return {"method": AGREEMENT[2], "value": value, "n_paired": len(both)}
    paired = int((table.notna().sum(axis=1) >= 2).sum())
    return {
        "method": AGREEMENT[3],
        "value": krippendorff_alpha(table.T.to_numpy(dtype=float), "ordinal"),
        "n_paired": paired,
    }


def _summary(model: str, modality: str, g: pd.DataFrame) -> dict[str, Any]:
    row: dict[str, Any] = {
        "model": model,
        "modality": modality,
        "n_graders": g["grader"].nunique(),
        "n_grades": len(g),
        "n_interpretations": g["key"].nunique(),
        "n_images": g["image_sha256"].nunique(),
    }
    for scale in SCALES:
        image_means = g.groupby("image_sha256")[scale].mean()
        mean, low, high = t_interval(image_means.to_numpy())
        if low is not None:  # a mean grade lies in 1-5, so does its interval (as AUC's in [0, 1])
            low, high = max(low, float(GRADES[0])), min(high, float(GRADES[-1]))
        found = agreement(g, scale)
        row |= {
            f"{scale}_mean": mean,
            f"{scale}_ci_low": low,
            f"{scale}_ci_high": high,
            f"{scale}_agreement": found["value"],
        }
        row |= {"agreement_method": found["method"], "n_paired": found["n_paired"]}
    row["hallucinated_share"] = float(g["hallucinated"].astype(bool).mean())
    row["mean_hallucinations"] = float(g["hallucination_count"].fillna(0).mean())
    return row


def grade_summary(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Per model and modality: graders, grades, interpretations and images graded; each scale's
    mean with its 95% t interval over images and inter-grader agreement; the share of grades that
    flag a hallucinated finding and the mean count (see the module doc)."""
    grades = current_grades(con, filters)
    return [
        plain(_summary(model, modality, g)) for (model, modality), g in grades.groupby(["model", "modality"])
    ]


def beside_genericness(
    generic: Sequence[dict[str, Any]], summary: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The swap test (cache.readers.genericness_table rows) beside the graders' specificity, per
    model and modality (groups with either)."""
    graded = {(s["model"], s["modality"]): s for s in summary}
    text = {(g["model"], g["modality"]): g for g in generic}
    rows = []
    for model, modality in sorted(set(graded) | set(text)):
        g, s = text.get((model, modality), {}), graded.get((model, modality), {})
        rows.append(
            {
                "model": model,
                "modality": modality,
                "median_similarity": g.get("median_similarity"),
                "near_duplicate_share": g.get("near_duplicate_share"),
                "n_texts": g.get("n_texts"),
                "n_pairs_scored": g.get("n_pairs_scored"),
                "sampled": g.get("sampled"),
                "specificity_mean": s.get("specificity_mean"),
                "specificity_ci_low": s.get("specificity_ci_low"),
                "specificity_ci_high": s.get("specificity_ci_high"),
                "n_grades": s.get("n_grades", 0),
            }
        )
    return rows
