"""Store schema (version 2) and the cache key: the one declaration of tables, columns and vocabularies.

The schema only grows: a later version may add columns or tables, never rename or retype one. The
views (``cache.views``) are built over the columns declared here, so a column that an older part
lacks reads as NULL (``SCHEMA_HISTORY`` lists what each version added; the README's schema table is
checked against ``TABLES`` by a test).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 2
#: version -> what it added. Stores written by any listed version are read by this one.
SCHEMA_HISTORY: dict[int, str] = {
    1: "first release: the responses table",
    2: "responses gain task, target_key, label_rule, label_span_start, label_span_end, parser_version, "
       "needs_review, rating, batch_id, queued_ms; new tables readings and grades",
}
#: Bumped only when the meaning of a key changes; part of every key.
KEY_VERSION = 1

LABELS = ("real", "synthetic", "uncertain", "refused", "unparseable")
ANSWERED_LABELS = ("real", "synthetic")
TRUTHS = ("real", "synthetic")
STATUSES = ("ok", "error")

#: What a response row answers. NULL (schema v1 rows) reads as ``detect``.
TASKS: dict[str, str] = {
    "detect": "the study question: is this image real or synthetic, and what does it show",
    "judge": "a judge model reading another answer's text into a label (never sees the image)",
    "reader_training": "a human reader's answer in the training block (truth shown after; never scored)",
}
DEFAULT_TASK = "detect"

#: How a label was decided: the rule of the parser (the first seven, ``PARSER_RULES``), or who set it.
LABEL_RULES: dict[str, str] = {
    "refusal": "the API returned a refusal, or a safety/content filter stopped the answer",
    "empty": "the answer had no text and no block reason",
    "json": "a JSON object in the answer states the label",
    "labelled_line": "a labelled line (\"Answer: Real\", \"**Classification:** Synthetic\")",
    "opening": "the answer opens with a verdict word",
    "prose": "the verdict was read from the prose, clause by clause",
    "none": "no verdict was found in the text",
    "provider": "a local detector decided the label itself",
    "reader": "a human reader pressed Real or Synthetic",
    "judge": "a judge model read the answer",
    "reviewer": "a person reviewed the answer and set the label",
}
PARSER_RULES = tuple(LABEL_RULES)[:7]
#: Who may set the label a metric uses, lowest authority first (the highest present wins; then the newest).
AUTHORITIES = ("parser", "judge", "reviewer")
#: Human readers' answers are responses of this provider, model ``reader:<name>`` (reader study).
READER_PROVIDER = "reader"
READER_PREFIX = READER_PROVIDER + ":"
#: Schema v1 rows have no label_rule; these providers decided their labels locally (never re-parsed).
V1_LOCAL_PROVIDERS = ("baseline",)

#: responses: name -> (arrow type, description). Order is the column order of every part.
RESPONSE_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
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
    # -- schema version 2 --
    "task": (pa.string(), "detect | judge | reader_training (NULL: detect)"),
    "target_key": (pa.string(), "judge rows: the key of the response judged"),
    "label_rule": (pa.string(), "how label was decided (see LABEL_RULES)"),
    "label_span_start": (pa.int32(), "start offset in raw_text of the span that decided the label"),
    "label_span_end": (pa.int32(), "end offset (exclusive) of that span"),
    "parser_version": (pa.string(), "version of the parser that read raw_text"),
    "needs_review": (pa.bool_(), "the parser found conflicting verdicts, or none in a non-empty answer"),
    "rating": (pa.int32(), "a reader's rating, 1 = definitely real ... 5 = definitely synthetic"),
    "batch_id": (pa.string(), "provider batch that answered the call, if it went through a batch API"),
    "queued_ms": (pa.float64(), "time from batch submission to the result, for batch calls"),
}
COLUMNS = RESPONSE_COLUMNS  # the responses table is "the store" for most code

#: readings: later readings of a response (a reparse by a newer parser, a reviewer's label).
READING_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "reading_id": (pa.string(), "unique id of the reading"),
    "schema_version": (pa.int32(), "store schema version of the row"),
    "key": (pa.string(), "key of the response read"),
    "created_at": (pa.timestamp("us", tz="UTC"), "when the reading was made (UTC)"),
    "authority": (pa.string(), "parser | reviewer (judge readings are task='judge' responses)"),
    "label": (pa.string(), "real | synthetic | uncertain | refused | unparseable"),
    "confidence": (pa.float64(), "stated confidence read from the answer, if any"),
    "rule": (pa.string(), "how the label was decided (see LABEL_RULES)"),
    "span_start": (pa.int32(), "start offset in raw_text of the deciding span"),
    "span_end": (pa.int32(), "end offset (exclusive) of the deciding span"),
    "parser_version": (pa.string(), "parser version (parser readings)"),
    "needs_review": (pa.bool_(), "the rules were undecided: a person should look"),
    "made_by": (pa.string(), "parser-<version>, or the reviewer's name"),
    "note": (pa.string(), "the reviewer's note"),
    "run_id": (pa.string(), "the reparse run or review session that wrote the reading"),
    "raw_sha256": (pa.string(), "sha256 of the raw_text that was read"),
}

#: grades: a grader's ratings of one interpretation (blinded to model and truth).
GRADE_COLUMNS: dict[str, tuple[pa.DataType, str]] = {
    "grade_id": (pa.string(), "unique id of the grade"),
    "schema_version": (pa.int32(), "store schema version of the row"),
    "key": (pa.string(), "key of the response whose interpretation was graded"),
    "created_at": (pa.timestamp("us", tz="UTC"), "when the grade was given (UTC)"),
    "grader": (pa.string(), "the grader's name"),
    "correctness": (pa.int32(), "1-5: how correct the interpretation is"),
    "specificity": (pa.int32(), "1-5: 1 fits any image of the modality, 5 names findings unique to this image"),
    "hallucinated": (pa.bool_(), "the interpretation names findings that are not there"),
    "hallucination_count": (pa.int32(), "how many hallucinated findings"),
    "note": (pa.string(), "the grader's note"),
    "session_id": (pa.string(), "the grading session"),
}

#: table name -> columns; each table lives in <store>/<name>/part-*.parquet
TABLES: dict[str, dict[str, tuple[pa.DataType, str]]] = {
    "responses": RESPONSE_COLUMNS,
    "readings": READING_COLUMNS,
    "grades": GRADE_COLUMNS,
}


def arrow_schema(table: str = "responses") -> pa.Schema:
    """The Arrow schema of one table, in declared column order."""
    return pa.schema([pa.field(name, typ) for name, (typ, _doc) in TABLES[table].items()])


ARROW_SCHEMA = arrow_schema("responses")


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


class KeyMaker:
    """``response_key`` for many images of one (provider, model, params, prompt): the canonical JSON
    of the constant fields is built once, so a key costs one sha256 (a cached re-run plans 10^4-10^5
    keys; building each payload took 35 us, most of a cached run's planning). Same keys, by test."""

    def __init__(self, *, provider: str, model: str, params: dict[str, Any], prompt_text: str):
        sample = canonical_json({
            "key_version": KEY_VERSION, "provider": provider, "model": model, "params": params,
            "prompt_sha256": hashlib.sha256(prompt_text.encode("utf-8")).hexdigest(),
            "image_sha256": "\x00", "repeat": 0,
        })  # fmt: skip
        # sorted keys: image_sha256 comes first and repeat last, around the constant middle
        head, _, rest = sample.partition('"\\u0000"')
        if not sample.endswith(',"repeat":0}') or not head.endswith('"image_sha256":'):
            raise AssertionError("the key payload's layout changed: update KeyMaker")
        self._head, self._middle = head, rest[: -len('0}')]

    def key(self, image_sha256: str, repeat: int) -> str:
        if not image_sha256.isalnum() or not image_sha256.isascii():  # anything JSON would escape
            raise ValueError(f"not an image sha256: {image_sha256!r}")
        text = f'{self._head}"{image_sha256}"{self._middle}{int(repeat)}}}'
        return hashlib.sha256(text.encode("utf-8")).hexdigest()
