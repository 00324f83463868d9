"""Agreement statistics against statsmodels and published worked examples."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.inter_rater import aggregate_raters, cohens_kappa
from statsmodels.stats.inter_rater import fleiss_kappa as sm_fleiss_kappa

from cache.agreement import (
    cohen_kappa,
    fleiss_kappa,
    fleiss_kappa_from_labels,
    krippendorff_alpha,
    weighted_kappa,
)

N = None
#: Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", Annenberg School for
#: Communication, University of Pennsylvania, https://repository.upenn.edu/asc_papers/43, section
#: C-F: 4 observers (rows) x 12 units, missing data. Published: nominal .743, ordinal .815,
#: interval .849, ratio .797.
KRIPPENDORFF_2011 = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, N, N, N],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, N, 3],
    [N, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, N],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, N],
]
#: The 3 coders x 15 units example of Wikipedia's "Krippendorff's alpha" (section "A computational
#: example"; also the test data of the PyPI `krippendorff` package): nominal 0.691, interval 0.811.
WIKIPEDIA_3x15 = [
    [N, N, N, N, N, 3, 4, 1, 2, 1, 1, 3, 3, N, 3],
    [1, N, 2, 1, 3, 3, 4, 3, N, N, N, N, N, N, N],
    [N, N, 2, 1, 3, 4, 4, N, 2, 1, 1, 3, 3, N, 4],
]


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)]
)
def test_krippendorff_2011_worked_example(level: str, published: float) -> None:
    assert round(krippendorff_alpha(KRIPPENDORFF_2011, level), 3) == published


def test_krippendorff_wikipedia_example_and_nan_as_missing() -> None:
    assert round(krippendorff_alpha(WIKIPEDIA_3x15, "nominal"), 3) == 0.691
    assert round(krippendorff_alpha(WIKIPEDIA_3x15, "interval"), 3) == 0.811
    as_nan = np.array([[np.nan if v is None else v for v in row] for row in WIKIPEDIA_3x15])
    assert krippendorff_alpha(as_nan, "nominal") == krippendorff_alpha(WIKIPEDIA_3x15, "nominal")


def test_krippendorff_edges() -> None:
    assert krippendorff_alpha([[1, 2, 3], [1, 2, 3]], "interval") == 1.0
    assert krippendorff_alpha([[1, N], [N, 2]]) is None  # nothing pairable
    assert krippendorff_alpha([[2, 2], [2, 2]]) is None  # no expected disagreement
    # two coders, nominal, no missing values: alpha = 1 - (n - 1) D_o / D_e by hand
    # values a,a / a,b / b,b: o_aa = 2, o_ab = o_ba = 1, o_bb = 2; n = 6, n_a = n_b = 3
    # alpha = 1 - (6 - 1) * 2 / (3 * 3 * 2) = 4/9
    assert krippendorff_alpha([["a", "a", "b"], ["a", "b", "b"]]) == pytest.approx(4 / 9)
    with pytest.raises(ValueError, match="level of measurement"):
        krippendorff_alpha(KRIPPENDORFF_2011, "circular")


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("wt", ["quadratic", "linear"])
def test_weighted_kappa_matches_statsmodels(seed: int, wt: str) -> None:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 6, 80)
    b = np.clip(a + rng.integers(-1, 2, 80), 1, 5)
    table = np.zeros((5, 5))
    np.add.at(table, (a - 1, b - 1), 1)
    expected = cohens_kappa(table, wt=wt).kappa
    assert weighted_kappa(list(a), list(b), weights=wt) == pytest.approx(expected, abs=1e-12)


def test_weighted_kappa_unused_category_and_edges() -> None:
    # grades use only 1-4; the 5 still belongs to the scale (statsmodels, on the full 5x5 table)
    a, b = [1, 2, 3, 4, 4, 2], [1, 3, 3, 4, 3, 2]
    table = np.zeros((5, 5))
    np.add.at(table, (np.array(a) - 1, np.array(b) - 1), 1)
    assert weighted_kappa(a, b) == pytest.approx(cohens_kappa(table, wt="quadratic").kappa)
    assert weighted_kappa([3, 3], [3, 3]) is None and weighted_kappa([], []) is None
    with pytest.raises(ValueError, match="outside the categories"):
        weighted_kappa([1, 6], [1, 2])


def test_cohen_kappa_is_the_metrics_one_and_matches_statsmodels() -> None:
    rng = np.random.default_rng(9)
    a = rng.choice(["real", "synthetic", "uncertain"], 100)
    b = np.where(rng.random(100) < 0.7, a, rng.choice(["real", "synthetic"], 100))
    cats = ["real", "synthetic", "uncertain"]
    table = np.array([[np.sum((a == x) & (b == y)) for y in cats] for x in cats])
    assert cohen_kappa(list(zip(a, b, strict=True))) == pytest.approx(cohens_kappa(table).kappa)


def test_fleiss_kappa_published_example() -> None:
    """Fleiss (1971) as tabulated in Wikipedia's "Fleiss' kappa" worked example: 10 subjects,
    14 raters, 5 categories; published kappa 0.210."""
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    assert round(fleiss_kappa(table), 3) == 0.210
    assert fleiss_kappa(table) == pytest.approx(sm_fleiss_kappa(np.array(table)), abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
def test_fleiss_kappa_from_labels_matches_statsmodels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, 60)
    raters = np.array([np.where(rng.random(60) < 0.75, truth, 1 - truth) for _ in range(4)]).T
    labels = [["synthetic" if v else "real" for v in row] for row in raters]
    table, _cats = aggregate_raters(raters)
    assert fleiss_kappa_from_labels(labels) == pytest.approx(sm_fleiss_kappa(table), abs=1e-12)


def test_fleiss_kappa_edges() -> None:
    assert fleiss_kappa_from_labels([["real", "real"], ["synthetic", "synthetic"]]) == 1.0
    assert fleiss_kappa_from_labels([["real", "real"], ["real", "real"]]) is None
    assert fleiss_kappa(np.zeros((0, 2))) is None
    with pytest.raises(ValueError, match="same number"):
        fleiss_kappa_from_labels([["real", "real"], ["real"]])
