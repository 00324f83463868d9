"""Gemini Batch Mode for ``gemini:`` models (``ingest run --batch``), through ``google-genai``.

Each call is a line ``{"key": <cache key>, "request": {"contents": [...], "generationConfig":
{...}}}`` built from the same contents and config as an online call. A batch whose lines come to
less than 19 MB goes inline (``src=[InlinedRequest(..., metadata={"key": ...})]``: the API takes
under 20 MB inline), a larger one is uploaded as a JSONL file (resumable upload, at most 2 GB;
MedLens also caps a batch at 50,000 calls). The batch's ``display_name`` is ``medlens-<ledger
id>``, so a later process finds it. Results come inline (``dest.inlined_responses``, keyed by
their metadata, else by order) or as a JSONL file (``dest.file_name``); each response is read
exactly like an online reply, and a per-line ``google.rpc.Status`` error becomes an error row
(gRPC codes, not HTTP codes). ``BatchJob.done`` ignores PARTIALLY_SUCCEEDED, so states are tested
explicitly. Jobs expire after 48 h pending or running, with no results. The SDK is imported on use.
"""

from __future__ import annotations

import base64
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ingest.providers.base import CallRequest, ProviderError
from ingest.providers.batch_api import ADOPT_SKEW_S, BatchClient, BatchStatus, Result
from ingest.providers.gemini_provider import GeminiProvider, read_reply
from ingest.providers.retry import scrub

if TYPE_CHECKING:
    from google import genai

    from ingest.batch_ledger import LedgerEntry

SPLICE = f"medlens-image-{uuid.uuid4().hex}"  # a stand-in for the image while json encodes the rest
INLINE_LIMIT = 19_000_000  # bytes of lines sent inline; the API takes less than 20 MB in all
OVER = {
    "JOB_STATE_SUCCEEDED": "completed",
    "JOB_STATE_PARTIALLY_SUCCEEDED": "completed",
    "JOB_STATE_FAILED": "failed",
    "JOB_STATE_CANCELLED": "cancelled",
    "JOB_STATE_EXPIRED": "expired",
}
#: google.rpc.Code of a per-line error -> (error_type, retried within a run)
GRPC_CODES = {
    3: ("bad_request", False), 4: ("timeout", True), 5: ("not_found", False), 7: ("permission", False),
    8: ("rate_limited", True), 9: ("bad_request", False), 13: ("server_error", True),
    14: ("server_error", True), 16: ("auth", False),
}  # fmt: skip


