"""``python -m cache reparse``: re-read every stored answer with the current parser, calling no model.

A stored answer is a fact and is never rewritten; its reading can change. This reads the latest
``ok`` answer of every key (the ``answers`` view) whose label came from the parser (not from a
local detector or a human reader), parses its ``raw_text`` again with ``cache.parse`` and, where
the reading differs from the current parser reading (label, confidence, rule, span or
needs_review), appends a reading (authority ``parser``, this parser's version) to
``<store>/readings/``. The ``results`` view then uses it (unless a judge or a reviewer outranks
it). Answers whose reading is unchanged add nothing, so running it twice changes nothing.

Work goes in DuckDB-sized batches (Arrow record batches streamed from one query), parsed in a
process pool (the parser is pure Python; one process per core), one readings part per batch.

Schema v1 stored no refusal text: a v1 row labelled ``refused`` with empty text is re-read as a
refusal (the fact that the API refused is what the label recorded), not as an empty answer.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from cache.parse import PARSER_VERSION, parse_answer
from cache.schema import SCHEMA_VERSION, V1_LOCAL_PROVIDERS, arrow_schema
from cache.store import Store, utcnow

BATCH_ROWS = 100_000
_V1_LOCAL = ", ".join(f"'{p}'" for p in V1_LOCAL_PROVIDERS)
CANDIDATES_SQL = f"""
SELECT a.key, a.raw_text, a.finish_reason, a.created_at,
       CASE WHEN p.parser IS NOT NULL AND p.parser.created_at >= a.created_at
            THEN p.parser.label ELSE a.label END AS label,
       CASE WHEN p.parser IS NOT NULL AND p.parser.created_at >= a.created_at
            THEN p.parser.confidence ELSE a.confidence END AS confidence,
       CASE WHEN p.parser IS NOT NULL AND p.parser.created_at >= a.created_at
            THEN p.parser.rule ELSE a.label_rule END AS rule,
       CASE WHEN p.parser IS NOT NULL AND p.parser.created_at >= a.created_at
            THEN p.parser.span_start ELSE a.label_span_start END AS span_start,
       CASE WHEN p.parser IS NOT NULL AND p.parser.created_at >= a.created_at
            THEN p.parser.span_end ELSE a.label_span_end END AS span_end,
       CASE WHEN p.parser IS NOT NULL AND p.parser.created_at >= a.created_at
            THEN p.parser.needs_review ELSE coalesce(a.needs_review, false) END AS needs_review,
       a.label AS stored_label
FROM answers a LEFT JOIN _readings p USING (key)
WHERE NOT (coalesce(a.label_rule, '') IN ('provider', 'reader')
           OR (a.label_rule IS NULL AND a.provider IN ({_V1_LOCAL})))
