"""`ingest import`: answers collected by hand from chat interfaces, parsed like any other answer.

Input: CSV with a header, or JSONL; fields ``image_path`` (as in the manifest) or ``image_sha256``,
``response`` (the answer text), optional ``model_version`` and ``created_at`` (ISO 8601). The whole
file is validated before anything is written, so a bad line leaves the store untouched.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cache.parse import parse_answer, reading_columns
from cache.schema import canonical_json, response_key
from cache.store import Store, utcnow
from cache.untrusted import MiB, read_capped
from ingest.prompts import Prompt

ANSWERS_MAX_BYTES = 1024 * MiB


class ImportFileError(ValueError):
    """A malformed answers file (exit code 2); the message names the file, line and fix."""


@dataclass(frozen=True)
class Answer:
    line: int
    image_path: str | None
    image_sha256: str | None
    response: str
    model_version: str | None
    created_at: datetime | None


def read_answers(path: Path) -> list[Answer]:
    if not path.exists():
        raise ImportFileError(f"{path}: file not found")
    try:  # a FIFO or a huge file is refused before anything is read
        text = read_capped(path, ANSWERS_MAX_BYTES).decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportFileError(f"{path}: cannot be read as UTF-8 CSV or JSONL ({exc})") from None
    records: list[tuple[int, dict[str, Any]]] = []
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        # split on "\n" only: str.splitlines() also breaks at U+2028 and friends inside JSON strings
        for number, line in enumerate(text.split("\n"), start=1):
            if line.strip():
                try:
                    records.append((number, json.loads(line)))
                except json.JSONDecodeError as exc:
                    raise ImportFileError(f"{path}, line {number}: not valid JSON ({exc.msg})") from exc
    else:
        reader = csv.DictReader(text.splitlines(keepends=True))
        if not reader.fieldnames or "response" not in reader.fieldnames:
            raise ImportFileError(
                f"{path}, line 1: the header needs a 'response' column and 'image_path' or "
                f"'image_sha256'; found {reader.fieldnames}"
            )
        records = [(reader.line_num, row) for row in reader]
    return [_answer(path, number, record) for number, record in records]


def _answer(path: Path, number: int, record: dict[str, Any]) -> Answer:
    where = f"{path}, line {number}"
    if not isinstance(record, dict):
        raise ImportFileError(f"{where}: expected an object with 'response' and 'image_path'")
    image_path = (record.get("image_path") or "").strip() or None
    image_sha = (record.get("image_sha256") or "").strip().lower() or None
    if not image_path and not image_sha:
        raise ImportFileError(f"{where}: give 'image_path' (as in the manifest) or 'image_sha256'")
    response = record.get("response")
    if response is None or not str(response).strip():
        raise ImportFileError(f"{where}, column 'response': empty; paste the model's answer text")
    created = record.get("created_at") or None
    created_at = None
    if created:
        try:
            created_at = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        except ValueError as exc:
            raise ImportFileError(
                f"{where}, column 'created_at': {created!r} is not ISO 8601 (e.g. 2024-05-01T12:00:00Z)"
            ) from exc
        if created_at.tzinfo is None:
            created_at = created_at.replace(tzinfo=UTC)
    return Answer(number, image_path, image_sha, str(response),
                  (record.get("model_version") or None), created_at)


def build_import_rows(
    answers: list[Answer], path: Path, items: list[Any], model: str, prompt: Prompt
) -> list[dict[str, Any]]:
    """Match answers to manifest items (by path or sha) and build store rows; validate all first."""
    by_path = {i.row.image_path: i for i in items}
    by_sha = {i.sha256: i for i in items if i.sha256}
    run_id = "import-" + utcnow().strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    occurrences: Counter[tuple[str, str]] = Counter()
    rows = []
    for answer in answers:
        item = by_path.get(answer.image_path or "") or by_sha.get(answer.image_sha256 or "")
        if item is None or item.sha256 is None:
            what = answer.image_path or answer.image_sha256
            reason = "is not in the manifest" if item is None else f"cannot be read ({item.error})"
            raise ImportFileError(f"{path}, line {answer.line}: image {what!r} {reason}")
        # The n-th answer for the same image is repeat n: importing a file twice adds nothing.
        repeat = occurrences[(item.sha256, model)]
        occurrences[(item.sha256, model)] += 1
        parsed = parse_answer(answer.response)
        rows.append({
            "key": response_key(provider="import", model=model, params={}, prompt_text=prompt.text,
                                image_sha256=item.sha256, repeat=repeat),
            "run_id": run_id, "created_at": answer.created_at or utcnow(), "provider": "import",
            "model": model, "model_version": answer.model_version, "params_json": canonical_json({}),
            "prompt_id": prompt.id, "prompt_sha256": prompt.sha256, "prompt_text": prompt.text,
            "image_sha256": item.sha256, "image_path": item.row.image_path,
            "modality": item.row.modality, "truth": item.row.truth, "source": item.row.source,
            "repeat": repeat, "task": "detect", "status": "ok", "attempts": 0, "raw_text": answer.response,
            **reading_columns(parsed),
        })
    return rows


def import_answers(store: Store, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """Append the rows whose key is not already ``ok`` in the store; (added, already present)."""
    done = store.done_keys()
    new = [r for r in rows if r["key"] not in done]
    store.append(new)
    return len(new), len(rows) - len(new)