class GeminiBatch(BatchClient):
    max_requests = 50_000
    max_bytes = 2_000_000_000

    def __init__(self, provider: GeminiProvider):
        super().__init__(provider)
        self.gemini: GeminiProvider = provider
        self._client: genai.Client | None = None  # keep the reference: a temporary is closed

    def client(self) -> genai.Client:
        if self._client is None:
            from google import genai
            from google.genai import types

            key = self.gemini.client_key()
            options = types.HttpOptions(
                base_url=os.environ.get(self.gemini.base_url_env) or None,
                timeout=int(self.gemini.options.timeout_s * 1000),  # milliseconds
                retry_options=None,
            )
            self._client = genai.Client(api_key=key, vertexai=False, http_options=options)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def line(self, key: str, request: CallRequest) -> bytes:
        contents = self.gemini.build_contents(replace(request, image=None))  # the image is spliced in
        config = self.gemini.build_config(structured=request.structured)
        content = contents[0].model_dump(mode="json", by_alias=True, exclude_none=True)
        if request.image is not None:  # base64 needs no JSON escaping; json.dumps would scan ~0.5 MB
            content["parts"].insert(0, {"inlineData": {"data": SPLICE, "mimeType": request.mime}})
        body = {
            "contents": [content],
            "generationConfig": config.model_dump(mode="json", by_alias=True, exclude_none=True),
        }
        text = json.dumps({"key": key, "request": body}, separators=(",", ":"))
        if request.image is not None:
            text = text.replace(f'"{SPLICE}"', f'"{base64.b64encode(request.image).decode()}"', 1)
        return text.encode() + b"\n"

    def mode(self, payload_bytes: int) -> str:
        return "inline" if payload_bytes < INLINE_LIMIT else "file"

    def _call(self, what: str, fn: Any, **kwargs: Any) -> Any:
        """One SDK call, its failure classified like an online call's."""
        import httpx2
        from google.genai import errors

        try:
            return fn(**kwargs)
        except errors.APIError as exc:
            error = self.gemini.classify_api_error(exc)
        except httpx2.TimeoutException:
            error = ProviderError("timeout", f"{self.gemini.spec.raw}: timed out", retryable=True)
        except httpx2.TransportError as exc:
            message = scrub(f"{self.gemini.spec.raw}: connection failed ({type(exc).__name__}: {exc})")
            error = ProviderError("connection", message, retryable=True)
        error.message = f"{what}: {error.message}"
        raise error

    def upload(self, entry: LedgerEntry, payload: Path) -> str:
        tag = self.tag(entry)
        for found in self._call("list files", self.client().files.list, config={"page_size": 100}):
            if found.display_name == tag and found.size_bytes == entry.payload_bytes:
                return str(found.name)  # uploaded before a crash
        config = {"display_name": tag, "mime_type": "jsonl"}
        uploaded = self._call("upload", self.client().files.upload, file=str(payload), config=config)
        return str(uploaded.name)

    def find(self, entry: LedgerEntry) -> str | None:
        from datetime import datetime

        since = datetime.fromisoformat(entry.created_at).timestamp() - ADOPT_SKEW_S
        for job in self._call("list batches", self.client().batches.list, config={"page_size": 100}):
            if job.display_name == self.tag(entry):
                return str(job.name)
            if job.create_time is not None and job.create_time.timestamp() < since:
                return None
        return None

    def create(self, entry: LedgerEntry, payload: Path) -> str:
        src: Any = entry.input_file
        if entry.mode == "inline":
            src = [_inlined(json.loads(line)) for line in payload.read_bytes().splitlines() if line]
        job = self._call(
            "create batch", self.client().batches.create, model=self.gemini.spec.model, src=src,
            config={"display_name": self.tag(entry)},
        )  # fmt: skip
        return str(job.name)

    def status(self, batch_id: str) -> BatchStatus:
        job = self._call("get batch", self.client().batches.get, name=batch_id)
        state = str(getattr(job.state, "value", job.state))
        output = {"batch": batch_id}
        if job.dest is not None and job.dest.file_name:
            output["file"] = job.dest.file_name
        message = str(job.error.message) if job.error is not None and job.error.message else None
        ended = job.end_time.timestamp() if job.end_time is not None else None
        return BatchStatus(state, OVER.get(state), message=message, output=output, finished_at=ended)

    def results(self, status: BatchStatus, keys: list[str]) -> Iterator[Result]:
        if "file" in status.output:
            data = self._call("download results", self.client().files.download, file=status.output["file"])
            for line in data.splitlines():
                if line.strip():
                    record = json.loads(line)
                    yield self.read(str(record.get("key")), record.get("response"), record.get("error"))
            return
        job = self._call("get batch", self.client().batches.get, name=status.output["batch"])
        responses = job.dest.inlined_responses if job.dest is not None else None
        for index, item in enumerate(responses or []):
            key = (item.metadata or {}).get("key") or (keys[index] if index < len(keys) else "")
            error = item.error.model_dump(exclude_none=True) if item.error is not None else None
            yield self.read(key, item.response, error)

    def read(self, key: str, response: Any, error: Any) -> Result:
        """One answered request as (key, Reply or ProviderError)."""
        from google.genai import types

        if error:
            code = int(error.get("code") or 0) if isinstance(error, dict) else 0
            kind, retry = GRPC_CODES.get(code, ("server_error" if code == 2 else "bad_request", code == 2))
            message = error.get("message") if isinstance(error, dict) else error
            where = self.gemini.spec.raw
            return key, ProviderError(
                kind, scrub(f"{where}: batch line: gRPC {code}: {message}"), retryable=retry
            )
        if isinstance(response, dict):
            response = types.GenerateContentResponse.model_validate(response)
        try:
            return key, read_reply(response, self.gemini.spec.raw, self.gemini.options.max_tokens)
        except ProviderError as failure:  # truncated, empty_reply: the same rows as online
            return key, failure

    def cancel(self, batch_id: str) -> None:
        self._call("cancel batch", self.client().batches.cancel, name=batch_id)


def _inlined(line: dict[str, Any]) -> Any:
    """An input line back as the SDK's InlinedRequest (the same contents and config, lossless)."""
    from google.genai import types

    request = line["request"]
    return types.InlinedRequest(
        contents=[types.Content.model_validate(c) for c in request["contents"]],
        config=types.GenerateContentConfig.model_validate(request.get("generationConfig") or {}),
        metadata={"key": line["key"]},
    )
