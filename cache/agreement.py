"""Agreement between graders, readers and repeats of one model.

- Cohen's kappa (two raters, nominal): ``cache.metrics.cohen_kappa`` / ``kappa_from_counts``, the
  one definition used by the compare page; re-exported here.
- Weighted kappa (two raters, ordinal 1-5; Cohen 1968): 1 - sum(w * observed) / sum(w * expected)
  with quadratic weights (i - j)^2 (or linear |i - j|) over a fixed category list, so a category
  nobody used still counts in the weights.
- Fleiss' kappa (Fleiss 1971, Psychol Bull 76:378-382): every subject rated the same number of
  times (readers on the images all of them read; repeats of one model).
- Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"):
  any number of coders, missing values allowed; nominal, ordinal, interval or ratio metric.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from cache.metrics import cohen_kappa, kappa_from_counts

__all__ = [
    "cohen_kappa",
    "kappa_from_counts",
    "weighted_kappa",
    "fleiss_kappa",
    "fleiss_kappa_from_labels",
    "krippendorff_alpha",
    "LEVELS",
]

LEVELS = ("nominal", "ordinal", "interval", "ratio")
RATINGS_1_5 = (1, 2, 3, 4, 5)


def weighted_kappa(
    rater_a: Sequence[Hashable],
    rater_b: Sequence[Hashable],
    categories: Sequence[Hashable] = RATINGS_1_5,
    weights: str = "quadratic",
) -> float | None:
    """Cohen's weighted kappa of two raters' paired ordinal grades; None without pairs or when the
    expected disagreement is 0 (both raters always gave the same single grade)."""
    if len(rater_a) != len(rater_b):
        raise ValueError("weighted kappa needs paired grades (two sequences of one length)")
    index = {c: i for i, c in enumerate(categories)}
    unknown = {v for v in (*rater_a, *rater_b) if v not in index}
    if unknown:
        raise ValueError(f"grades outside the categories {list(categories)}: {sorted(map(str, unknown))}")
    if not rater_a:
        return None
    k = len(categories)
    observed = np.zeros((k, k))
    np.add.at(observed, ([index[v] for v in rater_a], [index[v] for v in rater_b]), 1)
    observed /= observed.sum()
    expected = np.outer(observed.sum(axis=1), observed.sum(axis=0))
    distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))).astype(float)
    if weights == "quadratic":
        distance **= 2
    elif weights != "linear":
        raise ValueError(f"unknown weights {weights!r} (quadratic | linear)")
    disagreement = float((distance * expected).sum())
    if disagreement == 0:
        return None
    return 1.0 - float((distance * observed).sum()) / disagreement


def fleiss_kappa(counts: np.ndarray | Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from a subjects x categories table of how many raters chose each category;
    every subject must have the same number n >= 2 of ratings. None without subjects or when
    chance agreement is 1 (everyone always chose one category)."""
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        return None
    per_subject = table.sum(axis=1)
    n = per_subject[0]
    if n < 2 or not np.all(per_subject == n):
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    p_category = table.sum(axis=0) / table.sum()
    p_subject = ((table * (table - 1)).sum(axis=1)) / (n * (n - 1))
    observed, chance = float(p_subject.mean()), float((p_category**2).sum())
    if chance == 1:
        return None
    return (observed - chance) / (1 - chance)


def fleiss_kappa_from_labels(ratings: Sequence[Sequence[Hashable]] | np.ndarray) -> float | None:
    """Fleiss' kappa from one list of labels per subject (e.g. the K repeats' labels of an image)."""
    if len({len(subject) for subject in ratings}) > 1:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of ratings for every subject")
    if len(ratings) == 0:
        return None
    labels = np.asarray(ratings, dtype=object).astype(str)  # categories compared as text
    _categories, codes = np.unique(labels, return_inverse=True)
    codes = codes.reshape(labels.shape)
    table = np.zeros((labels.shape[0], int(codes.max()) + 1))
    np.add.at(table, (np.repeat(np.arange(labels.shape[0]), labels.shape[1]), codes.ravel()), 1)
    return fleiss_kappa(table)


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def krippendorff_alpha(data: Sequence[Sequence[object]] | np.ndarray, level: str = "nominal") -> float | None:
    """Krippendorff's alpha of a coders x units table (rows = coders, columns = units); a missing
    value is None or NaN. Units with fewer than two values are not pairable and are dropped.
    ``ordinal`` ranks the values present (their order), ``interval``/``ratio`` need numbers.
    None when nothing is pairable or every pairable value is the same (no expected disagreement)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level of measurement {level!r} ({' | '.join(LEVELS)})")
    columns = list(zip(*[list(row) for row in data], strict=True)) if len(data) else []
    units = [[v for v in column if not _is_missing(v)] for column in columns]
    units = [u for u in units if len(u) >= 2]
    if not units:
        return None
    values = sorted({v for u in units for v in u})
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(units), len(values)))
    for row, unit in enumerate(units):
        for v in unit:
            counts[row, index[v]] += 1
    pairable = counts.sum(axis=1)
    # coincidence matrix o_ck = sum_u (n_uc n_uk - [c = k] n_uc) / (m_u - 1)
    weighted = counts / (pairable - 1)[:, None]
    coincidences = weighted.T @ counts - np.diag(weighted.sum(axis=0))
    n_c = coincidences.sum(axis=1)
    delta = _distance(np.asarray(values), n_c, level)
    total = n_c.sum()
    expected = float((np.outer(n_c, n_c) * delta).sum()) / (total - 1)
    if expected == 0:
        return None
    return 1.0 - float((coincidences * delta).sum()) / expected


def _distance(values: np.ndarray, n_c: np.ndarray, level: str) -> np.ndarray:
    """Squared difference delta^2_ck of Krippendorff (2011) for each pair of values."""
    k = len(values)
    if level == "nominal":
        return 1.0 - np.eye(k)
    if level == "ordinal":
        # (sum of n_g for g from c to k) - (n_c + n_k) / 2, squared
        cumulative = np.concatenate([[0.0], np.cumsum(n_c)])
        low, high = np.minimum.outer(np.arange(k), np.arange(k)), np.maximum.outer(np.arange(k), np.arange(k))
        between = cumulative[high + 1] - cumulative[low]
        return (between - (n_c[:, None] + n_c[None, :]) / 2) ** 2
    numbers = values.astype(float)
    diff = np.subtract.outer(numbers, numbers)
    if level == "interval":
        return diff**2
    total = np.add.outer(numbers, numbers)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total == 0, 0.0, (diff / total) ** 2)
