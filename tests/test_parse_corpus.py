"""The parser measured on real answers that nobody on this project wrote (tests/data/parser_corpus).

Every answer is verbatim from a public source (SOURCES.md says which, with commit, licence and selection);
its gold label was decided by reading it, before looking at what the parser says. Every miss is listed in a
warning (so it shows in a normal run) and in the assertion message.

Print the README table with ``python tests/test_parse_corpus.py``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import timeit
import warnings
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # (run as a script for the README table)
    sys.path.insert(0, str(ROOT))

from cache import parse_words  # noqa: E402
from cache.parse import ParsedAnswer, parse_answer  # noqa: E402
from cache.schema import LABELS  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "parser_corpus"
COMMITTED = ("real", "synthetic")
HELD_OUT = "pgt"  #: the source kept out of sight while the rules were tuned (SOURCES.md)
#: Figures reached by PARSER_VERSION 2; a rule change must not drop below them.
COMMITTED_FLOOR = 316 / 320
OVERALL_FLOOR = 325 / 342


def load() -> list[dict]:
    """The corpus rows, in file order."""
    with open(CORPUS / "answers.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def readings(rows: list[dict]) -> list[tuple[dict, ParsedAnswer]]:
    return [(row, parse_answer(row["text"])) for row in rows]


def tally(pairs: list[tuple[dict, ParsedAnswer]], key: str) -> dict[str, tuple[int, int]]:
    """key value (source or gold label) -> (answers, read right)."""
    seen, right = Counter(), Counter()
    for row, answer in pairs:
        seen[row[key]] += 1
        right[row[key]] += answer.label == row["label"]
    return {name: (seen[name], right[name]) for name in sorted(seen)}


def table(pairs: list[tuple[dict, ParsedAnswer]] | None = None) -> str:
    """The README table: accuracy per source and per gold label (n, correct, accuracy)."""
    pairs = readings(load()) if pairs is None else pairs
    lines = ["| by | value | n | correct | accuracy |", "|---|---|---:|---:|---:|"]
    for key in ("source", "label"):
        for name, (n, right) in tally(pairs, key).items():
            lines.append(f"| {key} | {name} | {n} | {right} | {right / n:.1%} |")
    committed = [(row, a) for row, a in pairs if row["label"] in COMMITTED]
    for name, part in (("committed (real + synthetic)", committed), ("all", pairs)):
        right = sum(a.label == row["label"] for row, a in part)
        lines.append(f"| total | {name} | {len(part)} | {right} | {right / len(part):.1%} |")
    return "\n".join(lines)


def misses(pairs: list[tuple[dict, ParsedAnswer]]) -> list[str]:
    return [
        f"{row['id']}: gold {row['label']}, got {a.label} ({a.rule}): {row['text'][:120]!r}"
        for row, a in pairs
        if a.label != row["label"]
    ]


@pytest.fixture(scope="module")
def pairs() -> list[tuple[dict, ParsedAnswer]]:
    return readings(load())


def test_corpus_is_real_answers_from_documented_sources() -> None:
    rows = load()
    sources = Counter(row["source"] for row in rows)
    assert len(rows) >= 300 and len(sources) >= 3
    assert len({row["id"] for row in rows}) == len(rows)
    assert len({row["text"] for row in rows}) == len(rows), "no duplicated answer"
    assert {row["label"] for row in rows} <= set(LABELS)
    assert all(set(row) <= {"id", "source", "text", "label", "question", "note"} for row in rows)
    documented = (CORPUS / "SOURCES.md").read_text(encoding="utf-8")
    for source in sources:  # every source has its own section: repository or URL, licence, selection
        assert f"## `{source}`" in documented, source


def test_corpus_accuracy(pairs: list[tuple[dict, ParsedAnswer]]) -> None:
    report = table(pairs)
    missed = misses(pairs)
    print(report, *missed, sep="\n")
    if missed:  # visible without -s: every miss, in the warnings summary
        warnings.warn(f"{len(missed)} corpus misses:\n" + "\n".join(missed), stacklevel=1)
    committed = [(row, a) for row, a in pairs if row["label"] in COMMITTED]
    committed_right = sum(a.label == row["label"] for row, a in committed) / len(committed)
    overall = sum(a.label == row["label"] for row, a in pairs) / len(pairs)
    message = f"{report}\nmisses:\n" + "\n".join(missed)
    assert committed_right >= COMMITTED_FLOOR - 1e-9, message
    assert overall >= OVERALL_FLOOR - 1e-9, message
    held_out = [(row, a) for row, a in pairs if row["source"] == HELD_OUT]
    assert all(a.label == row["label"] for row, a in held_out), message


@pytest.mark.xfail(
    strict=True,
    reason="98.75% (316/320): the 4 committed misses state their verdict only as a number on their own prompt's "
    "0-10 scale (or mislabel it: '2/10 (certainly fake)'), which parse_answer, blind to the prompt, cannot read",
)
def test_committed_verdicts_reach_the_target(pairs: list[tuple[dict, ParsedAnswer]]) -> None:
    committed = [(row, a) for row, a in pairs if row["label"] in COMMITTED]
    assert sum(a.label == row["label"] for row, a in committed) / len(committed) >= 0.99, misses(committed)


def test_provenance_on_every_answer(pairs: list[tuple[dict, ParsedAnswer]]) -> None:
    for row, answer in pairs:
        text, span = row["text"], answer.span
        assert answer.rule in ("json", "labelled_line", "opening", "prose", "none"), row["id"]
        assert answer.needs_review == (answer.label == "unparseable"), row["id"]
        if answer.rule == "none":
            assert span is None, row["id"]
            continue
        assert span is not None and 0 <= span[0] < span[1] <= len(text), row["id"]
        words = text[span[0] : span[1]]
        assert words == words.strip(), row["id"]
        if answer.label in COMMITTED and answer.rule != "json":  # the span holds the deciding verdict words
            assert (
                parse_words.TERM.search(words.lower().replace("\u2019", "'"))
                or "yes" in words.lower()
                or ("no" in words.lower().split())
            ), (row["id"], words)


def test_corpus_parse_speed() -> None:
    texts = [row["text"] for row in load()]
    times = [min(timeit.repeat(lambda t=t: parse_answer(t), number=5, repeat=3, timer=time.process_time)) / 5
             for t in texts]  # fmt: skip
    per_kb = statistics.median(t / len(text) * 1024 for t, text in zip(times, texts, strict=True))
    # Measured ~150-180 us per KB on this 2-core machine under load; the bound leaves room for a slow CI.
    assert per_kb < 1e-3, f"median {per_kb * 1e6:.0f} us per KB"


if __name__ == "__main__":
    print(table())
