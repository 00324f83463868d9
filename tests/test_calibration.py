"""Reliability bins and ECE on constructed cases computed by hand."""

from __future__ import annotations

import pytest

from cache.calibration import (
    bin_index,
    calibration_summary,
    expected_calibration_error,
    reliability_bins,
)


def test_one_bin_overconfident() -> None:
    # four answers at 0.95, three right: |0.75 - 0.95| = 0.20, all in the last bin
    assert expected_calibration_error([0.95] * 4, [True, True, True, False]) == pytest.approx(0.20)


def test_three_bins_by_hand() -> None:
    # bin [0.5, 0.6): 0.55, 0.55, one right      -> |0.50 - 0.55| = 0.05, weight 2/8
    # bin [0.8, 0.9): 0.8 x 4, three right        -> |0.75 - 0.80| = 0.05, weight 4/8
    # bin [0.9, 1.0]: 1.0 x 2, both right         -> 0,                  weight 2/8
    # ECE = 0.25 * 0.05 + 0.5 * 0.05 = 0.0375
    conf = [0.55, 0.55, 0.8, 0.8, 0.8, 0.8, 1.0, 1.0]
    hit = [True, False, True, True, True, False, True, True]
    assert expected_calibration_error(conf, hit) == pytest.approx(0.0375)
    bins = reliability_bins(conf, hit)
    assert [b["count"] for b in bins] == [0, 0, 0, 0, 0, 2, 0, 0, 4, 2]
    assert bins[8] == {
        "bin": 8,
        "low": 0.8,
        "high": 0.9,
        "count": 4,
        "mean_confidence": 0.8,
        "accuracy": 0.75,
    }
    assert bins[0]["accuracy"] is None and bins[0]["mean_confidence"] is None
    # five bins: [0.4, 0.6) holds 0.55; [0.8, 1.0] holds 0.8 and 1.0 (6 rows, 5 right, mean 13/15)
    five = 2 / 8 * 0.05 + 6 / 8 * abs(5 / 6 - (0.8 * 4 + 2.0) / 6)
    assert expected_calibration_error(conf, hit, n_bins=5) == pytest.approx(five)


def test_bin_edges() -> None:
    assert list(bin_index([0.0, 0.1, 0.3, 0.7, 0.0999, 0.95, 1.0], 10)) == [0, 1, 3, 7, 0, 9, 9]
    assert list(bin_index([0.5, 0.49], 2)) == [1, 0]


def test_perfectly_calibrated_is_zero() -> None:
    conf = [0.6] * 5 + [0.9] * 10
    hit = [True, True, True, False, False] + [True] * 9 + [False]
    assert expected_calibration_error(conf, hit) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error([], []) is None


def test_summary_uses_the_confidence_in_the_own_label() -> None:
    labels = ["synthetic", "real", "real", "uncertain", "synthetic", "refused"]
    confidences = [0.9, 0.7, None, 0.8, 1.5, None]
    truths = ["synthetic", "synthetic", "real", "real", "synthetic", "real"]
    summary = calibration_summary(labels, confidences, truths)
    # used: (0.9, right), (0.7, wrong "real" on a synthetic image); left out: no confidence,
    # an abstention, a confidence outside [0, 1], a refusal
    assert (summary["n"], summary["n_excluded"]) == (2, 4)
    assert summary["mean_confidence"] == pytest.approx(0.8)
    assert summary["accuracy"] == 0.5
    assert summary["overconfidence"] == pytest.approx(0.3)
    # bins 7 (0.7, wrong: gap 0.7) and 9 (0.9, right: gap 0.1): ECE = (0.7 + 0.1) / 2
    assert summary["ece"] == pytest.approx(0.4)
    empty = calibration_summary(["uncertain"], [0.5], ["real"])
    assert (empty["n"], empty["ece"], empty["overconfidence"]) == (0, None, None)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        reliability_bins([0.5], [True], n_bins=0)
    with pytest.raises(ValueError, match="same length"):
        reliability_bins([0.5, 0.6], [True])
