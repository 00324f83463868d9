"""Labels set by people and checked against a judge: reviewer readings and parser-vs-judge agreement.

A reviewer reads a stored answer and says what it says (real, synthetic, uncertain, refused); the
reading is appended to ``<store>/readings/`` with authority ``reviewer``, never replacing the
answer, and outranks the judge's and the parser's readings in the ``results`` view (cache.views).
``judge_agreement`` compares the parser's label with a judge model's (``task = 'judge'`` rows) per
model: percent agreement and Cohen's kappa over the five labels (cache.metrics.kappa_from_counts).
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import duckdb

from cache.metrics import Filters, kappa_from_counts
from cache.store import utcnow

#: the labels a reviewer can give (unparseable is a parser's verdict about text, not a reading)
REVIEW_LABELS = ("real", "synthetic", "uncertain", "refused")
NAME_MAX = 64


def check_person_name(name: object) -> str:
    """A reviewer's, grader's or reader's name as it will be stored: stripped, 1..64 printable
    characters. Raises ValueError saying what is wrong (the text is user input)."""
    if not isinstance(name, str):
        raise ValueError("the name must be text")
    text = " ".join(name.split())  # one line, single spaces
    if not text:
        raise ValueError("give a name (it is stored with every label you set)")
    if len(text) > NAME_MAX:
        raise ValueError(f"the name is {len(text)} characters long; at most {NAME_MAX}")
    if not text.isprintable():
        raise ValueError("the name contains characters that cannot be printed")
    return text


def raw_sha256(raw_text: str | None) -> str:
    """sha256 of the answer text read (so a reading says exactly which text it judged)."""
    return hashlib.sha256((raw_text or "").encode("utf-8")).hexdigest()


def reviewer_reading(
    *,
    key: str,
    raw_text: str | None,
    label: str,
    reviewer: str,
    note: str = "",
    session_id: str | None = None,
) -> dict[str, Any]:
    """One ``readings`` row: a reviewer's label for the response ``key`` (validated)."""
    if label not in REVIEW_LABELS:
        raise ValueError(f"label {label!r} is not one of {', '.join(REVIEW_LABELS)}")
    note = (note or "").strip()
    if len(note) > 2000:
        raise ValueError("the note is longer than 2,000 characters")
    return {
        "reading_id": uuid.uuid4().hex,
        "key": key,
        "created_at": utcnow(),
        "authority": "reviewer",
        "label": label,
        "rule": "reviewer",
        "needs_review": False,
        "made_by": check_person_name(reviewer),
        "note": note or None,
        "run_id": session_id,
        "raw_sha256": raw_sha256(raw_text),
    }


AGREEMENT_SQL = """
SELECT model, judge_model, parser_label, judge_label, count(*) AS n
FROM results WHERE judge_label IS NOT NULL {extra}
GROUP BY ALL ORDER BY ALL
"""


def agreement_rows(counts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, judge_model): answers judged, agreements, percent agreement, Cohen's kappa and
    disagreements, from counts of (parser_label, judge_label) pairs."""
    groups: dict[tuple[str, str], dict[tuple[str, str], int]] = {}
    for c in counts:
        pairs = groups.setdefault((str(c["model"]), str(c["judge_model"])), {})
        pair = (str(c["parser_label"]), str(c["judge_label"]))
        pairs[pair] = pairs.get(pair, 0) + int(c["n"])
    out = []
    for (model, judge), pairs in sorted(groups.items()):
        judged = sum(pairs.values())
        agree = sum(n for (a, b), n in pairs.items() if a == b)
        out.append(
            {
                "model": model,
                "judge_model": judge,
                "judged": judged,
                "agree": agree,
                "agreement": agree / judged if judged else None,
                "kappa": kappa_from_counts(pairs),
                "disagreements": judged - agree,
            }
        )
    return out


def judge_agreement(con: duckdb.DuckDBPyConnection, filters: Filters | None = None) -> list[dict[str, Any]]:
    """Parser vs judge per model over the current answers a judge read (see :func:`agreement_rows`)."""
    extra, params = (filters or Filters()).clause()
    cur = con.execute(AGREEMENT_SQL.format(extra=extra), params)
    names = [d[0] for d in cur.description]
    return agreement_rows([dict(zip(names, r, strict=True)) for r in cur.fetchall()])
