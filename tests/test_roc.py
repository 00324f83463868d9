"""ROC curves and AUC against scikit-learn; DeLong's variance against an independent pairwise
implementation of DeLong, DeLong & Clarke-Pearson (1988) and against RJafroc's DeLong covariances."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from cache.mrmc import variance_components
from cache.roc import (
    answer_score,
    auc,
    auc_interval,
    bootstrap_aucs,
    compare_aucs,
    delong_covariance,
    rating_score,
    roc_curve,
    thinned,
)
from tests.test_mrmc import load


def random_case(seed: int, n: int, tied: bool) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.random(n) < 0.4
    truth[:2], truth[2:4] = True, False
    if tied:  # 5-point ratings: heavy ties, as readers give
        score = np.clip(rng.integers(1, 5, n) + truth * rng.integers(0, 2, n), 1, 5).astype(float)
    else:
        score = rng.normal(size=n) + truth
    return truth, score


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("tied", [False, True])
def test_auc_and_curve_match_sklearn(seed: int, tied: bool) -> None:
    truth, score = random_case(seed, 30 + 40 * seed, tied)
    assert auc(truth, score) == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
    curve = roc_curve(truth, score)
    fpr, tpr, thresholds = sklearn_roc_curve(truth, score, drop_intermediate=False)
    np.testing.assert_allclose(curve.fpr, fpr)
    np.testing.assert_allclose(curve.tpr, tpr)
    np.testing.assert_array_equal(curve.thresholds, thresholds)
    assert np.trapezoid(curve.tpr, curve.fpr) == pytest.approx(auc(truth, score), abs=1e-12)


def test_auc_counts_ties_half() -> None:
    # one synthetic vs two real: beats one, ties one -> (1 + 0.5) / 2
    assert auc([True, False, False], [0.7, 0.5, 0.7]) == 0.75
    assert auc([True, False], [0.5, 0.5]) == 0.5


def pairwise_delong(truth: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) written out: psi(X, Y) = 1, 1/2, 0 over every synthetic x real pair;
    V10 / V01 the row / column means; S = S10 / m + S01 / n with divisors m-1 and n-1."""
    pos, neg = scores[:, truth], scores[:, ~truth]
    psi = (pos[:, :, None] > neg[:, None, :]) + 0.5 * (pos[:, :, None] == neg[:, None, :])
    v10, v01 = psi.mean(axis=2), psi.mean(axis=1)
    m, n = pos.shape[1], neg.shape[1]
    s10 = (v10 - v10.mean(1, keepdims=True)) @ (v10 - v10.mean(1, keepdims=True)).T / (m - 1)
    s01 = (v01 - v01.mean(1, keepdims=True)) @ (v01 - v01.mean(1, keepdims=True)).T / (n - 1)
    return psi.mean(axis=(1, 2)), s10 / m + s01 / n


@pytest.mark.parametrize("seed", range(4))
def test_delong_matches_pairwise_definition(seed: int) -> None:
    truth, _ = random_case(seed, 60, tied=True)
    rng = np.random.default_rng(100 + seed)
    scores = np.vstack([rng.integers(1, 6, 60) + truth * rng.integers(0, 3, 60) for _ in range(3)]).astype(
        float
    )
    aucs, cov = delong_covariance(truth, scores)
    ref_aucs, ref_cov = pairwise_delong(truth, scores)
    np.testing.assert_allclose(aucs, ref_aucs, atol=1e-12)
    np.testing.assert_allclose(cov, ref_cov, atol=1e-14)


def test_delong_or_components_match_rjafroc_on_vandyke() -> None:
    """RJafroc UtilORVarComp(dataset02, "Wilcoxon", covEstMethod = "DeLong"), stored in RJafroc's
    tests/testthat/goodValues361/UtilVarComponents/DeLongDataset02.rds (see tests/data/mrmc/README.md)."""
    truth, ratings = load("vandyke.csv")
    _aucs, cov = delong_covariance(truth, ratings.reshape(10, -1))
    comp = variance_components(cov, 2, 5)
    got = {k: round(v, 10) for k, v in comp.items()}
    assert got == {"var": 0.0007921325, "cov1": 0.0003420090, "cov2": 0.0003395265, "cov3": 0.0002358497}


