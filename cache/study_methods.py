"""The methods paragraphs of the reader study and of interpretation grading, from what the store holds.

Readers are response rows of provider ``reader`` (model ``reader:<name>``) with a 1-5 ``rating`` and
the server-measured ``latency_ms``; their training block has task ``reader_training`` (never in
``results``, so never in a metric). Grades are the ``grades`` table (cache.grades says how they
count). ``reader_facts`` and ``grading_facts`` give the numbers as data; ``reader_study_text`` and
``grading_text`` the sentences (empty when the store holds no reader answer / no grade).
"""

from __future__ import annotations

import textwrap
from typing import Any

import duckdb

from cache.filters import Filters
from cache.grade_stats import AGREEMENT
from cache.grades import CURRENT_GRADES, ORIGINS, SCALES, gradable_sql, is_reader_sql
from cache.schema import READER_PREFIX

IS_READER = is_reader_sql()
#: the rows of ``responses`` that are model answers to the study question (for the models' paragraph)
MODEL_ROWS = f"(SELECT * FROM responses WHERE NOT coalesce({IS_READER}, false) AND coalesce(task, 'detect') = 'detect')"
WIDTH = 100


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any]) -> list[dict[str, Any]]:
    cur = con.execute(sql, params)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def reader_facts(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> dict[str, Any]:
    """Per reader (scored block: current answers; training block: task reader_training) and the cases
    per modality and truth. Keys: readers, cases, training."""
    extra, params = (filters or Filters()).clause()
    readers = _rows(
        con,
        f"""
        SELECT model AS reader, count(*) AS answers, count(DISTINCT image_sha256) AS cases,
               count(rating) AS rated, quantile_cont(latency_ms, [0.25, 0.5, 0.75]) AS latency_q,
               min(created_at)::VARCHAR AS first, max(created_at)::VARCHAR AS last
        FROM results WHERE {IS_READER} {extra} GROUP BY model ORDER BY model""",
        params,
    )
    cases = _rows(
        con,
        f"""
        SELECT modality, truth, count(DISTINCT image_sha256) AS cases FROM results
        WHERE {IS_READER} {extra} GROUP BY ALL ORDER BY ALL""",
        params,
    )
    training = _rows(
        con,
        f"""
        SELECT count(*) AS answers, count(DISTINCT image_sha256) AS cases, count(DISTINCT model) AS readers
        FROM responses WHERE {IS_READER} AND task = 'reader_training' AND status = 'ok' {extra}""",
        params,
    )[0]
    prompts = [
        r[0]
        for r in con.execute(
            f"SELECT DISTINCT prompt_id FROM results WHERE {IS_READER} {extra} ORDER BY prompt_id", params
        ).fetchall()
    ]
    latency = con.execute(
        f"SELECT quantile_cont(latency_ms, [0.25, 0.5, 0.75]) FROM results WHERE {IS_READER} {extra}", params
    ).fetchone()[0]
    return {
        "readers": readers,
        "cases": cases,
        "training": training,
        "latency_q": latency,
        "prompts": prompts,
    }


def _seconds(ms: float | None) -> str:
    return "?" if ms is None else f"{ms / 1000:.1f}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _cases_sentence(cases: list[dict[str, Any]]) -> str:
    by_modality: dict[str, list[str]] = {}
    for c in cases:
        by_modality.setdefault(c["modality"], []).append(f"{c['cases']} {c['truth']}")
    return "; ".join(f"{m.replace('_', ' ')}: {' and '.join(v)}" for m, v in sorted(by_modality.items()))


def reader_study_text(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> str:
    """The reader-study paragraph ('' without reader answers)."""
    facts = reader_facts(con, filters)
    readers = facts["readers"]
    if not readers:
        return ""
    total_cases = sum(c["cases"] for c in facts["cases"])
    answers = sum(r["answers"] for r in readers)
    rated = sum(r["rated"] for r in readers)
    spread = {r["cases"] for r in readers}
    coverage = (
        f"each read all {total_cases}"
        if spread == {total_cases}
        else f"each read between {min(spread)} and {max(spread)} of them"
    )
    names = ", ".join(r["reader"].removeprefix(READER_PREFIX) for r in readers)
    q1, median, q3 = facts["latency_q"] or (None, None, None)
    per_reader = ", ".join(
        f"{r['reader'].removeprefix(READER_PREFIX)} {_seconds((r['latency_q'] or [None] * 3)[1])} s"
        for r in readers
    )
    training = facts["training"]
    prompts = facts["prompts"]
    conditions = (
        f" under {len(prompts)} conditions (prompts {', '.join(map(str, prompts))})"
        if len(prompts) > 1
        else ""
    )
    first, last = min(r["first"] for r in readers)[:10], max(r["last"] for r in readers)[:10]
    text = (
        f"Reader study. {_plural(len(readers), 'human reader')} ({names}) read {_plural(total_cases, 'case')} "
        f"({_cases_sentence(facts['cases'])}){conditions}: {coverage}, giving {_plural(answers, 'scored answer')}. "
        "Readers "
        "worked in the MedLens reader page, one case at a time, each in an order of their own: a random "
        "permutation per reader, stored, so that a later sitting resumed where the reader had stopped. A reader saw "
        "only the prepared image (the same bytes the models received) and an opaque case number, never the truth, "
        "source, file name, a model's answer or a running score. Each answer was a button, Real or Synthetic, with "
        "a 5-point rating (1 = definitely real, 5 = definitely synthetic)"
        + (
            ""
            if rated == answers
            else f"; {rated} of {answers} answers carry a rating (the others count as the "
            "extreme rating of their button)"
        )
        + f". Time per case was measured on the server, from showing the case to receiving the answer: median "
        f"{_seconds(median)} s (interquartile range {_seconds(q1)}-{_seconds(q3)} s; per reader: {per_reader}). "
        + (
            f"Before the scored block, {_plural(training['readers'], 'reader')} answered a training block "
            f"({_plural(training['cases'], 'case')}, {_plural(training['answers'], 'answer')}) in which the truth was "
            "shown after each answer; training answers are stored apart (task reader_training) and enter no metric. "
            if training["answers"]
            else "No training block was recorded. "
        )
        + f"Scored answers were given between {first} and {last} (UTC). Reader accuracy, sensitivity and "
        "specificity carry 95% Wilson intervals; agreement between readers is Fleiss' kappa (on the images every "
        "reader answered) and Krippendorff's alpha; ROC curves use the readers' ratings and the models' stated "
        "confidence (as the probability of synthetic; 0.5 for an abstention), with DeLong 95% intervals for the "
        "AUC; readers across conditions, and each model against the reader panel, are compared by the "
        "Obuchowski-Rockette method with Hillis's denominator degrees of freedom (random readers, random cases; "
        "a model against the panel as in Hillis 2007)."
    )
    return textwrap.fill(text, width=WIDTH)


def grading_facts(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> dict[str, Any]:
    """Graders (grades each), interpretations, models and images graded, grades per origin, dates."""
    where, params = (filters or Filters()).where("r")
    base = f"FROM ({CURRENT_GRADES}) g JOIN results r USING (key) {where}"
    graders = _rows(con, f"SELECT grader, count(*) AS grades {base} GROUP BY grader ORDER BY grader", params)
    totals = _rows(
        con,
        f"""SELECT count(*) AS grades, count(DISTINCT key) AS interpretations,
        count(DISTINCT r.model) AS models, count(DISTINCT r.image_sha256) AS images,
        min(g.created_at)::VARCHAR AS first, max(g.created_at)::VARCHAR AS last,
        {", ".join(f"count(*) FILTER (WHERE starts_with(g.session_id, '{o}-')) AS {o}" for o in ORIGINS)}
        {base}""",
        params,
    )[0]
    joiner = " AND" if where else " WHERE"
    candidates = con.execute(
        f"SELECT count(*) FROM results r {where}{joiner} {gradable_sql('r')}", params
    ).fetchone()[0]
    return {"graders": graders, "candidates": int(candidates)} | totals


def _anchors(scale: str) -> str:
    return ", ".join(f"{grade} = {anchor}" for grade, anchor in SCALES[scale].items())


def grading_text(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> str:
    """The grading-protocol paragraph ('' without grades)."""
    facts = grading_facts(con, filters)
    if not facts["grades"]:
        return ""
    graders = facts["graders"]
    names = ", ".join(f"{g['grader']} {g['grades']}" for g in graders)
    from_image = facts["image"]
    text = (
        f"Interpretation grading. {_plural(len(graders), 'grader')} (grades each: {names}) gave "
        f"{_plural(facts['grades'], 'grade')} to {facts['interpretations']} of the {facts['candidates']} "
        f"interpretations written by {_plural(facts['models'], 'model')} about {_plural(facts['images'], 'image')}. "
        "A grader rated one interpretation at a time, blinded: they saw the image thumbnail and the interpretation "
        "as plain text, never the model, provider, truth, source, file name, label or confidence, in an order of "
        "their own across models (a random permutation per grader, derived from the grader's name and each "
        f"answer's key). Correctness was graded 1-5 ({_anchors('correctness')}); specificity 1-5 "
        f"({_anchors('specificity')}); hallucinated findings yes or no, with their number; a note was optional. "
        "The latest grade of a grader for an interpretation counts. Per model and modality, a scale's mean is the "
        "mean over images of each image's mean grade, with a 95% t interval over images; the share of grades that "
        f"flag a hallucination is reported beside it. Agreement between graders is Cohen's {AGREEMENT[2]} for two "
        f"graders and {AGREEMENT[3]} for three or more, over the interpretations graded by more than one. "
        + (
            f"{_plural(from_image, 'grade')} {'was' if from_image == 1 else 'were'} given from an image's gallery detail, where the grader may have "
            "seen the models' answers and the truth before grading. "
            if from_image
            else ""
        )
        + f"Grades were given between {facts['first'][:10]} and {facts['last'][:10]} (UTC)."
    )
    return textwrap.fill(text, width=WIDTH)
