"""Calibration of stated confidence: reliability-diagram bins and expected calibration error (ECE).

Which confidence: the model's stated confidence in its OWN stated label (the ``confidence`` field
of the ``json`` prompt, in [0, 1]), on answered rows only (label ``real`` or ``synthetic``). The
event it predicts is "my label is right" (label == truth). Abstentions (uncertain / refused /
unparseable) and answers without a usable confidence (missing, not finite, outside [0, 1]) are
left out and counted. This is the top-label calibration of Guo et al. (2017, "On Calibration of
Modern Neural Networks", ICML); it is NOT the ROC score of cache.roc (confidence that the image is
synthetic).

Bins: ``n_bins`` equal-width bins over [0, 1], right-open [k/B, (k+1)/B) except the last, which
includes 1.0. ECE = sum over non-empty bins of (n_bin / N) * |accuracy_bin - mean_confidence_bin|.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from cache.roc import usable_confidence_mask


def usable_confidence(label: str | None, confidence: float | None) -> bool:
    """True when a row enters calibration: an answered label with a confidence in [0, 1]."""
    return bool(usable_confidence_mask([label], [confidence])[0])


def bin_index(confidence: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each confidence. Rounded before the floor so 0.3 * 10 (= 3.0000000000000004) and
    0.7 falls where a person expects, at the lower edge of its bin."""
    scaled = np.floor(np.round(np.asarray(confidence, dtype=float) * n_bins, 9)).astype(int)
    return np.clip(scaled, 0, n_bins - 1)


def reliability_bins(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, n_bins: int = 10
) -> list[dict[str, Any]]:
    """One dict per bin (empty bins too): bin, low, high, count, mean_confidence, accuracy
    (None for an empty bin)."""
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    conf = np.asarray(confidence, dtype=float)
    hit = np.asarray(correct, dtype=float)
    if conf.shape != hit.shape:
        raise ValueError("confidence and correct must have the same length")
    index = bin_index(conf, n_bins)
    count = np.bincount(index, minlength=n_bins)
    conf_sum = np.bincount(index, weights=conf, minlength=n_bins)
    hit_sum = np.bincount(index, weights=hit, minlength=n_bins)
    return [
        {
            "bin": k,
            "low": k / n_bins,
            "high": (k + 1) / n_bins,
            "count": int(count[k]),
            "mean_confidence": float(conf_sum[k] / count[k]) if count[k] else None,
            "accuracy": float(hit_sum[k] / count[k]) if count[k] else None,
        }
        for k in range(n_bins)
    ]


def expected_calibration_error(
    confidence: Sequence[float] | np.ndarray, correct: Sequence[bool] | np.ndarray, n_bins: int = 10
) -> float | None:
    """ECE over equal-width bins; None without rows."""
    bins = reliability_bins(confidence, correct, n_bins)
    total = sum(b["count"] for b in bins)
    if total == 0:
        return None
    return sum(b["count"] / total * abs(b["accuracy"] - b["mean_confidence"]) for b in bins if b["count"])


def calibration_summary(
    labels: Sequence[str | None],
    confidences: Sequence[float | None],
    truths: Sequence[str],
    n_bins: int = 10,
) -> dict[str, Any]:
    """Calibration of one group of answers: n (rows used), n_excluded, mean_confidence, accuracy
    (of the rows used), overconfidence (mean confidence - accuracy), ece, n_bins and bins."""
    if not len(labels) == len(confidences) == len(truths):
        raise ValueError("one label, confidence and truth per answer")
    used = usable_confidence_mask(labels, confidences)
    conf = np.array([np.nan if c is None else c for c in confidences], dtype=float)[used]
    hit = (np.asarray(labels, dtype=object) == np.asarray(truths, dtype=object))[used]
    mean_conf = float(conf.mean()) if used.any() else None
    accuracy = float(hit.mean()) if used.any() else None
    return {
        "n": int(used.sum()),
        "n_excluded": int(len(labels) - used.sum()),
        "mean_confidence": mean_conf,
        "accuracy": accuracy,
        "overconfidence": None if mean_conf is None else mean_conf - accuracy,
        "ece": expected_calibration_error(conf, hit, n_bins),
        "n_bins": n_bins,
        "bins": reliability_bins(conf, hit, n_bins),
    }
