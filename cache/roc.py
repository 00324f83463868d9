"""Empirical ROC curves and AUC from graded answers, with DeLong and bootstrap intervals.

Positive class: ``synthetic`` (as in cache.metrics). A higher score means "more likely synthetic".

Scores (``answer_score``, ``rating_score``):
- a model's stated confidence from the ``json`` prompt, read as its confidence in its own label:
  score = confidence for ``synthetic``, 1 - confidence for ``real``, 0.5 for an abstention
  (uncertain / refused / unparseable) and for an answer without a usable confidence;
- a reader's 5-point rating (1 = definitely real ... 5 = definitely synthetic) is the score itself.

AUC is the Mann-Whitney probability that a synthetic image scores above a real one, ties counted
1/2 (the trapezoidal area under the empirical ROC curve). Its variance follows DeLong, DeLong &
Clarke-Pearson (1988, Biometrics 44:837-845), computed from mid-ranks as in Sun & Xu (2014, IEEE
Signal Processing Letters 21:1389-1393): O(N log N), no N_pos x N_neg matrix.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata

from cache.metrics import Z95
from cache.schema import ANSWERED_LABELS

ABSTAIN_SCORE = 0.5


def usable_confidence_mask(labels: Sequence[str | None], confidences: Sequence[float | None]) -> np.ndarray:
    """True where an answer is ``real`` or ``synthetic`` with a finite confidence in [0, 1]: the
    rows whose stated confidence means something (here and in cache.calibration)."""
    conf = np.array([np.nan if c is None else c for c in confidences], dtype=float)
    answered = np.isin(np.asarray(labels, dtype=object), ANSWERED_LABELS)
    with np.errstate(invalid="ignore"):
        return answered & np.isfinite(conf) & (conf >= 0.0) & (conf <= 1.0)


def answer_scores(labels: Sequence[str | None], confidences: Sequence[float | None]) -> np.ndarray:
    """Model answers' scores in [0, 1]: confidence that the image is synthetic (see module doc).
    A confidence that is missing, not finite or outside [0, 1] counts as missing (score 0.5)."""
    conf = np.array([np.nan if c is None else c for c in confidences], dtype=float)
    synthetic = np.asarray(labels, dtype=object) == "synthetic"
    score = np.where(synthetic, conf, 1.0 - conf)
    return np.where(usable_confidence_mask(labels, confidences), score, ABSTAIN_SCORE)


def answer_score(label: str | None, confidence: float | None) -> float:
    """``answer_scores`` of one answer."""
    return float(answer_scores([label], [confidence])[0])


def rating_scores(ratings: Sequence[float | None], labels: Sequence[str | None]) -> np.ndarray:
    """Readers' scores: the 1-5 rating. A row without a rating (a store written before ratings
    existed) counts as the extreme rating of its button: ``real`` 1, ``synthetic`` 5, else 3."""
    rating = np.array([np.nan if r is None else r for r in ratings], dtype=float)
    label = np.asarray(labels, dtype=object)
    button = np.where(label == "synthetic", 5.0, np.where(label == "real", 1.0, 3.0))
    return np.where(np.isnan(rating), button, rating)


def rating_score(rating: float | None, label: str | None = None) -> float:
    """``rating_scores`` of one answer."""
    return float(rating_scores([rating], [label])[0])


@dataclass(frozen=True)
class RocCurve:
    """Empirical ROC operating points, from the strictest threshold (0, 0) to the loosest (1, 1).

    ``thresholds[i]`` is the score at or above which an image is called synthetic to reach
    (``fpr[i]``, ``tpr[i]``); the first threshold is +inf (nothing called synthetic)."""

    fpr: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray


def _split(
    truth: Sequence[bool] | np.ndarray, score: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    truth_arr = np.asarray(truth, dtype=bool)
    score_arr = np.asarray(score, dtype=float)
    if truth_arr.shape != score_arr.shape[-1:]:
        raise ValueError(f"truth has {truth_arr.shape} entries, scores {score_arr.shape}")
    if not truth_arr.any() or truth_arr.all():
        raise ValueError("ROC needs at least one synthetic and one real image")
    if not np.isfinite(score_arr).all():
        raise ValueError("scores must be finite")
    return score_arr[..., truth_arr], score_arr[..., ~truth_arr]


def roc_curve(truth: Sequence[bool] | np.ndarray, score: Sequence[float] | np.ndarray) -> RocCurve:
    """Every empirical operating point (one per distinct score; collinear points are kept)."""
    positives, negatives = _split(truth, score)
    thresholds = np.unique(np.concatenate([positives, negatives]))[::-1]
    # count of scores >= each threshold, by binary search over the sorted scores
    tp = positives.size - np.searchsorted(np.sort(positives), thresholds, side="left")
    fp = negatives.size - np.searchsorted(np.sort(negatives), thresholds, side="left")
    return RocCurve(
        fpr=np.concatenate([[0.0], fp / negatives.size]),
        tpr=np.concatenate([[0.0], tp / positives.size]),
        thresholds=np.concatenate([[np.inf], thresholds]),
    )


def thinned(curve: RocCurve, max_points: int) -> RocCurve:
    """At most ``max_points`` of the curve's operating points, evenly spaced along it, the first
    (0, 0) and the last (1, 1) kept: for drawing (a screen shows no more), never for the AUC. A curve
    of a model's free confidences at 10^6 answers has ~10^5 points, too many to send to a browser."""
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    if curve.fpr.size <= max_points:
        return curve
    keep = np.unique(np.linspace(0, curve.fpr.size - 1, max_points).round().astype(int))
    return RocCurve(fpr=curve.fpr[keep], tpr=curve.tpr[keep], thresholds=curve.thresholds[keep])


