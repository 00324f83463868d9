"""Store schema (version 1) and the cache key.

The schema only grows: a later version may add columns, never rename or retype one. Readers use
DuckDB's ``union_by_name`` so parts written under different versions read together.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 1
#: Bumped only when the meaning of a key changes; part of every key.
KEY_VERSION = 1

LABELS = ("real", "synthetic", "uncertain", "refused", "unparseable")
ANSWERED_LABELS = ("real", "synthetic")
TRUTHS = ("real", "synthetic")
STATUSES = ("ok", "error")

#: name -> (arrow type, description). Order is the column order of every part.
COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "key": (pa.string(), "sha256 of what changes the answer (see response_key)"),
    "schema_version": (pa.int32(), "store schema version of the row"),
    "run_id": (pa.string(), "id of the `ingest run` / `import` that wrote the row"),
    "created_at": (pa.timestamp("us", tz="UTC"), "when the row was written (UTC)"),
    "provider": (pa.string(), "openai | gemini | compat | baseline | import"),
    "model": (pa.string(), "model spec as given, e.g. openai:gpt-4o"),
    "model_version": (pa.string(), "model version the API reported"),
    "params_json": (pa.string(), "canonical JSON of the generation parameters"),
    "prompt_id": (pa.string(), "prompt file id, e.g. paper"),
    "prompt_sha256": (pa.string(), "sha256 of the prompt text"),
    "prompt_text": (pa.string(), "the prompt text sent"),
    "image_sha256": (pa.string(), "sha256 of the prepared image bytes actually sent"),
    "image_path": (pa.string(), "path of the image as given in the manifest"),
    "modality": (pa.string(), "e.g. fundus, chest_xray"),
    "truth": (pa.string(), "real | synthetic"),
    "source": (pa.string(), "dataset or generator name"),
    "repeat": (pa.int32(), "repeat index, 0-based"),
    "status": (pa.string(), "ok | error"),
    "error_type": (pa.string(), "class of failure for error rows"),
    "error_message": (pa.string(), "a message a person can act on"),
    "attempts": (pa.int32(), "calls made for this row, retries included"),
    "raw_text": (pa.string(), "the model's answer, verbatim"),
    "label": (pa.string(), "real | synthetic | uncertain | refused | unparseable"),
    "confidence": (pa.float64(), "model-stated confidence in [0, 1], if any"),
    "interpretation": (pa.string(), "the model's interpretation of the image"),
    "finish_reason": (pa.string(), "finish / block reason reported by the API"),
    "input_tokens": (pa.int64(), "prompt tokens billed"),
    "output_tokens": (pa.int64(), "completion tokens billed"),
    "cost_usd": (pa.float64(), "cost from the price table, if priced"),
    "latency_ms": (pa.float64(), "wall time of the successful (or last) call"),
}

ARROW_SCHEMA = pa.schema([pa.field(name, typ) for name, (typ, _doc) in COLUMNS.items()])


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def response_key(
    *,
    provider: str,
    model: str,
    params: dict[str, Any],
    prompt_text: str,
    image_sha256: str,
    repeat: int,
) -> str:
    """The cache key: sha256 of exactly what changes the answer.

    Never paths, timeouts or retry counts: moving the dataset or retrying must not cost a new call.
    """
    payload = {
        "key_version": KEY_VERSION,
        "provider": provider,
        "model": model,
        "params": params,
        "prompt_sha256": hashlib.sha256(prompt_text.encode("utf-8")).hexdigest(),
        "image_sha256": image_sha256,
        "repeat": int(repeat),
    }
    return hashlib.sha256(canonical_json(payload).encode("utf-8")).hexdigest()
