"""Metrics as DESIGN.md defines them, checked against scikit-learn, statsmodels and scipy."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scipy.stats import binomtest
from sklearn.metrics import cohen_kappa_score, confusion_matrix, recall_score
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from cache.cli import METRIC_KEYS
from cache.metrics import (
    Filters,
    cohen_kappa,
    compare_models,
    group_metrics,
    mcnemar_exact,
    summarise_pairs,
    wilson,
)
from cache.metrics import (
    confusion_matrix as cm_store,
)
from cache.schema import LABELS
from cache.store import Store
from tests.pipeline_helpers import cli

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def build(tmp_path: Path, n: int = 300, seed: int = 1) -> tuple[Store, list[dict]]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        truth = rng.choice(["real", "synthetic"])
        for model in ("m:a", "m:b"):
            label = rng.choices(LABELS, weights=[40, 40, 10, 5, 5])[0]
            rows.append({"key": f"{model}{i}", "run_id": "r", "created_at": NOW, "provider": "m",
                         "model": model, "prompt_id": "paper", "image_sha256": f"img{i}",
                         "modality": "fundus" if i % 3 else "chest_xray", "truth": truth,
                         "source": "gan" if i % 2 else "", "repeat": 0, "status": "ok", "label": label})
    rows.append(dict(rows[0], key="err1", status="error", label=None, error_type="timeout"))
    store = Store(tmp_path)
    store.append(rows)
    return store, rows


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (57, 100), (1, 1)])
def test_wilson_matches_statsmodels(k: int, n: int) -> None:
    assert wilson(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"), abs=1e-9)


def test_wilson_of_nothing() -> None:
    assert wilson(0, 0) == (None, None)


def test_group_metrics_match_sklearn(tmp_path: Path) -> None:
    store, rows = build(tmp_path)
    groups = group_metrics(store.connect())
    assert len(groups) == 4
    for g in groups:
        mine = [r for r in rows if r["model"] == g["model"] and r["modality"] == g["modality"]
                and r["status"] == "ok"]
        truth = [r["truth"] for r in mine]
        label = [r["label"] for r in mine]
        answered = [(t, p) for t, p in zip(truth, label, strict=True) if p in ("real", "synthetic")]
        assert g["n"] == len(mine) and g["answered"] == len(answered)
        assert g["accuracy"] == pytest.approx(sum(t == p for t, p in zip(truth, label, strict=True)) / len(mine))
        at, ap = zip(*answered, strict=True)
        assert g["accuracy_answered"] == pytest.approx(sum(t == p for t, p in answered) / len(answered))
        assert g["sensitivity"] == pytest.approx(recall_score(at, ap, pos_label="synthetic"))
        assert g["specificity"] == pytest.approx(recall_score(at, ap, pos_label="real"))
        assert g["coverage"] == pytest.approx(len(answered) / len(mine))
        (tn, fp), (fn, tp) = confusion_matrix(at, ap, labels=["real", "synthetic"])
        assert (g["tn"], g["fp"], g["fn"], g["tp"]) == (tn, fp, fn, tp)
        assert g["uncertain"] + g["refused"] + g["unparseable"] == g["n"] - g["answered"]
        low, high = proportion_confint(round(g["accuracy"] * g["n"]), g["n"], method="wilson")
        assert (g["accuracy_ci_low"], g["accuracy_ci_high"]) == pytest.approx((low, high))
    errors = {(g["model"], g["modality"]): g["errors"] for g in groups}
    assert errors[("m:a", rows[0]["modality"])] == 1 and sum(errors.values()) == 1


def test_confusion_matrix_full_grid_matches_sklearn(tmp_path: Path) -> None:
    store, rows = build(tmp_path)
    cms = cm_store(store.connect(), Filters(model=["m:b"]))
    assert set(cms) == {("m:b", "fundus"), ("m:b", "chest_xray")}
    mine = [r for r in rows if r["model"] == "m:b" and r["modality"] == "fundus"]
    expected = confusion_matrix([r["truth"] for r in mine], [r["label"] for r in mine], labels=list(LABELS))
    grid = cms[("m:b", "fundus")]
    assert [[grid["real"][lab] for lab in LABELS], [grid["synthetic"][lab] for lab in LABELS]] == \
        expected[:2].tolist()


def test_filters_narrow_every_surface(tmp_path: Path) -> None:
    store, rows = build(tmp_path)
    groups = group_metrics(store.connect(), Filters(source=["gan"], truth=["synthetic"]))
    for g in groups:
        expected = [r for r in rows if r["model"] == g["model"] and r["modality"] == g["modality"]
                    and r["source"] == "gan" and r["truth"] == "synthetic" and r["status"] == "ok"]
        assert g["n"] == len(expected) and g["fp"] == g["tn"] == 0


@pytest.mark.parametrize("b,c", [(0, 0), (5, 5), (10, 2), (1, 12), (30, 14)])
def test_mcnemar_exact_matches_statsmodels(b: int, c: int) -> None:
    expected = mcnemar([[7, b], [c, 9]], exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected)
    if b + c:
        assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue)


def test_kappa_and_compare_match_sklearn(tmp_path: Path) -> None:
    store, rows = build(tmp_path)
    result = compare_models(store.connect(), "m:a", "m:b")
    a = {r["image_sha256"]: r for r in rows if r["model"] == "m:a" and r["status"] == "ok"}
    b = {r["image_sha256"]: r for r in rows if r["model"] == "m:b"}
    shared = sorted(set(a) & set(b))
    assert result["n_pairs"] == len(shared)
    la, lb = [a[s]["label"] for s in shared], [b[s]["label"] for s in shared]
    assert result["kappa"] == pytest.approx(cohen_kappa_score(la, lb))
    assert cohen_kappa(list(zip(la, lb, strict=True))) == pytest.approx(cohen_kappa_score(la, lb))
    a_only = sum(a[s]["label"] == a[s]["truth"] and b[s]["label"] != b[s]["truth"] for s in shared)
    b_only = sum(b[s]["label"] == b[s]["truth"] and a[s]["label"] != a[s]["truth"] for s in shared)
    assert (result["a_only_correct"], result["b_only_correct"]) == (a_only, b_only)
    assert result["mcnemar_p"] == pytest.approx(mcnemar([[0, a_only], [b_only, 0]], exact=True).pvalue)
    assert len(result["disagreements"]) == sum(x != y for x, y in zip(la, lb, strict=True))


def test_mcnemar_exact_at_a_million_row_scale() -> None:
    # 121,000 discordant pairs: the exact test must still answer (and agree with statsmodels)
    assert mcnemar_exact(60_000, 61_000) == pytest.approx(mcnemar([[0, 60_000], [61_000, 0]], exact=True).pvalue)
    assert 0.0 < mcnemar_exact(60_000, 61_000) < 0.01


def test_summarise_pairs_from_counts() -> None:
    rows = [
        {"label_a": "real", "label_b": "real", "correct_a": True, "correct_b": True, "n": 4},
        {"label_a": "real", "label_b": "synthetic", "correct_a": True, "correct_b": False, "n": 2},
        {"label_a": "synthetic", "label_b": "synthetic", "correct_a": True, "correct_b": True, "n": 1},
        {"label_a": "synthetic", "label_b": "real", "correct_a": True, "correct_b": False, "n": 3},
        {"label_a": "synthetic", "label_b": "refused", "correct_a": True, "correct_b": False, "n": 1},
        {"label_a": "real", "label_b": "synthetic", "correct_a": False, "correct_b": True, "n": 1},
    ]
    s = summarise_pairs(rows)
    assert (s["n_pairs"], s["a_only_correct"], s["b_only_correct"], s["both_wrong"]) == (12, 6, 1, 0)
    assert s["mcnemar_p"] == pytest.approx(0.125) and s["kappa"] == pytest.approx(-0.12)
    assert s["n_disagreements"] == 7


def test_groups_count_param_sets_and_prompt_versions_and_cli_warns(tmp_path: Path) -> None:
    store, rows = build(tmp_path, n=40)
    extra = [dict(r, key=r["key"] + "-t512", params_json='{"max_tokens": 512}', prompt_sha256="p1")
             for r in rows if r["model"] == "m:a" and r["modality"] == "fundus" and r["status"] == "ok"]
    for r in extra[:3]:
        r["prompt_sha256"] = "p2"
    base = [dict(r, key=r["key"] + "-base", params_json='{"max_tokens": 1024}', prompt_sha256="p1") for r in rows
            if r["status"] == "ok"]
    store.append(extra + base)
    groups = {(g["model"], g["modality"]): g for g in group_metrics(store.connect())}
    assert (groups[("m:a", "fundus")]["param_sets"], groups[("m:a", "fundus")]["prompt_versions"]) == (2, 2)
    assert groups[("m:b", "fundus")]["param_sets"] == 1  # the build() rows have params_json NULL
    for args in ((), ("--json",)):
        proc = cli("cache", "--store", str(store.root), "metrics", *args)
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert warnings == [
            "warning: m:a / fundus / paper mixes 2 generation settings (params_json) and 2 prompt versions "
            "(prompt_sha256) — its rows come from runs with different parameters; use a separate --store per "
            "setting"], proc.stderr
        if args:
            out = json.loads(proc.stdout)
            assert "param_sets" not in out[0] and set(out[0]) == set(METRIC_KEYS), "the --json contract"