def structural_components(
    truth: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """DeLong's structural components, for one score vector or a (k, N) array of them.

    Returns ``(auc, v10, v01)``: ``v10[..., i]`` is the share of real images that synthetic image i
    outscores (ties 1/2), ``v01[..., j]`` the share of synthetic images that outscore real image j;
    the AUC is the mean of either. Mid-ranks (Sun & Xu 2014) give both without pairwise comparison."""
    positives, negatives = _split(truth, scores)
    m, n = positives.shape[-1], negatives.shape[-1]
    combined = rankdata(np.concatenate([positives, negatives], axis=-1), axis=-1)
    v10 = (combined[..., :m] - rankdata(positives, axis=-1)) / n
    v01 = 1.0 - (combined[..., m:] - rankdata(negatives, axis=-1)) / m
    return v10.mean(axis=-1), v10, v01


def auc(truth: Sequence[bool] | np.ndarray, score: Sequence[float] | np.ndarray) -> float:
    """Area under the empirical ROC curve (Mann-Whitney, ties 1/2)."""
    return float(structural_components(truth, score)[0])


def delong_covariance(
    truth: Sequence[bool] | np.ndarray, scores: Sequence[Sequence[float]] | np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """AUCs of k score vectors on the same images and DeLong's k x k covariance matrix of them:
    S10 / m + S01 / n, S10 and S01 the sample covariances (divisor m-1, n-1) of the components."""
    aucs, v10, v01 = structural_components(truth, np.atleast_2d(np.asarray(scores, dtype=float)))
    m, n = v10.shape[-1], v01.shape[-1]
    if m < 2 or n < 2:
        raise ValueError("DeLong's variance needs at least two synthetic and two real images")
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def auc_interval(
    truth: Sequence[bool] | np.ndarray,
    score: Sequence[float] | np.ndarray,
    method: str = "delong",
    level: float = 0.95,
    n_boot: int = 2000,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """AUC with a two-sided interval: ``delong`` (AUC +- z * SE, clipped to [0, 1]) or ``bootstrap``
    (percentile interval over ``n_boot`` resamples of the images, stratified by truth so every
    resample keeps both classes; ``seed`` makes it repeatable). Keys: auc, se, ci_low, ci_high,
    n_synthetic, n_real, method."""
    truth_arr = np.asarray(truth, dtype=bool)
    score_arr = np.asarray(score, dtype=float)
    value, cov = delong_covariance(truth_arr, score_arr)
    se = math.sqrt(max(float(cov[0, 0]), 0.0))
    if method == "delong":
        z = Z95 if level == 0.95 else float(norm.ppf(0.5 + level / 2))
        low, high = float(value[0]) - z * se, float(value[0]) + z * se
    elif method == "bootstrap":
        boots = bootstrap_aucs(truth_arr, score_arr, n_boot=n_boot, seed=seed)
        low, high = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
        se = float(np.std(boots, ddof=1))
    else:
        raise ValueError(f"unknown interval method {method!r} (delong | bootstrap)")
    return {
        "auc": float(value[0]),
        "se": se,
        "ci_low": max(0.0, float(low)),
        "ci_high": min(1.0, float(high)),
        "n_synthetic": int(truth_arr.sum()),
        "n_real": int((~truth_arr).sum()),
        "method": method,
    }


def bootstrap_aucs(
    truth: np.ndarray, score: np.ndarray, n_boot: int = 2000, seed: int = 0, chunk: int = 200
) -> np.ndarray:
    """AUCs of ``n_boot`` stratified case resamples (drawn in chunks: memory chunk x N)."""
    positives, negatives = _split(truth, score)
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        pos = positives[rng.integers(0, positives.size, (size, positives.size))]
        neg = negatives[rng.integers(0, negatives.size, (size, negatives.size))]
        labels = np.concatenate([np.ones(positives.size, bool), np.zeros(negatives.size, bool)])
        out.append(structural_components(labels, np.concatenate([pos, neg], axis=1))[0])
    return np.concatenate(out)


def compare_aucs(
    truth: Sequence[bool] | np.ndarray, score_a: Sequence[float], score_b: Sequence[float]
) -> dict[str, float]:
    """DeLong's paired test of two AUCs on the same images: difference a - b, its SE, z, p."""
    aucs, cov = delong_covariance(truth, np.vstack([score_a, score_b]))
    diff = float(aucs[0] - aucs[1])
    var = float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    se = math.sqrt(max(var, 0.0))
    z = diff / se if se > 0 else (0.0 if diff == 0 else math.copysign(math.inf, diff))
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "difference": diff,
        "se": se,
        "z": z,
        "p": float(2 * norm.sf(abs(z))),
    }
