"""Paired-comparison statistics from pair counts (pure). Generic: candidates for cache.metrics.

cache.metrics.mcnemar_exact sums exact big-integer binomial coefficients: at b + c = 20,000 it takes
~20 s and at the ~10^5 discordant pairs of a 10^6-row store, minutes. :func:`mcnemar_p` gives the
same two-sided exact p-value, delegating to it for small counts and summing in log space otherwise.
"""

from __future__ import annotations

import math
from typing import Any

from cache import metrics as cm


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: cache.metrics.mcnemar_exact for small counts; for large ones
    the same binomial tail summed in log space (exact big-integer sums take minutes at b + c ~ 10^5)."""
    n = b + c
    if n <= 1000:
        return cm.mcnemar_exact(b, c)
    k = min(b, c)
    base = math.lgamma(n + 1) - n * math.log(2)
    logs = [base - math.lgamma(i + 1) - math.lgamma(n - i + 1) for i in range(k + 1)]
    top = max(logs)
    return min(1.0, 2 * math.exp(top) * sum(math.exp(v - top) for v in logs))


def summarise_pairs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """McNemar and kappa from pair counts (rows with label_a, label_b, correct_a, correct_b, n)."""
    b = sum(r["n"] for r in rows if r["correct_a"] and not r["correct_b"])
    c = sum(r["n"] for r in rows if r["correct_b"] and not r["correct_a"])
    pairs = [(r["label_a"], r["label_b"]) for r in rows for _ in range(int(r["n"]))]
    return {
        "n_pairs": len(pairs),
        "both_correct": sum(r["n"] for r in rows if r["correct_a"] and r["correct_b"]),
        "both_wrong": sum(r["n"] for r in rows if not r["correct_a"] and not r["correct_b"]),
        "a_only_correct": b, "b_only_correct": c, "mcnemar_p": mcnemar_p(b, c),
        "kappa": cm.cohen_kappa(pairs),
        "n_disagreements": sum(r["n"] for r in rows if r["label_a"] != r["label_b"]),
    }
