"""Metrics, defined once (DESIGN: labels and metrics) and used by the CLI, dashboard and report.

Positive class: ``synthetic``. For a group: ``n`` = ok responses (latest per key); ``answered`` =
real + synthetic; ``coverage = answered / n``; ``accuracy = correct / n`` (abstentions count as
wrong); ``accuracy_answered = correct / answered``; sensitivity and specificity over answered images;
95% Wilson intervals; open errors counted separately. ``param_sets`` and ``prompt_versions`` count the
distinct ``params_json`` and ``prompt_sha256`` among a group's results: above 1, the group silently
mixes generation settings (the CLI warns).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from cache.filters import Filters
from cache.schema import LABELS

__all__ = ["Filters", "GROUP_BY", "group_metrics", "confusion_matrix", "compare_models", "wilson", "label_sources",
           "label_sources_sentence"]

Z95 = 1.959963984540054
GROUP_BY = ("model", "modality", "prompt_id")


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float | None, float | None]:
    """Wilson score interval for a binomial proportion; (None, None) when n == 0."""
    if n <= 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None


METRICS_SQL = """
SELECT {group_cols},
  count(*) AS n,
  count(*) FILTER (WHERE answered) AS answered,
  count(*) FILTER (WHERE correct) AS correct,
  count(*) FILTER (WHERE truth = 'synthetic' AND label = 'synthetic') AS tp,
  count(*) FILTER (WHERE truth = 'synthetic' AND label = 'real') AS fn,
  count(*) FILTER (WHERE truth = 'real' AND label = 'synthetic') AS fp,
  count(*) FILTER (WHERE truth = 'real' AND label = 'real') AS tn,
  count(*) FILTER (WHERE label = 'uncertain') AS uncertain,
  count(*) FILTER (WHERE label = 'refused') AS refused,
  count(*) FILTER (WHERE label = 'unparseable') AS unparseable,
  avg(latency_ms) AS mean_latency_ms,
  sum(input_tokens) AS input_tokens,
  sum(output_tokens) AS output_tokens,
  sum(cost_usd) AS cost_usd,
  count(DISTINCT params_json) AS param_sets,
  count(DISTINCT prompt_sha256) AS prompt_versions
FROM results {where}
GROUP BY ALL ORDER BY ALL
"""

ERRORS_SQL = "SELECT {group_cols}, count(*) AS errors FROM failures {where} GROUP BY ALL"


def group_metrics(
    con: duckdb.DuckDBPyConnection,
    filters: Filters | None = None,
    by: Sequence[str] = GROUP_BY,
) -> list[dict[str, Any]]:
    """One dict per group with the keys of `python -m cache metrics --json` (plus cost/latency)."""
    filters = filters or Filters()
    where, params = filters.where()
    group_cols = ", ".join(by)
    cur = con.execute(METRICS_SQL.format(group_cols=group_cols, where=where), params)
    names = [d[0] for d in cur.description]
    groups = {tuple(r[: len(by)]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}
    for row in con.execute(ERRORS_SQL.format(group_cols=group_cols, where=where), params).fetchall():
        gkey = tuple(row[: len(by)])
        if gkey not in groups:
            groups[gkey] = dict(zip(by, gkey, strict=True)) | _zero_counts()
        groups[gkey]["errors"] = row[-1]
    return [finish_group(g) for _k, g in sorted(groups.items(), key=lambda kv: [str(v) for v in kv[0]])]


def _zero_counts() -> dict[str, Any]:
    names = ("n", "answered", "correct", "tp", "fn", "fp", "tn", "uncertain", "refused", "unparseable",
             "param_sets", "prompt_versions")
    return dict.fromkeys(names, 0) | {
        "mean_latency_ms": None, "input_tokens": None, "output_tokens": None, "cost_usd": None,
    }


def finish_group(g: dict[str, Any]) -> dict[str, Any]:
    """Derive rates and Wilson intervals from a group's counts."""
    g = dict(g)
    g.setdefault("errors", 0)
    n, answered, correct = g["n"], g["answered"], g["correct"]
    g["coverage"] = ratio(answered, n)
    g["accuracy"] = ratio(correct, n)
    g["accuracy_ci_low"], g["accuracy_ci_high"] = wilson(correct, n)
    g["accuracy_answered"] = ratio(correct, answered)
    pos, neg = g["tp"] + g["fn"], g["tn"] + g["fp"]
    g["sensitivity"] = ratio(g["tp"], pos)
    g["sensitivity_ci_low"], g["sensitivity_ci_high"] = wilson(g["tp"], pos)
    g["specificity"] = ratio(g["tn"], neg)
    g["specificity_ci_low"], g["specificity_ci_high"] = wilson(g["tn"], neg)
    for key in ("input_tokens", "output_tokens"):
        g[key] = int(g[key]) if g[key] is not None else None
    return g


