"""The dashboard fixture store (tests/dashboard_fixture.py) plus what the review page works on.

On top of the base store (whose tables and counts stay as they are), one more part ``run-r`` re-reads
five answers (later ok rows of the same keys, as a newer ingest would write them) and a judge model
reads five answers; one answer already has a reviewer's label:

=====================  ==========  ===================  ===========  ============  =================
answer                  truth       parser label (rule)  needs_review judge         in the queue
=====================  ==========  ===================  ===========  ============  =================
A fundus r5            real        uncertain (prose)    yes          -             yes (undecided)
A fundus s6            synthetic   unparseable (none)   yes          -             yes (undecided)
B chest r1 (injection) real        real (labelled_line) yes          -             yes (undecided)
B chest r5             real        synthetic (l._line)  no           real          yes (disagree)
A chest s6             synthetic   real (paper)         no           synthetic     yes (disagree)
B fundus s6            synthetic   uncertain (prose)    yes          -             no (reviewed)
A fundus r1 / s1       real / syn  real / synthetic     no           same          no
B chest s1             synthetic   synthetic            no           synthetic     no
=====================  ==========  ===================  ===========  ============  =================

Parser vs judge (openai:gpt-4o-mini): model A 3 judged, 2 agree, kappa 0.4 (observed 2/3, expected
4/9); model B 2 judged, 1 agrees, kappa 0.0 (observed 1/2, expected 1/2).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

from cache.store import Store
from tests.dashboard_fixture import BASE_TIME, INJECTION, MODEL_A, MODEL_B, FixtureStore, build_fixture_store

JUDGE = "openai:gpt-4o-mini"
REVIEWER = "Dr Rev"
#: (model, modality, image id) -> (raw_text, label, rule, span or None, needs_review)
REREAD: dict[tuple[str, str, str], tuple[str, str, str, tuple[int, int] | None, bool]] = {
    (MODEL_A, "fundus", "r5"): (
        "Real or synthetic? Hard to say: the vessels look natural but the disc is oddly smooth.",
        "uncertain",
        "prose",
        None,
        True,
    ),
    (MODEL_A, "fundus", "s6"): (
        "The image shows a retina with a visible optic disc.",
        "unparseable",
        "none",
        None,
        True,
    ),
    (MODEL_B, "chest_xray", "r1"): (
        f"Answer: real\nInterpretation: {INJECTION}",
        "real",
        "labelled_line",
        (0, 12),
        True,
    ),
    (MODEL_B, "chest_xray", "r5"): (
        "Verdict: synthetic. The rib spacing looks like a real radiograph though.",
        "synthetic",
        "labelled_line",
        (0, 18),
        False,
    ),
    (MODEL_B, "fundus", "s6"): (
        "It might be synthetic, or a real photograph; I cannot decide.",
        "uncertain",
        "prose",
        None,
        True,
    ),
}
#: (model, modality, image id) -> the judge's label
JUDGED = {
    (MODEL_A, "fundus", "r1"): "real",
    (MODEL_A, "fundus", "s1"): "synthetic",
    (MODEL_A, "chest_xray", "s6"): "synthetic",
    (MODEL_B, "chest_xray", "s1"): "synthetic",
    (MODEL_B, "chest_xray", "r5"): "real",
}
#: the queue in the page's order (model, modality, image path)
QUEUE = [
    (MODEL_B, "chest_xray", "r1"),
    (MODEL_B, "chest_xray", "r5"),
    (MODEL_A, "chest_xray", "s6"),
    (MODEL_A, "fundus", "r5"),
    (MODEL_A, "fundus", "s6"),
]


def latest_ok(fx: FixtureStore, model: str, modality: str, image_id: str) -> dict[str, Any]:
    sha = fx.sha(modality, image_id)
    rows = [
        r
        for r in fx.rows
        if r["model"] == model
        and r["image_sha256"] == sha
        and r["status"] == "ok"
        and r["prompt_id"] == "paper"
    ]
    return max(rows, key=lambda r: r["created_at"])


def build_review_store(root: Path) -> FixtureStore:
    """The base fixture, then the re-read answers, the judge's answers and one reviewer reading."""
    fx = build_fixture_store(root)
    store = Store(fx.root)
    later = BASE_TIME + timedelta(hours=3)
    reread = []
    for (model, modality, image_id), (text, label, rule, span, review) in REREAD.items():
        row = latest_ok(fx, model, modality, image_id) | {
            "run_id": "run-r",
            "created_at": later,
            "raw_text": text,
            "label": label,
            "label_rule": rule,
            "label_span_start": span[0] if span else None,
            "label_span_end": span[1] if span else None,
            "needs_review": review,
            "parser_version": "fixture-1",
            "task": "detect",
        }
        reread.append(row)
    judged = []
    for index, ((model, modality, image_id), label) in enumerate(JUDGED.items()):
        target = latest_ok(fx, model, modality, image_id)["key"]
        judged.append(
            {
                "key": hashlib.sha256(f"judge/{target}".encode()).hexdigest(),
                "run_id": "run-j",
                "created_at": later + timedelta(minutes=10 + index),
                "provider": "openai",
                "model": JUDGE,
                "params_json": "{}",
                "prompt_id": "judge-v1",
                "prompt_text": "Read the answer; give its label.",
                "status": "ok",
                "task": "judge",
                "target_key": target,
                "raw_text": f'{{"label": "{label}"}}',
                "label": label,
                "label_rule": "json",
                "attempts": 1,
                "repeat": 0,
            }
        )
    store.append(reread)
    store.append(judged)
    reviewed = latest_ok(fx, MODEL_B, "fundus", "s6")["key"]
    store.append(
        [
            {
                "reading_id": "r-0",
                "key": reviewed,
                "created_at": later + timedelta(hours=1),
                "authority": "reviewer",
                "label": "uncertain",
                "rule": "reviewer",
                "needs_review": False,
                "made_by": REVIEWER,
                "note": "hedges both ways",
                "raw_sha256": "0" * 64,
            }
        ],
        "readings",
    )
    fx.rows.extend(reread + judged)
    return fx


def queue_keys(fx: FixtureStore) -> list[str]:
    """The keys of QUEUE."""
    return [latest_ok(fx, *item)["key"] for item in QUEUE]