def test_interval_delong_and_bootstrap() -> None:
    truth, score = random_case(11, 400, tied=False)
    delong = auc_interval(truth, score)
    assert delong["method"] == "delong" and delong["n_synthetic"] + delong["n_real"] == 400
    assert delong["ci_low"] < delong["auc"] < delong["ci_high"]
    assert delong["ci_high"] - delong["ci_low"] == pytest.approx(2 * 1.959963984540054 * delong["se"])
    boot = auc_interval(truth, score, method="bootstrap", n_boot=1000, seed=7)
    assert boot == auc_interval(truth, score, method="bootstrap", n_boot=1000, seed=7)  # seeded
    assert boot["se"] == pytest.approx(delong["se"], rel=0.15)  # two estimates of one SE
    assert boot["ci_low"] < boot["auc"] < boot["ci_high"]
    assert bootstrap_aucs(truth, score, n_boot=450, seed=1, chunk=100).shape == (450,)
    perfect = auc_interval([True, True, False, False], [0.9, 0.8, 0.2, 0.1])
    assert (perfect["auc"], perfect["se"], perfect["ci_high"]) == (1.0, 0.0, 1.0)


def test_compare_aucs_paired() -> None:
    truth, score = random_case(5, 300, tied=False)
    same = compare_aucs(truth, score, score)
    assert (same["difference"], same["p"]) == (0.0, 1.0)
    noise = np.random.default_rng(0).normal(size=300)
    paired = compare_aucs(truth, score, noise)
    aucs, cov = pairwise_delong(truth, np.vstack([score, noise]))
    z = (aucs[0] - aucs[1]) / np.sqrt(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])
    assert paired["z"] == pytest.approx(z, rel=1e-10)
    assert paired["difference"] > 0.15 and paired["p"] < 1e-3


def test_scores_from_answers() -> None:
    assert answer_score("synthetic", 0.8) == 0.8
    assert answer_score("real", 0.8) == pytest.approx(0.2)
    for label in ("uncertain", "refused", "unparseable", None):
        assert answer_score(label, 0.9) == 0.5
    assert answer_score("synthetic", None) == 0.5
    assert answer_score("real", 1.7) == 0.5 and answer_score("real", float("nan")) == 0.5
    assert rating_score(4) == 4.0
    assert (
        rating_score(None, "real"),
        rating_score(None, "synthetic"),
        rating_score(float("nan"), None),
    ) == (1.0, 5.0, 3.0)


def test_one_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one synthetic and one real"):
        auc([True, True], [0.1, 0.2])
    with pytest.raises(ValueError, match="two synthetic and two real"):
        delong_covariance([True, False, False], [0.3, 0.2, 0.1])


def test_thinned_curve_keeps_its_ends_and_shape() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random(200_000) < 0.4
    score = rng.normal(truth * 1.0, 1.0)  # free scores: one operating point per answer
    curve = roc_curve(truth, score)
    drawn = thinned(curve, 1000)
    assert curve.fpr.size > 100_000 and drawn.fpr.size <= 1000
    assert (drawn.fpr[0], drawn.tpr[0], drawn.fpr[-1], drawn.tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(drawn.fpr) >= 0) and np.all(np.diff(drawn.tpr) >= 0)
    # the drawn curve encloses the same area to the third decimal (the AUC itself uses every point)
    assert np.trapezoid(drawn.tpr, drawn.fpr) == pytest.approx(np.trapezoid(curve.tpr, curve.fpr), abs=1e-3)
    assert (
        thinned(roc_curve(truth[:50], score[:50]), 1000).fpr.size
        == roc_curve(truth[:50], score[:50]).fpr.size
    )
