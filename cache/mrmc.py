"""Multi-reader multi-case (MRMC) analysis: Obuchowski-Rockette with Hillis's degrees of freedom.

Input: ``truth`` (K cases, True = synthetic) and ``ratings`` shaped (T treatments, R readers, K
cases) for a fully crossed design (every reader reads every case under every treatment). Figure
of merit (FOM): ``auc`` (trapezoidal / Wilcoxon, ties 1/2) or ``accuracy`` (then ``ratings`` are
1 for a correct answer, 0 otherwise; an abstention is wrong, as in cache.metrics).

The error covariances Var, Cov1 (same reader, different treatments), Cov2 (same treatment,
different readers) and Cov3 (both different) are estimated by the jackknife over cases, RJafroc's
default (``covEstMethod = "jackknife"``): cov = (K-1)/K * sum_k of products of centred
leave-one-case-out FOMs. The tests are those of Hillis, Obuchowski, Schartz & Berbaum (2005,
Stat Med 24:1579-1607) and Hillis (2007, Stat Med 26:596-619) as printed by OR-DBM MRMC 2.51 and
RJafroc ``St(method = "OR")``:

- RRRC (random readers, random cases): F = MS(T) / [MS(TR) + R max(Cov2 - Cov3, 0)] on
  (T-1, ddf_H) with ddf_H = [MS(TR) + R max(Cov2 - Cov3, 0)]^2 / {MS(TR)^2 / [(T-1)(R-1)]};
- FRRC (fixed readers): X2 = (T-1) MS(T) / [Var - Cov1 + (R-1) max(Cov2 - Cov3, 0)] on T-1 df;
- RRFC (fixed cases): F = MS(T) / MS(TR) on (T-1, (T-1)(R-1)).

One reader against a panel (``single_vs_panel``; a model against the human readers) follows
Hillis (2007) section 5.3 as RJafroc's ``StCadVsRad(method = "1T-RRRC")`` adapts it: the FOM
differences psi_j = theta_j - theta_model of the J panel readers are a single-treatment OR
sample, with Var and Cov2 the jackknife (co)variances of the differences.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import chi2, norm
from scipy.stats import f as f_dist
from scipy.stats import t as t_dist

from cache.roc import structural_components

ANALYSES = ("RRRC", "FRRC", "RRFC")
FOMS = ("auc", "accuracy")


def jackknife_foms(truth: np.ndarray, ratings: np.ndarray, fom: str = "auc") -> tuple[np.ndarray, np.ndarray]:
    """FOMs (..., ) and leave-one-case-out FOMs (..., K) for ratings shaped (..., K).

    AUC without case k: (m AUC - v10_k) / (m - 1) for a synthetic case, (n AUC - v01_k) / (n - 1)
    for a real one (DeLong's components; exact, no refit per case)."""
    truth = np.asarray(truth, dtype=bool)
    ratings = np.asarray(ratings, dtype=float)
    if fom == "accuracy":
        k = ratings.shape[-1]
        foms = ratings.mean(axis=-1)
        return foms, (k * foms[..., None] - ratings) / (k - 1)
    if fom != "auc":
        raise ValueError(f"unknown figure of merit {fom!r} ({' | '.join(FOMS)})")
    m, n = int(truth.sum()), int((~truth).sum())
    if m < 2 or n < 2:
        raise ValueError("the AUC jackknife needs at least two synthetic and two real cases")
    foms, v10, v01 = structural_components(truth, ratings)
    jack = np.empty_like(ratings)
    jack[..., truth] = (m * foms[..., None] - v10) / (m - 1)
    jack[..., ~truth] = (n * foms[..., None] - v01) / (n - 1)
    return foms, jack


def jackknife_covariance(jack: np.ndarray) -> np.ndarray:
    """(T R) x (T R) covariance of the FOMs from leave-one-out values shaped (T, R, K)."""
    k = jack.shape[-1]
    flat = jack.reshape(-1, k)
    centred = flat - flat.mean(axis=1, keepdims=True)
    return (k - 1) / k * centred @ centred.T


def variance_components(cov: np.ndarray, n_treatments: int, n_readers: int) -> dict[str, float | None]:
    """Var, Cov1, Cov2, Cov3: averages of the covariance matrix's entries by kind of pair."""
    pairs: dict[str, list[float]] = {"var": [], "cov1": [], "cov2": [], "cov3": []}
    cells = list(itertools.product(range(n_treatments), range(n_readers)))
    for (p, (t1, r1)), (q, (t2, r2)) in itertools.product(enumerate(cells), repeat=2):
        kind = "var" if p == q else "cov1" if r1 == r2 else "cov2" if t1 == t2 else "cov3"
        pairs[kind].append(float(cov[p, q]))
    return {kind: (float(np.mean(v)) if v else None) for kind, v in pairs.items()}


@dataclass(frozen=True)
class OrTest:
    """One OR test: statistic (F or chi-square), its degrees of freedom and p-value, and the
    difference of every pair of treatments (first - second) with its SE, df and 95% interval."""

    analysis: str
    statistic: float
    ndf: float
    ddf: float | None
    p: float
    differences: list[dict[str, float | str]] = field(default_factory=list)
    treatments: list[dict[str, float | str]] = field(default_factory=list)


@dataclass(frozen=True)
class OrAnalysis:
    """OR analysis of a crossed design: per-cell FOMs, treatment means, mean squares, variance
    components and the requested tests."""

    fom: str
    foms: np.ndarray
    treatment_means: np.ndarray
    ms_t: float
    ms_r: float
    ms_tr: float
    components: dict[str, float | None]
    tests: dict[str, OrTest]


def _interval(
    estimate: float, se: float, df: float | None, level: float = 0.95
) -> tuple[float, float, float]:
    """(statistic, two-sided p, half-width): t on df, or z when df is None."""
    dist = norm if df is None else t_dist(df)
    quantile = float(dist.ppf(0.5 + level / 2))
    stat = estimate / se if se > 0 else math.copysign(math.inf, estimate) if estimate else 0.0
    return stat, float(2 * dist.sf(abs(stat))), quantile * se


def _difference_rows(means: np.ndarray, names: list[str], se: float, df: float | None) -> list[dict]:
    rows = []
    for a, b in itertools.combinations(range(len(means)), 2):
        diff = float(means[a] - means[b])
        stat, p, half = _interval(diff, se, df)
        rows.append(
            {
                "comparison": f"{names[a]} - {names[b]}",
                "difference": diff,
                "se": se,
                "df": math.inf if df is None else df,
                "statistic": stat,
                "p": p,
                "ci_low": diff - half,
                "ci_high": diff + half,
            }
        )
    return rows


def _ratio(num: float, den: float) -> float:
    if den > 0:
        return num / den
    return math.inf if num > 0 else math.nan


def _hillis_ddf(ms_den: float, ms_tr: float, df_tr: float) -> float:
    """Satterthwaite-type ddf_H = ms_den^2 / (ms_tr^2 / df_tr); infinite when MS(TR) is 0."""
    return math.inf if ms_tr == 0 else ms_den**2 / (ms_tr**2 / df_tr)


def _treatment_rows(
    means: np.ndarray, names: list[str], se: list[float], df: list[float | None]
) -> list[dict[str, float | str]]:
    rows = []
    for name, mean, s, d in zip(names, means, se, df, strict=True):
        _stat, _p, half = _interval(1.0, s, d)
        rows.append(
            {
                "treatment": name,
                "fom": float(mean),
                "se": s,
                "df": math.inf if d is None else d,
                "ci_low": float(mean) - half,
                "ci_high": float(mean) + half,
            }
        )
    return rows


def or_analysis(
    truth: np.ndarray,
    ratings: np.ndarray,
    fom: str = "auc",
    treatments: list[str] | None = None,
) -> OrAnalysis:
    """Obuchowski-Rockette-Hillis analysis of ratings shaped (T >= 2, R >= 2, K): RRRC, FRRC, RRFC."""
    ratings = np.asarray(ratings, dtype=float)
    n_t, n_r, _k = ratings.shape
    if n_t < 2 or n_r < 2:
        raise ValueError(f"OR analysis needs >= 2 treatments and >= 2 readers (got {n_t} and {n_r})")
    names = treatments or [str(i) for i in range(n_t)]
    foms, jack = jackknife_foms(truth, ratings, fom)
    cov = jackknife_covariance(jack)
    comp = variance_components(cov, n_t, n_r)
    var, cov1, cov2, cov3 = comp["var"], comp["cov1"], comp["cov2"], comp["cov3"]
    t_means, r_means, grand = foms.mean(axis=1), foms.mean(axis=0), float(foms.mean())
    ms_t = n_r * float(((t_means - grand) ** 2).sum()) / (n_t - 1)
    ms_r = n_t * float(((r_means - grand) ** 2).sum()) / (n_r - 1)
    resid = foms - t_means[:, None] - r_means[None, :] + grand
    ms_tr = float((resid**2).sum()) / ((n_t - 1) * (n_r - 1))
    # OR variance components (ANOVA estimates, may be negative), as OR-DBM MRMC and RJafroc print
    comp["var_tr"] = ms_tr - var + cov1 + max(cov2 - cov3, 0.0)
    comp["var_r"] = (ms_r - comp["var_tr"] - var + cov2 - (n_t - 1) * (cov1 - cov3)) / n_t
    # per-treatment (single-treatment) pieces: MS(R)_t, Var_t, Cov2_t
    single = [
        (
            float(np.var(foms[i], ddof=1)),
            variance_components(cov[i * n_r : (i + 1) * n_r, i * n_r : (i + 1) * n_r], 1, n_r),
        )
        for i in range(n_t)
    ]
    tests = {
        "RRRC": _rrrc(t_means, names, ms_t, ms_tr, n_t, n_r, cov2 - cov3, single),
        "FRRC": _frrc(t_means, names, ms_t, n_t, n_r, var - cov1 + (n_r - 1) * max(cov2 - cov3, 0.0), single),
        "RRFC": _rrfc(t_means, names, ms_t, ms_tr, n_t, n_r, single),
    }
    return OrAnalysis(
        fom=fom,
        foms=foms,
        treatment_means=t_means,
        ms_t=ms_t,
        ms_r=ms_r,
        ms_tr=ms_tr,
        components=comp,
        tests=tests,
    )


def _rrrc(means, names, ms_t, ms_tr, n_t, n_r, cov2_minus_cov3, single) -> OrTest:
    ms_den = ms_tr + n_r * max(cov2_minus_cov3, 0.0)
    df_tr = (n_t - 1) * (n_r - 1)
    ddf = _hillis_ddf(ms_den, ms_tr, df_tr)
    stat = _ratio(ms_t, ms_den)
    se, df = [], []
    for ms_r_t, c in single:
        den = ms_r_t + n_r * max(c["cov2"], 0.0)
        se.append(math.sqrt(den / n_r))
        df.append(_hillis_ddf(den, ms_r_t, n_r - 1))
    return OrTest(
        "RRRC",
        stat,
        n_t - 1,
        ddf,
        float(f_dist.sf(stat, n_t - 1, ddf)),
        _difference_rows(means, names, math.sqrt(2 * ms_den / n_r), ddf),
        _treatment_rows(means, names, se, df),
    )


def _frrc(means, names, ms_t, n_t, n_r, den, single) -> OrTest:
    stat = _ratio((n_t - 1) * ms_t, den)
    se = [math.sqrt((c["var"] + (n_r - 1) * max(c["cov2"], 0.0)) / n_r) for _ms, c in single]
    return OrTest(
        "FRRC",
        stat,
        n_t - 1,
        None,
        float(chi2.sf(stat, n_t - 1)),
        _difference_rows(means, names, math.sqrt(2 * den / n_r), None),
        _treatment_rows(means, names, se, [None] * n_t),
    )


def _rrfc(means, names, ms_t, ms_tr, n_t, n_r, single) -> OrTest:
    ddf = (n_t - 1) * (n_r - 1)
    stat = _ratio(ms_t, ms_tr)
    se = [math.sqrt(ms_r_t / n_r) for ms_r_t, _c in single]
    return OrTest(
        "RRFC",
        stat,
        n_t - 1,
        ddf,
        float(f_dist.sf(stat, n_t - 1, ddf)),
        _difference_rows(means, names, math.sqrt(2 * ms_tr / n_r), ddf),
        _treatment_rows(means, names, se, [n_r - 1] * n_t),
    )


@dataclass(frozen=True)
class PanelComparison:
    """One reader (a model) against a panel of J readers on the same cases.

    ``difference`` = model FOM - mean panel FOM (positive: the model does better). ``tests`` maps
    RRRC (Hillis 2007 sec. 5.3, random readers and cases), FRRC (panel fixed, cases random: a z test
    with Var(mean psi) = [Var + (J-1) max(Cov2, 0)] / J) and RRFC (paired t on the J differences)
    to dicts with statistic, df, p, se, ci_low, ci_high of the difference."""

    fom: str
    model_fom: float
    panel_foms: np.ndarray
    panel_mean: float
    difference: float
    var: float
    cov2: float
    ms_r: float
    tests: dict[str, dict[str, float]]


def single_vs_panel(
    truth: np.ndarray, model: np.ndarray, panel: np.ndarray, fom: str = "auc"
) -> PanelComparison:
    """Compare one reader's ratings (K,) with a panel's (J >= 2, K) on the same K cases."""
    panel = np.asarray(panel, dtype=float)
    n_j = panel.shape[0]
    if panel.ndim != 2 or n_j < 2:
        raise ValueError("the panel needs at least two readers (ratings shaped (J, K))")
    model_fom, model_jack = jackknife_foms(truth, np.asarray(model, dtype=float), fom)
    panel_foms, panel_jack = jackknife_foms(truth, panel, fom)
    psi = panel_foms - model_fom  # reader minus model, as RJafroc's StCadVsRad
    comp = variance_components(jackknife_covariance((panel_jack - model_jack)[None]), 1, n_j)
    var, cov2 = float(comp["var"]), float(comp["cov2"])
    ms_r = float(np.var(psi, ddof=1))
    mean_psi = float(psi.mean())
    ms_den = ms_r + max(n_j * cov2, 0.0)
    tests = {}
    for name, se, df in (
        ("RRRC", math.sqrt(ms_den / n_j), _hillis_ddf(ms_den, ms_r, n_j - 1)),
        ("FRRC", math.sqrt((var + (n_j - 1) * max(cov2, 0.0)) / n_j), None),
        ("RRFC", math.sqrt(ms_r / n_j), float(n_j - 1)),
    ):
        stat, p, half = _interval(-mean_psi, se, df)
        tests[name] = {
            "statistic": stat,
            "df": math.inf if df is None else df,
            "p": p,
            "se": se,
            "ci_low": -mean_psi - half,
            "ci_high": -mean_psi + half,
        }
    return PanelComparison(
        fom, float(model_fom), panel_foms, float(panel_foms.mean()), -mean_psi, var, cov2, ms_r, tests
    )
