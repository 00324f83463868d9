"""One response row from one call: the runner (online calls) and batch collection share it, so a
batch answer and an online answer of the same call are the same row but for batch id, cost and
timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cache.store import utcnow
from ingest.providers.base import Reply


@dataclass(frozen=True)
class CallMeta:
    """What identifies a call and the image it asked about (response columns of that name)."""

    key: str
    provider: str
    model: str
    params_json: str
    prompt_id: str
    prompt_sha256: str
    prompt_text: str
    image_sha256: str | None
    image_path: str
    modality: str
    truth: str
    source: str
    repeat: int


Price = Callable[[Reply], "float | None"]


def usage_columns(reply: Reply, price: Price) -> dict[str, Any]:
    """What a reply reported and cost (also for an error reply that was paid for, e.g. truncated)."""
    return {
        "model_version": reply.model_version, "finish_reason": reply.finish_reason,
        "input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens, "cost_usd": price(reply),
    }  # fmt: skip


def response_row(
    meta: CallMeta,
    run_id: str,
    *,
    reply: Reply | None,
    error: tuple[str, str] | None,
    price: Price,
    attempts: int,
    latency_ms: float | None,
    paid: Reply | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An ok row (``reply`` read by the shared parser, or decided by a local detector) or an error
    row (``error`` = (type, message), with ``paid``'s usage and cost when the failed reply cost)."""
    # vars(), not asdict(): the fields are flat values, and asdict's deep copy was a third of this
    row: dict[str, Any] = dict(vars(meta)) | {
        "run_id": run_id, "created_at": utcnow(), "task": "detect", "attempts": attempts,
        "latency_ms": latency_ms, **(extra or {}),
    }  # fmt: skip
    if error is not None:
        row |= {"status": "error", "error_type": error[0], "error_message": error[1]}
        return row | (usage_columns(paid, price) if paid is not None else {})
    assert reply is not None
    if reply.label is not None:  # a local detector decided
        reading = {"label": reply.label, "confidence": reply.confidence,
                   "interpretation": reply.interpretation, "label_rule": "provider"}  # fmt: skip
    else:
        from cache.parse import parse_answer, reading_columns  # on use: its patterns take 0.2 s to compile

        reading = reading_columns(parse_answer(reply.text, reply.finish_reason, reply.refusal))
    return row | reading | usage_columns(reply, price) | {"status": "ok", "raw_text": reply.text}