def confusion_matrix(
    con: duckdb.DuckDBPyConnection, filters: Filters | None = None
) -> dict[tuple[str, str], dict[str, dict[str, int]]]:
    """(model, modality) -> truth -> predicted label -> count, every cell present (zeros too)."""
    where, params = (filters or Filters()).where()
    rows = con.execute(
        f"SELECT model, modality, truth, label, count(*) FROM results {where} GROUP BY ALL", params
    ).fetchall()
    out: dict[tuple[str, str], dict[str, dict[str, int]]] = {}
    for model, modality, truth, label, count in rows:
        cm = out.setdefault((model, modality), {t: dict.fromkeys(LABELS, 0) for t in ("real", "synthetic")})
        if truth in cm and label in cm[truth]:
            cm[truth][label] += count
    return dict(sorted(out.items()))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts: a binomial test of b in b + c at
    p = 0.5 (scipy's, fast at any size; exact big-integer sums took minutes at 10^5 pairs)."""
    if b + c == 0:
        return 1.0
    from scipy.stats import binomtest  # imported on use: the CLI's other commands never need it

    return float(min(1.0, binomtest(b, b + c, 0.5).pvalue))


def kappa_from_counts(counts: Mapping[tuple[str, str], int]) -> float | None:
    """Cohen's kappa from counts of (label_a, label_b) pairs (all five labels are categories)."""
    n = sum(counts.values())
    if n == 0:
        return None
    observed = sum(v for (a, b), v in counts.items() if a == b) / n
    margin_a, margin_b = Counter(), Counter()
    for (a, b), v in counts.items():
        margin_a[a] += v
        margin_b[b] += v
    expected = sum(margin_a[c] * margin_b[c] for c in margin_a) / (n * n)
    if expected == 1:
        return 1.0 if observed == 1 else None
    return (observed - expected) / (1 - expected)


def cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    """Cohen's kappa over paired labels."""
    return kappa_from_counts(Counter(map(tuple, pairs)))


def summarise_pairs(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """McNemar and kappa from pair counts: rows with label_a, label_b, correct_a, correct_b, n."""
    b = sum(r["n"] for r in rows if r["correct_a"] and not r["correct_b"])
    c = sum(r["n"] for r in rows if r["correct_b"] and not r["correct_a"])
    labels: Counter[tuple[str, str]] = Counter()
    for r in rows:
        labels[(r["label_a"], r["label_b"])] += int(r["n"])
    return {
        "n_pairs": sum(labels.values()),
        "both_correct": sum(r["n"] for r in rows if r["correct_a"] and r["correct_b"]),
        "both_wrong": sum(r["n"] for r in rows if not r["correct_a"] and not r["correct_b"]),
        "a_only_correct": b,
        "b_only_correct": c,
        "mcnemar_p": mcnemar_exact(b, c),
        "kappa": kappa_from_counts(labels),
        "n_disagreements": sum(v for (a, bb), v in labels.items() if a != bb),
    }


PAIRED_SQL = """
SELECT a.image_sha256, a.image_path, a.modality, a.truth, a.source, a.prompt_id, a.repeat,
       a.label AS label_a, b.label AS label_b, a.correct AS correct_a, b.correct AS correct_b
FROM results a JOIN results b
  ON a.image_sha256 = b.image_sha256 {same_prompt} AND a.repeat = b.repeat
 AND a.modality = b.modality
WHERE a.model = ? AND b.model = ? {extra}
"""


def paired_sql(filters: Filters | None = None, prompts: tuple[str, str] | None = None) -> tuple[str, list[Any]]:
    """The pairs query (two models on the same image, prompt, repeat) and its filter parameters;
    its first two parameters are model_a and model_b. The model filter does not apply to pairs.

    ``prompts=(prompt_a, prompt_b)`` pairs A's answers under one prompt with B's under another (a
    human reader's instructions are not a model's prompt): the prompt filter then does not apply."""
    if prompts is None:
        extra, params = (filters or Filters()).clause("a", exclude=("model",))
        return PAIRED_SQL.format(same_prompt="AND a.prompt_id = b.prompt_id", extra=extra), params
    extra, params = (filters or Filters()).clause("a", exclude=("model", "prompt_id"))
    return (PAIRED_SQL.format(same_prompt="", extra=" AND a.prompt_id = ? AND b.prompt_id = ?" + extra),
            [*prompts, *params])


def compare_models(
    con: duckdb.DuckDBPyConnection, model_a: str, model_b: str, filters: Filters | None = None,
    limit: int | None = 500, prompts: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """Paired comparison on the images both models answered (ok rows): McNemar and kappa overall
    and per modality, aggregated in DuckDB (the pairs are built once, in a temporary table of this
    connection), plus the first ``limit`` disagreements. ``prompts``: see :func:`paired_sql`."""
    sql, params = paired_sql(filters, prompts)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _medlens_pairs AS {sql}", [model_a, model_b, *params])
    try:
        cur = con.execute("SELECT modality, label_a, label_b, correct_a, correct_b, count(*) AS n "
                          "FROM _medlens_pairs GROUP BY ALL")
        counts = [dict(zip([d[0] for d in cur.description], r, strict=True)) for r in cur.fetchall()]
        cur = con.execute("SELECT * FROM _medlens_pairs WHERE label_a <> label_b "
                          "ORDER BY modality, image_path, prompt_id, repeat"
                          + (f" LIMIT {int(limit)}" if limit is not None else ""))
        names = [d[0] for d in cur.description]
        disagreements = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
    finally:
        con.execute("DROP TABLE IF EXISTS _medlens_pairs")
    by_modality = {m: summarise_pairs([r for r in counts if r["modality"] == m])
                   for m in sorted({r["modality"] for r in counts})}
    return summarise_pairs(counts) | {
        "model_a": model_a, "model_b": model_b, "by_modality": by_modality, "disagreements": disagreements,
    }


# -- who set the labels ----------------------------------------------------------------------------
#: label_source (cache.views.results) -> how a sentence names it; highest authority first
LABEL_SOURCE_PHRASES = {
    "reviewer": "set by a reviewer",
    "judge": "by {by} as judge",
    "reader": "given by a human reader",
    "provider": "decided by a local detector",
    "parser": "read from the answer by the parser",
}


def label_sources(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> list[dict[str, Any]]:
    """How many current labels (``results``) each source set: one dict per (label_source, label_by)
    with ``n``, highest authority first (reviewer, judge, reader, provider, parser), then most labels.
    ``label_by`` is the judge model for judge labels, the reviewer's name for reviewer labels."""
    where, params = (filters or Filters()).where()
    rows = con.execute(f"SELECT label_source, label_by, count(*) FROM results {where} GROUP BY ALL", params).fetchall()
    order = {name: rank for rank, name in enumerate(LABEL_SOURCE_PHRASES)}
    out = [{"label_source": source, "label_by": by, "n": int(n)} for source, by, n in rows]
    return sorted(out, key=lambda r: (order.get(r["label_source"], len(order)), -r["n"], str(r["label_by"])))


def label_sources_sentence(rows: Sequence[Mapping[str, Any]], quote: Any = str) -> str:
    """'41 of 1,230 labels set by a reviewer, 112 by openai:gpt-4o-mini as judge, the other 1,077 read
    from the answer by the parser.' from :func:`label_sources`; ``quote`` wraps user data (model and
    reviewer names), e.g. as Markdown code spans on the dashboard. Empty when there are no labels."""
    total = sum(int(r["n"]) for r in rows)
    if total == 0:
        return ""
    merged: dict[tuple[str, str | None], int] = {}
    reviewers: set[str] = set()
    for r in rows:  # reviewers are counted together ("by 2 reviewers"); judges stay by model
        source = str(r["label_source"])
        by = r["label_by"] if source == "judge" else None
        if source == "reviewer" and r["label_by"] is not None:
            reviewers.add(str(r["label_by"]))
        merged[(source, by)] = merged.get((source, by), 0) + int(r["n"])
    phrases = []
    for (source, by), n in merged.items():
        phrase = LABEL_SOURCE_PHRASES.get(source, f"set by {source}")
        if source == "reviewer" and len(reviewers) > 1:
            phrase = f"set by {len(reviewers)} reviewers"
        phrases.append((n, phrase.format(by=quote(by))))
    if len(phrases) == 1:
        return f"All {total:,} labels {phrases[0][1]}."
    (first_n, first), *rest = phrases
    (last_n, last) = rest.pop()
    parts = [f"{first_n:,} of {total:,} labels {first}", *(f"{n:,} {p}" for n, p in rest),
             f"the other {last_n:,} {last}"]
    return ", ".join(parts) + "."
