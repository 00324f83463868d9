"""Grades on the dashboard fixture store, and the hand-made reader study as a real store.

Grades (``add_grades``), on tests/dashboard_fixture.py's answers; (image, prompt) -> grader ->
(correctness, specificity, hallucinated findings):

- model A, fundus: three graders on r1 (paper), r2, r3; two on r1 (prompt brief). ann graded r1
  (paper) twice: the later grade counts. bob's r1 (brief) grade came from the one-image queue.
- model B, fundus: two graders (ann, bob) on r1, r2, r3, s1.
- model A, chest: ann alone on r1.

The hand computations in tests/test_grading.py use these tables. ``write_reader_store`` turns
tests/readers_fixture.py into a store: latency 2, 4, 6, 8 s in turn per reader, and a two-case
training block (task reader_training) for ann and bob.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from cache.schema import COLUMNS
from cache.store import Store
from tests.dashboard_fixture import MODEL_A, MODEL_B, FixtureStore
from tests.readers_fixture import study_frame

GRADES: dict[tuple[str, str, str, str], dict[str, tuple[int, int, int]]] = {
    (MODEL_A, "fundus", "r1", "paper"): {"ann": (4, 3, 0), "bob": (5, 4, 0), "cat": (4, 3, 0)},
    (MODEL_A, "fundus", "r1", "brief"): {"ann": (2, 3, 0), "bob": (3, 3, 1)},
    (MODEL_A, "fundus", "r2", "paper"): {"ann": (5, 4, 0), "bob": (4, 4, 0), "cat": (5, 5, 0)},
    (MODEL_A, "fundus", "r3", "paper"): {"ann": (1, 1, 0), "bob": (2, 1, 0), "cat": (2, 2, 2)},
    (MODEL_B, "fundus", "r1", "paper"): {"ann": (4, 5, 0), "bob": (4, 5, 0)},
    (MODEL_B, "fundus", "r2", "paper"): {"ann": (4, 4, 0), "bob": (3, 4, 0)},
    (MODEL_B, "fundus", "r3", "paper"): {"ann": (3, 4, 0), "bob": (3, 5, 0)},
    (MODEL_B, "fundus", "s1", "paper"): {"ann": (3, 3, 0), "bob": (2, 2, 0)},
    (MODEL_A, "chest_xray", "r1", "paper"): {"ann": (3, 2, 0)},
}
SUPERSEDED = ((MODEL_A, "fundus", "r1", "paper"), "ann", (1, 1, 0))  # given first, replaced later
FROM_IMAGE = ((MODEL_A, "fundus", "r1", "brief"), "bob")
GRADE_TIME = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
READER_TIME = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def answer_key(fx: FixtureStore, model: str, modality: str, image_id: str, prompt: str) -> str:
    sha = fx.sha(modality, image_id)
    (key,) = {
        r["key"]
        for r in fx.rows
        if r["model"] == model
        and r["image_sha256"] == sha
        and r["prompt_id"] == prompt
        and r["status"] == "ok"
    }
    return key


def _grade(
    key: str, grader: str, grades: tuple[int, int, int], minutes: int, origin: str = "queue"
) -> dict[str, Any]:
    correctness, specificity, count = grades
    return {
        "grade_id": hashlib.sha256(f"{key}{grader}{minutes}".encode()).hexdigest()[:32],
        "key": key,
        "created_at": GRADE_TIME + timedelta(minutes=minutes),
        "grader": grader,
        "correctness": correctness,
        "specificity": specificity,
        "hallucinated": count > 0,
        "hallucination_count": count,
        "note": None,
        "session_id": f"{origin}-{grader}",
    }


def add_grades(fx: FixtureStore) -> list[dict[str, Any]]:
    """Append the grades above to the fixture store (two parts); returns the rows."""
    (item, grader, first) = SUPERSEDED
    rows = [_grade(answer_key(fx, *item), grader, first, 0)]
    later = []
    for minutes, (item, by_grader) in enumerate(GRADES.items(), start=1):
        for name, grades in by_grader.items():
            origin = "image" if (item, name) == FROM_IMAGE else "queue"
            later.append(_grade(answer_key(fx, *item), name, grades, 10 + minutes, origin))
    store = Store(fx.root)
    store.append(rows, "grades")
    store.append(later, "grades")
    return rows + later


def reader_rows() -> list[dict[str, Any]]:
    """tests/readers_fixture.py's study as response rows of the store schema (scored and training)."""
    rows = []
    per_reader: dict[str, int] = {}
    for i, record in enumerate(study_frame().to_dict("records")):
        row = {k: (None if not isinstance(v, str) and pd.isna(v) else v) for k, v in record.items()}
        reader = row["provider"] == "reader"
        turn = per_reader.get(row["model"], 0)
        per_reader[row["model"]] = turn + 1
        row |= {
            "key": hashlib.sha256(f"row{i}".encode()).hexdigest(),
            "run_id": "study",
            "status": "ok",
            "created_at": READER_TIME + timedelta(minutes=i),
            "image_path": f"{row['image_sha256']}.png",
            "prompt_text": f"prompt {row['prompt_id']}",
            "params_json": "{}",
            "prompt_sha256": hashlib.sha256(f"prompt {row['prompt_id']}".encode()).hexdigest(),
            "latency_ms": 2000.0 * (1 + turn % 4) if reader else 900.0,
            "rating": None if row["rating"] is None else int(row["rating"]),
            "label_rule": "reader" if reader else None,
        }
        rows.append(row)
    for j, (reader, image, truth) in enumerate(
        [
            (r, img, t)
            for r in ("reader:ann", "reader:bob")
            for img, t in (("t1", "real"), ("t2", "synthetic"))
        ]
    ):
        rows.append(
            {
                "key": hashlib.sha256(f"training{j}".encode()).hexdigest(),
                "run_id": "study",
                "status": "ok",
                "created_at": READER_TIME - timedelta(minutes=10 - j),
                "provider": "reader",
                "model": reader,
                "prompt_id": "unaided",
                "prompt_text": "prompt unaided",
                "image_sha256": image,
                "prompt_sha256": hashlib.sha256(b"prompt unaided").hexdigest(),
                "image_path": f"{image}.png",
                "modality": "fundus",
                "truth": truth,
                "label": "real",
                "rating": 2,
                "latency_ms": 5000.0,
                "task": "reader_training",
                "repeat": 0,
                "label_rule": "reader",
            }
        )
    return [{k: v for k, v in row.items() if k in COLUMNS} for row in rows]


def write_reader_store(root: Path) -> Store:
    store = Store(root)
    store.append(reader_rows())
    return store
