"""The OpenAI Batch API for ``openai:`` models (``ingest run --batch``).

Input: a JSONL file of ``{"custom_id": <cache key>, "method": "POST", "url":
"/v1/chat/completions", "body": <the online request body>}``, at most 50,000 lines and 200 MB,
uploaded with ``purpose="batch"`` under the name ``medlens-<ledger_id>.jsonl``; the batch is
created with ``metadata={"medlens_ledger": <ledger_id>}`` so a later process finds it. Output and
error files hold ``{"custom_id", "response": {"status_code", "body"}, "error"}`` lines in any
order; a 200 body is read exactly like an online reply, any other line is an error row classified
like the online HTTP status. Status: validating, in_progress, finalizing, cancelling (running);
completed, failed, expired, cancelled (over; expired and cancelled batches may hold partial
output). The SDK is imported on use; its retries are off (``ingest.batch`` retries).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.providers.base import CallRequest, ProviderError
from ingest.providers.batch_api import ADOPT_SKEW_S, BatchClient, BatchStatus, Result
from ingest.providers.openai_provider import OpenAIProvider

if TYPE_CHECKING:
    import openai

    from ingest.batch_ledger import LedgerEntry

ENDPOINT = "/v1/chat/completions"
SPLICE = f"medlens-image-{uuid.uuid4().hex}"  # a stand-in for the image while json encodes the rest
_SAFE_MIME = re.compile(r"^data:[a-z]+/[a-z0-9.+-]+;base64,")
METADATA_KEY = "medlens_ledger"
RUNNING = {"validating", "in_progress", "finalizing", "cancelling"}
NOT_RUN = {"batch_expired", "batch_cancelled"}  # error codes of lines the batch never ran
OVER = {"completed": "completed", "failed": "failed", "expired": "expired", "cancelled": "cancelled"}


class OpenAIBatch(BatchClient):
    max_requests = 50_000
    max_bytes = 200_000_000

    def __init__(self, provider: OpenAIProvider):
        super().__init__(provider)
        self.openai: OpenAIProvider = provider
        self._client: openai.OpenAI | None = None

    def client(self) -> openai.OpenAI:
        if self._client is None:
            import openai

            self._client = openai.OpenAI(
                api_key=self.openai.client_key(), base_url=self.openai.base_url(), max_retries=0,
                timeout=self.openai.options.timeout_s,
            )  # fmt: skip
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def line(self, key: str, request: CallRequest) -> bytes:
        body = self.openai.build_request(request, structured=request.structured)
        image = next(
            (p["image_url"] for p in body["messages"][0]["content"] if p["type"] == "image_url"), None
        )
        url = image["url"] if image else ""
        if image and _SAFE_MIME.match(url):  # spliced in below: base64 needs no JSON escaping, and
            image["url"] = SPLICE  # json.dumps would spend ~3 ms scanning each 0.5 MB image
        record = {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}
        text = json.dumps(record, separators=(",", ":"))
        return text.replace(f'"{SPLICE}"', f'"{url}"', 1).encode() + b"\n"

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """One SDK call, its failure classified like an online call's."""
        import openai

        try:
            return fn(*args, **kwargs)
        except openai.OpenAIError as exc:
            error = self.openai.classify(exc)
            error.message = f"{what}: {error.message}"
            raise error from None

    def upload(self, entry: LedgerEntry, payload: Path) -> str:
        name = f"{self.tag(entry)}.jsonl"
        for found in self._call("list files", self.client().files.list, purpose="batch"):
            if found.filename == name and found.bytes == entry.payload_bytes:
                return found.id  # uploaded before a crash: the same bytes, under our name
        with open(payload, "rb") as handle:
            uploaded = self._call("upload", self.client().files.create, file=(name, handle), purpose="batch")
        return uploaded.id

    def find(self, entry: LedgerEntry) -> str | None:
        since = _epoch(entry.created_at) - ADOPT_SKEW_S
        for batch in self._call("list batches", self.client().batches.list, limit=100):
            if (batch.metadata or {}).get(METADATA_KEY) == entry.ledger_id:
                return batch.id
            if batch.created_at < since:  # newest first: older ones cannot be ours
                return None
        return None

    def create(self, entry: LedgerEntry, payload: Path) -> str:
        batch = self._call(
            "create batch", self.client().batches.create, input_file_id=entry.input_file, endpoint=ENDPOINT,
            completion_window="24h", metadata={METADATA_KEY: entry.ledger_id},
        )  # fmt: skip
        return batch.id

    def status(self, batch_id: str) -> BatchStatus:
        batch = self._call("retrieve batch", self.client().batches.retrieve, batch_id)
        counts = batch.request_counts
        errors = [e.message for e in (batch.errors.data if batch.errors and batch.errors.data else [])]
        ended = batch.completed_at or batch.failed_at or batch.expired_at or batch.cancelled_at
        return BatchStatus(
            provider_state=batch.status,
            outcome=OVER.get(batch.status),
            counts={"total": counts.total, "completed": counts.completed, "failed": counts.failed}
            if counts else {},
            message="; ".join(str(e) for e in errors if e)[:500] or None,
            output={k: v for k, v in (("output", batch.output_file_id), ("errors", batch.error_file_id)) if v},
            finished_at=float(ended) if ended else None,
        )  # fmt: skip

    def results(self, status: BatchStatus, keys: list[str]) -> Iterator[Result]:
        for name in ("output", "errors"):
            if name not in status.output:
                continue
            content = self.client().files.with_streaming_response.content
            with self._call(f"download {name}", content, status.output[name]) as response:
                for line in response.iter_lines():
                    result = self.read_line(json.loads(line)) if line.strip() else None
                    if result is not None:
                        yield result

    def read_line(self, record: dict[str, Any]) -> Result | None:
        """One output or error line as (key, Reply or ProviderError); None for a request the batch
        never ran (it expired or was cancelled first): its key stays open, with no row."""
        key = str(record.get("custom_id"))
        response = record.get("response") or {}
        body = response.get("body") if isinstance(response, dict) else None
        status = response.get("status_code") if isinstance(response, dict) else None
        if status == 200 and isinstance(body, dict):
            try:
                return key, self.openai.read_reply(body)
            except ProviderError as error:  # truncated, empty_reply: the same rows as online
                return key, error
        error = record.get("error") or (body.get("error") if isinstance(body, dict) else None) or {}
        message = str(error.get("message") or "no message") if isinstance(error, dict) else str(error)
        code = str(error.get("code") or "") if isinstance(error, dict) else ""
        if code in NOT_RUN:
            return None
        if status is None:  # a line the batch never ran (expired, cancelled) or could not read
            return key, ProviderError("bad_request", f"{self.openai.where()}: batch line: {code} {message}",
                                      retryable=False)  # fmt: skip
        return key, self.openai.status_error(int(status), message, code)

    def cancel(self, batch_id: str) -> None:
        self._call("cancel batch", self.client().batches.cancel, batch_id)


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso).timestamp() if iso else 0.0
