"""Obuchowski-Rockette-Hillis MRMC against published outputs (sources: tests/data/mrmc/README.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from cache.mrmc import jackknife_foms, or_analysis, single_vs_panel
from cache.roc import auc

DATA = Path(__file__).parent / "data" / "mrmc"


def load(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(truth (K,), ratings (T, R, K)) from a long CSV of a fully crossed design."""
    with open(DATA / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    modalities = sorted({r["modality"] for r in rows}, key=int)
    readers = sorted({r["reader"] for r in rows}, key=int)
    cases = sorted({int(r["case"]) for r in rows})
    ratings = np.full((len(modalities), len(readers), len(cases)), np.nan)
    truth = np.zeros(len(cases), bool)
    for r in rows:
        k = cases.index(int(r["case"]))
        ratings[modalities.index(r["modality"]), readers.index(r["reader"]), k] = float(r["rating"])
        truth[k] = r["truth"] == "1"
    assert not np.isnan(ratings).any()
    return truth, ratings


@pytest.fixture(scope="module")
def vandyke():
    truth, ratings = load("vandyke.csv")
    return truth, ratings, or_analysis(truth, ratings, treatments=["1", "2"])


def test_vandyke_shape_and_aucs(vandyke) -> None:
    truth, ratings, result = vandyke
    assert ratings.shape == (2, 5, 114) and truth.sum() == 45
    # OR-DBM MRMC 2.51, "TREATMENT x READER AUC ESTIMATES" (8 decimals)
    iowa = [
        [0.91964573, 0.85877617, 0.90386473, 0.97310789, 0.82979066],
        [0.94782609, 0.90531401, 0.92173913, 0.99935588, 0.92995169],
    ]
    np.testing.assert_allclose(result.foms, iowa, atol=5e-9)
    np.testing.assert_allclose(result.treatment_means, [0.89703704, 0.94083736], atol=5e-9)
    assert result.foms[0, 0] == pytest.approx(auc(truth, ratings[0, 0]), abs=1e-15)


def test_vandyke_rrrc_golden(vandyke) -> None:
    """The issue's golden figures: F = 4.456, ddf = 15.26, p = 0.0517 (RRRC); RJafroc to 10 digits."""
    rrrc = vandyke[2].tests["RRRC"]
    assert round(rrrc.statistic, 3) == 4.456
    assert round(rrrc.ddf, 2) == 15.26
    assert round(rrrc.p, 4) == 0.0517
    assert rrrc.statistic == pytest.approx(4.4563186932, abs=1e-9)
    assert rrrc.ddf == pytest.approx(15.2596745891, abs=1e-9)
    assert rrrc.p == pytest.approx(0.0516656858, abs=1e-9)
    assert rrrc.ndf == 1
    (diff,) = rrrc.differences
    assert diff["comparison"] == "1 - 2"
    assert (round(diff["difference"], 5), round(diff["se"], 5)) == (-0.04380, 0.02075)
    assert (round(diff["ci_low"], 5), round(diff["ci_high"], 5)) == (-0.08796, 0.00036)
    assert round(diff["statistic"], 2) == -2.11
    one, two = rrrc.treatments
    assert (round(one["ci_low"], 8), round(one["ci_high"], 8), round(one["df"], 2)) == (
        0.82522360,
        0.96885048,
        12.74,
    )
    assert (round(two["ci_low"], 8), round(two["ci_high"], 8), round(two["df"], 2)) == (
        0.89413783,
        0.98753689,
        12.71,
    )
    assert (round(one["se"], 8), round(two["se"], 8)) == (0.03317360, 0.02156637)


def test_vandyke_anova_and_variance_components(vandyke) -> None:
    result = vandyke[2]
    assert (round(result.ms_t, 8), round(result.ms_r, 8), round(result.ms_tr, 8)) == (
        0.00479617,
        0.00383620,
        0.00055103,
    )
    c = result.components
    got = {k: round(c[k], 8) for k in ("var_r", "var_tr", "cov1", "cov2", "cov3", "var")}
    assert got == {
        "var_r": 0.00153500,
        "var_tr": 0.00020040,
        "cov1": 0.00034661,
        "cov2": 0.00034407,
        "cov3": 0.00023903,
        "var": 0.00080229,
    }


def test_vandyke_fixed_readers_and_fixed_cases(vandyke) -> None:
    frrc, rrfc = vandyke[2].tests["FRRC"], vandyke[2].tests["RRFC"]
    # Iowa: X2 5.47595, p .0193; RJafroc: 5.4759532425, p 0.0192798431
    assert frrc.statistic == pytest.approx(5.4759532425, abs=1e-9) and round(frrc.statistic, 5) == 5.47595
    assert frrc.p == pytest.approx(0.0192798431, abs=1e-9) and frrc.ddf is None
    assert round(frrc.differences[0]["se"], 5) == 0.01872
    assert (round(frrc.differences[0]["ci_low"], 5), round(frrc.differences[0]["ci_high"], 5)) == (
        -0.08049,
        -0.00711,
    )
    one, two = frrc.treatments
    assert (round(one["se"], 8), round(two["se"], 8)) == (0.02428971, 0.01677632)
    assert (round(one["ci_low"], 8), round(two["ci_high"], 8)) == (0.84943008, 0.97371835)
    # Iowa: F 8.70 on (1, 4), p .0420, SE 0.01485; RJafroc: F 8.704, p 0.0419587525
    assert rrfc.statistic == pytest.approx(8.704, abs=1e-9) and rrfc.ddf == 4
    assert rrfc.p == pytest.approx(0.0419587525, abs=1e-9)
    assert round(rrfc.differences[0]["se"], 5) == 0.01485
    assert (round(rrfc.differences[0]["ci_low"], 5), round(rrfc.differences[0]["ci_high"], 5)) == (
        -0.08502,
        -0.00258,
    )
    assert (round(rrfc.treatments[0]["se"], 8), round(rrfc.treatments[1]["se"], 8)) == (
        0.02482994,
        0.01615303,
    )


def test_cad_against_radiologists_matches_rjafroc() -> None:
    """RJafroc StCadVsRad(datasetCadLroc, "Wilcoxon", "1T-RRRC" / "1T-RRFC") on the NICO data; RJafroc
    reports radiologists - CAD, we report model (CAD) - panel: same magnitudes, opposite signs."""
    truth, ratings = load("nico_cad.csv")
    cad, radiologists = ratings[0, 0], ratings[0, 1:]
    result = single_vs_panel(truth, cad, radiologists)
    assert round(result.model_fom, 8) == 0.81692708
    assert round(result.panel_mean, 8) == 0.84866319
    assert round(result.difference, 8) == -0.03173611
    np.testing.assert_allclose(
        result.panel_foms,
        [
            0.8415625,
            0.84119792,
            0.89973958,
            0.838125,
            0.85635417,
            0.87869792,
            0.85838542,
            0.79703125,
            0.826875,
        ],
        atol=5e-9,
    )
    assert (round(result.var, 8), round(result.cov2, 8), round(result.ms_r, 8)) == (
        0.00139955,
        0.00092417,
        0.00087779,
    )
    rrrc = result.tests["RRRC"]
    assert rrrc["statistic"] == pytest.approx(-0.99286888, abs=5e-9)
    assert rrrc["df"] == pytest.approx(877.88637833, abs=5e-8)
    assert rrrc["p"] == pytest.approx(0.32104743, abs=5e-9)
    assert (round(rrrc["ci_low"], 8), round(rrrc["ci_high"], 8)) == (-0.09447099, 0.03099877)
    rrfc = result.tests["RRFC"]
    assert rrfc["statistic"] == pytest.approx(-3.21350501, abs=5e-9) and rrfc["df"] == 8
    assert rrfc["p"] == pytest.approx(0.01235909, abs=5e-9)


def test_single_vs_panel_equals_two_treatment_orh() -> None:
    """Kooi et al. (RJafroc "2T-RRRC"): the model copied into a 'modality' of J identical readers,
    analysed by ORH, gives the same F (= t^2), ddf and p as the single-treatment method."""
    truth, ratings = load("nico_cad.csv")
    cad, radiologists = ratings[0, 0], ratings[0, 1:]
    single = single_vs_panel(truth, cad, radiologists).tests["RRRC"]
    crossed = or_analysis(truth, np.stack([np.tile(cad, (9, 1)), radiologists])).tests["RRRC"]
    assert crossed.statistic == pytest.approx(single["statistic"] ** 2, rel=1e-10)
    assert crossed.ddf == pytest.approx(single["df"], rel=1e-10)
    assert crossed.p == pytest.approx(single["p"], rel=1e-10)


def test_jackknife_auc_equals_refitting_without_each_case() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random(40) < 0.5
    ratings = rng.integers(1, 6, (2, 3, 40)).astype(float)
    foms, jack = jackknife_foms(truth, ratings)
    for k in (0, 7, 39):
        keep = np.arange(40) != k
        assert jack[1, 2, k] == pytest.approx(auc(truth[keep], ratings[1, 2, keep]), abs=1e-12)
    assert foms[0, 1] == pytest.approx(auc(truth, ratings[0, 1]))


def test_accuracy_figure_of_merit() -> None:
    """Accuracy FOM: 1 = correct answer. Reader means and the jackknife are plain proportions."""
    truth = np.array([True, False] * 10)
    correct = np.zeros((2, 2, 20))
    correct[0, 0, :15] = 1  # 15/20
    correct[0, 1, :12] = 1  # 12/20
    correct[1, 0, :18] = 1
    correct[1, 1, :17] = 1
    result = or_analysis(truth, correct, fom="accuracy")
    np.testing.assert_allclose(result.foms, [[0.75, 0.6], [0.9, 0.85]])
    foms, jack = jackknife_foms(truth, correct, "accuracy")
    assert jack[0, 0, 0] == pytest.approx(14 / 19) and jack[0, 0, 19] == pytest.approx(15 / 19)
    assert result.tests["RRRC"].differences[0]["difference"] == pytest.approx(0.675 - 0.875)


def test_design_errors() -> None:
    truth = np.array([True, True, False, False])
    with pytest.raises(ValueError, match="2 treatments"):
        or_analysis(truth, np.ones((1, 3, 4)))
    with pytest.raises(ValueError, match="two synthetic and two real"):
        jackknife_foms(np.array([True, False, False]), np.ones((2, 2, 3)))
    with pytest.raises(ValueError, match="at least two readers"):
        single_vs_panel(truth, np.arange(4.0), np.arange(4.0)[None])