"""
_FIELDS = ("label", "confidence", "rule", "span_start", "span_end", "needs_review")


@dataclass
class ReparseResult:
    """What one reparse did (also written as ``runs/<run_id>.json``)."""

    run_id: str
    parser_version: str
    answers: int = 0  #: answers re-read
    changed: int = 0  #: readings written (the reading differs from the current parser reading)
    transitions: Counter[tuple[str, str]] = field(default_factory=Counter)  #: label old -> new
    dry_run: bool = False

    def record(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "command": "cache reparse", "parser_version": self.parser_version,
                "answers": self.answers, "readings_written": 0 if self.dry_run else self.changed,
                "changed": self.changed, "dry_run": self.dry_run,
                "label_changes": {f"{a} -> {b}": n for (a, b), n in sorted(self.transitions.items())}}


def read_one(text: str | None, finish_reason: str | None, stored_label: str | None) -> tuple[Any, ...]:
    """(label, confidence, rule, span_start, span_end, needs_review) of one stored answer."""
    refusal = None
    if stored_label == "refused" and not (text or "").strip():
        refusal = "refused (the refusal text was not stored)"  # schema v1 kept the label, not the sentence
    parsed = parse_answer(text, finish_reason, refusal)
    start, end = parsed.span if parsed.span is not None else (None, None)
    return parsed.label, parsed.confidence, parsed.rule, start, end, parsed.needs_review


def _read_chunk(rows: list[tuple[str | None, str | None, str | None]]) -> list[tuple[Any, ...]]:
    return [read_one(*row) for row in rows]


def _same(old: tuple[Any, ...], new: tuple[Any, ...]) -> bool:
    conf_old, conf_new = old[1], new[1]
    close = (conf_old is None) == (conf_new is None) and (conf_old is None or abs(conf_old - conf_new) < 1e-9)
    return close and old[0] == new[0] and tuple(old[2:]) == tuple(new[2:])


def _batches(store: Store, rows_per_batch: int) -> tuple[int, Iterator[pa.Table]]:
    """The number of candidates and the candidates in tables of about ``rows_per_batch`` rows
    (DuckDB streams smaller record batches; they are gathered so each part is one batch)."""
    con = store.connect()
    total = con.execute(f"SELECT count(*) FROM ({CANDIDATES_SQL})").fetchall()[0][0]

    def gather() -> Iterator[pa.Table]:
        pending: list[pa.RecordBatch] = []
        for batch in con.sql(CANDIDATES_SQL).to_arrow_reader(rows_per_batch):
            pending.append(batch)
            if sum(b.num_rows for b in pending) >= rows_per_batch:
                yield pa.Table.from_batches(pending)
                pending = []
        if pending:
            yield pa.Table.from_batches(pending)

    return total, gather()


def reparse(store: Store, *, dry_run: bool = False, rows_per_batch: int = BATCH_ROWS,
            workers: int | None = None, progress: bool = True) -> ReparseResult:
    """Re-read every parser-labelled answer of ``store``; append changed readings; see the module."""
    from tqdm import tqdm

    result = ReparseResult(run_id="reparse-" + utcnow().strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6],
                           parser_version=PARSER_VERSION, dry_run=dry_run)
    workers = workers or min(4, os.cpu_count() or 1)
    # Workers start from a fresh interpreter (forkserver), not a fork of this process with its
    # DuckDB buffers: forked children showed the parent's 1.3 GB as their own RSS.
    pool: Executor | None = None
    if workers > 1:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver"))
    total, batches = _batches(store, rows_per_batch)
    if pool is not None and total < 20_000:  # not worth the start-up
        pool.shutdown()
        pool = None
    bar = tqdm(total=total, desc="re-reading answers", unit="answer", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for batch in batches:
            columns = batch.to_pydict()
            readings = _read_batch(columns, pool, workers)
            changed = [i for i, new in enumerate(readings)
                       if not _same(tuple(columns[f][i] for f in _FIELDS), new)]
            for i in changed:
                result.transitions[(columns["label"][i], readings[i][0])] += 1
            result.answers += batch.num_rows
            result.changed += len(changed)
            if changed and not dry_run:
                store.write_part(_readings_table(columns, readings, changed, result.run_id), "readings")
            bar.update(batch.num_rows)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    if not dry_run:
        store.write_run(result.run_id, result.record() | {"finished_at": utcnow().isoformat()})
    return result


def _read_batch(columns: dict[str, list[Any]], pool: Executor | None, workers: int) -> list[tuple[Any, ...]]:
    rows = list(zip(columns["raw_text"], columns["finish_reason"], columns["stored_label"], strict=True))
    unique = list(dict.fromkeys(rows))  # identical answers (refusals, one-word verdicts) are read once
    if pool is None:
        read = _read_chunk(unique)
    else:
        size = -(-len(unique) // (workers * 4))  # a few chunks per worker keeps every core busy to the end
        chunks = [unique[i : i + size] for i in range(0, len(unique), size)]
        read = [reading for part in pool.map(_read_chunk, chunks) for reading in part]
    found = dict(zip(unique, read, strict=True))
    return [found[row] for row in rows]


def _readings_table(columns: dict[str, list[Any]], readings: list[tuple[Any, ...]], changed: list[int],
                    run_id: str) -> pa.Table:
    now = utcnow()
    picked = [readings[i] for i in changed]
    texts = [columns["raw_text"][i] for i in changed]
    data = {
        "reading_id": [uuid.uuid4().hex for _ in changed],
        "schema_version": [SCHEMA_VERSION] * len(changed),
        "key": [columns["key"][i] for i in changed],
        "created_at": [now] * len(changed),
        "authority": ["parser"] * len(changed),
        "parser_version": [PARSER_VERSION] * len(changed),
        "made_by": [f"parser-{PARSER_VERSION}"] * len(changed),
        "run_id": [run_id] * len(changed),
        "raw_sha256": [hashlib.sha256((t or "").encode("utf-8")).hexdigest() for t in texts],
        "note": [None] * len(changed),
    }
    for index, name in enumerate(_FIELDS):
        data[name] = [r[index] for r in picked]
    schema = arrow_schema("readings")
    return pa.Table.from_pydict({name: data[name] for name in schema.names}, schema=schema)


def format_result(result: ReparseResult) -> str:
    """The summary a person reads after a reparse."""
    verb = "would write" if result.dry_run else "wrote"
    lines = [f"re-read {result.answers:,} stored answer(s) with parser {result.parser_version}; {verb} "
             f"{result.changed:,} new reading(s) (no model was called)"]
    moves = [(a, b, n) for (a, b), n in result.transitions.items() if a != b]
    if moves:
        lines.append("label changes: " + ", ".join(f"{a} -> {b}: {n:,}" for a, b, n in
                                                   sorted(moves, key=lambda m: -m[2])))
    same = sum(n for (a, b), n in result.transitions.items() if a == b)
    if same:
        lines.append(f"{same:,} reading(s) keep their label (rule, span or confidence changed)")
    return "\n".join(lines)
