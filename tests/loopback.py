"""Loopback HTTP servers speaking the OpenAI Chat Completions and Gemini generateContent formats.

The real SDKs talk to them over 127.0.0.1 (port 0), so tests exercise the SDK's own request
building, response parsing and error classes. Each server answers from a script: a queue of
behaviours consumed one per request, then ``default`` for every later request.

Behaviours (tuples):
    ("ok", text)                    a normal answer (Gemini: finishReason STOP)
    ("status", code, headers, msg, extra)
                                    an error status with a provider-shaped JSON error body
                                    (headers, msg and extra optional; extra merges into "error")
    ("sleep", seconds)              wait, then answer ok (a slow reply)
    ("malformed",)                  200 with a truncated JSON body
    ("drop",)                       close the connection without answering
    ("content_filter",)             OpenAI: finish_reason content_filter, content null
    ("refusal", text)               OpenAI: message.refusal set, content null
    ("no_json_schema",)             OpenAI: 400 saying response_format json_schema is unsupported
    ("safety",)                     Gemini: finishReason SAFETY, no text
    ("blocked_prompt", reason)      Gemini: promptFeedback.blockReason, no candidates
    ("empty_candidates",)           Gemini: candidates [] and no block reason; OpenAI: choices []
    ("echo",)                       a careless proxy: an ok answer whose text, model version and an
                                    ``X-Echo`` header carry the credentials the request came with
                                    (Authorization, x-goog-api-key, api-key headers, ?key= query)
    ("echo_status", code)           an error status whose message and ``X-Echo`` header carry them

Replies seen in recordings of the real APIs (STACK_NOTES), for issue 8.7:
    ("no_message",)                 OpenAI (Azure content filter): a choice with no message at all
    ("length", text)                OpenAI: finish_reason length; text None (null), "" or a cut-off answer
    ("thinking_budget",)            Gemini: finishReason MAX_TOKENS, no text, thoughtsTokenCount and NO
                                    candidatesTokenCount (a thinking model that spent its whole budget)
    ("max_tokens", text)            Gemini: finishReason MAX_TOKENS with (cut-off) text
    ("thoughts", text)              Gemini: STOP with thoughtsTokenCount next to candidatesTokenCount

Every request is recorded in ``server.requests`` (path, lower-cased headers, parsed JSON body) unless
``record=False`` (the benchmark). ``delay`` adds a fixed wait before every answer.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

import pytest

USAGE_IN, USAGE_OUT = 1234, 56
USAGE_THOUGHTS = 300  # Gemini thinking tokens, billed as output
OPENAI_VERSION_SUFFIX = "-2024-08-06"
GEMINI_VERSION_SUFFIX = "-001"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default (5) stalls concurrent clients


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real APIs
    disable_nagle_algorithm = True  # otherwise ~40 ms stalls on small writes

    def log_message(self, *args: Any) -> None:  # keep test output clean
        pass

    def do_POST(self) -> None:
        owner: LoopbackServer = self.server.owner  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        behaviour = owner.next_behaviour()
        body = None
        if owner.record:
            with contextlib.suppress(ValueError):
                body = json.loads(raw)
            with owner.lock:
                owner.requests.append(
                    {
                        "path": self.path,
                        "headers": {k.lower(): v for k, v in self.headers.items()},
                        "body": body,
                    }
                )
        if owner.delay:
            time.sleep(owner.delay)
        try:
            owner.respond(self, behaviour, body)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
            self.close_connection = True

    def send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class LoopbackServer:
    """Base: a threaded server on 127.0.0.1:<free port>, used as a context manager."""

    def __init__(self, *, delay: float = 0.0, record: bool = True, default: tuple = ("ok",)):
        self.delay = delay
        self.record = record
        self.default = default
        self.script: collections.deque[tuple] = collections.deque()
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def push(self, *behaviours: tuple) -> None:
        """Queue behaviours for the next requests, in order."""
        with self.lock:
            self.script.extend(behaviours)

    def next_behaviour(self) -> tuple:
        with self.lock:
            return self.script.popleft() if self.script else self.default

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    #: the reply field that carries the model version (stamped with the credentials by "echo")
    version_field = "model"

    @staticmethod
    def credentials(handler: _Handler) -> str:
        """The credentials a request carried, as a careless server would echo them."""
        sent = [handler.headers.get(name) for name in ("Authorization", "x-goog-api-key", "api-key")]
        query = handler.path.partition("?")[2]
        return " ".join(v for v in [*sent, query] if v)

    def respond(self, handler: _Handler, behaviour: tuple, body: Any) -> None:
        kind, args = behaviour[0], behaviour[1:]
        if kind in ("echo", "echo_status"):
            creds = self.credentials(handler)
            if kind == "echo_status":
                handler.send_json(
                    args[0], self.error_body(args[0], f"denied, you sent: {creds}"), {"X-Echo": creds}
                )
                return
            payload = self.answer("ok", (f"Real. Your request said {creds}.",), handler, body)
            payload[self.version_field] = f"{payload.get(self.version_field, 'm')}+{creds}"
            handler.send_json(200, payload, {"X-Echo": creds})
            return
        if kind == "sleep":
            time.sleep(args[0])
            kind, args = "ok", ()
        if kind == "drop":
            handler.close_connection = True
            handler.connection.shutdown(2)
            return
        if kind == "malformed":
            handler.send_json(200, b'{"choices": [{"index": 0, "message": {"role": "assist')
            return
        if kind == "status":
            code, headers, message, extra = (list(args) + [{}, "scripted failure", {}][len(args) - 1 :])[:4]
            body = self.error_body(code, message)
            body["error"].update(extra)
            handler.send_json(code, body, headers)
            return
        handler.send_json(200, self.answer(kind, args, handler, body))

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        raise NotImplementedError

    def answer(self, kind: str, args: tuple, handler: _Handler, body: Any) -> dict[str, Any]:
        raise NotImplementedError

    def last_body(self) -> dict[str, Any]:
        return self.requests[-1]["body"]


DEFAULT_TEXT = '{"label": "real", "confidence": 0.8, "interpretation": "A chest radiograph."}'


class OpenAIServer(LoopbackServer):
    """``POST /v1/chat/completions``; base URL ``server.base_url``."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        return {"error": {"message": message, "type": "scripted", "param": None, "code": None}}

    def respond(self, handler: _Handler, behaviour: tuple, body: Any) -> None:
        if behaviour[0] == "no_json_schema":
            message = "Invalid parameter: 'response_format' of type 'json_schema' is not supported"
            handler.send_json(400, {"error": {"message": message, "param": "response_format"}})
            return
        super().respond(handler, behaviour, body)

    def answer(self, kind: str, args: tuple, handler: _Handler, body: Any) -> dict[str, Any]:
        content, refusal, finish = (args[0] if args else DEFAULT_TEXT), None, "stop"
        if kind == "empty_candidates":  # the OpenAI twin of Gemini's empty candidates
            return {"id": "chatcmpl-loopback", "object": "chat.completion", "model": "m", "choices": []}
        if kind == "content_filter":
            content, finish = None, "content_filter"
        elif kind == "refusal":
            content, refusal = None, args[0]
        elif kind == "length":
            finish = "length"
        model = body.get("model", "m") if isinstance(body, dict) else "m"
        choice: dict[str, Any] = {
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": finish,
        }
        if kind == "no_message":
            choice = {"index": 0, "finish_reason": "content_filter"}
        return {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": 1700000000,
            "model": model + OPENAI_VERSION_SUFFIX,
            "choices": [choice],
            "usage": {
                "prompt_tokens": USAGE_IN,
                "completion_tokens": USAGE_OUT,
                "total_tokens": USAGE_IN + USAGE_OUT,
            },
        }


class GeminiServer(LoopbackServer):
    """``POST /<version>/models/<model>:generateContent``; base URL ``server.base_url``."""

    version_field = "modelVersion"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_body(self, code: int, message: str) -> dict[str, Any]:
        status = {429: "RESOURCE_EXHAUSTED", 400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED"}
        return {"error": {"code": code, "message": message, "status": status.get(code, "ERR")}}

    def answer(self, kind: str, args: tuple, handler: _Handler, body: Any) -> dict[str, Any]:
        model = handler.path.rsplit("/", 1)[-1].split(":", 1)[0]
        meta = {
            "usageMetadata": {
                "promptTokenCount": USAGE_IN,
                "candidatesTokenCount": USAGE_OUT,
                "totalTokenCount": USAGE_IN + USAGE_OUT,
            },
            "modelVersion": model + GEMINI_VERSION_SUFFIX,
        }
        if kind == "blocked_prompt":
            reason = args[0] if args else "OTHER"
            return {"promptFeedback": {"blockReason": reason}, **meta}
        if kind == "empty_candidates":
            return {"candidates": [], **meta}
        if kind == "safety":
            ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}]
            candidate = {"finishReason": "SAFETY", "index": 0, "safetyRatings": ratings}
            return {"candidates": [candidate], **meta}
        if kind == "thinking_budget":  # the whole budget went on thinking: no text, no candidates count
            meta["usageMetadata"] = {
                "promptTokenCount": USAGE_IN,
                "thoughtsTokenCount": USAGE_THOUGHTS,
                "totalTokenCount": USAGE_IN + USAGE_THOUGHTS,
            }
            candidate = {"content": {"role": "model"}, "finishReason": "MAX_TOKENS", "index": 0}
            return {"candidates": [candidate], **meta}
        if kind in ("thoughts", "max_tokens"):
            meta["usageMetadata"]["thoughtsTokenCount"] = USAGE_THOUGHTS
            meta["usageMetadata"]["totalTokenCount"] += USAGE_THOUGHTS
        text = args[0] if args else DEFAULT_TEXT
        candidate = {
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "MAX_TOKENS" if kind == "max_tokens" else "STOP",
            "index": 0,
        }
        return {"candidates": [candidate], **meta}


# --- helpers for assertions ----------------------------------------------------------------------


def openai_image_bytes(body: dict[str, Any]) -> tuple[str, bytes, str]:
    """(mime, bytes, detail) of the first image_url part of a Chat Completions request."""
    for part in body["messages"][0]["content"]:
        if part["type"] == "image_url":
            header, _, data = part["image_url"]["url"].partition(",")
            mime = header.removeprefix("data:").removesuffix(";base64")
            return mime, base64.b64decode(data, validate=True), part["image_url"].get("detail")
    raise AssertionError("no image_url part in the request")


def openai_prompt_text(body: dict[str, Any]) -> str:
    return "".join(p["text"] for p in body["messages"][0]["content"] if p["type"] == "text")


def gemini_parts(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["contents"][0]["parts"]


def gemini_image_bytes(body: dict[str, Any]) -> tuple[str, bytes]:
    """(mime, bytes) of the inline image; the SDK sends URL-safe base64, keys in either case."""
    for part in gemini_parts(body):
        inline = part.get("inlineData") or part.get("inline_data")
        if inline:
            mime = inline.get("mimeType") or inline.get("mime_type")
            return mime, base64.urlsafe_b64decode(inline["data"])
    raise AssertionError("no inlineData part in the request")


def make_png(width: int = 64, height: int = 48, seed: int = 0) -> bytes:
    """A small PNG with varied pixels, so a decoding error cannot pass unnoticed."""
    from PIL import Image

    image = Image.new("RGB", (width, height))
    image.putdata(
        [
            ((x * 7 + seed) % 256, (y * 5) % 256, (x * y + seed) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    """(size, raw RGB bytes) of an encoded image, for comparing what was sent with what was meant."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return image.size, image.convert("RGB").tobytes()


# --- fixtures: bind them in a test module, ``openai_server = loopback.openai_server`` -------------

OPENAI_TEST_KEY = "sk-test-loopback-0123456789abcdef"
GEMINI_TEST_KEY = "AIzaTestLoopback0123456789abcdefghij"


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[OpenAIServer]:
    """An OpenAIServer with OPENAI_BASE_URL and a fake OPENAI_API_KEY pointing at it."""
    with OpenAIServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
        yield server


@pytest.fixture
def gemini_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[GeminiServer]:
    """A GeminiServer with GOOGLE_GEMINI_BASE_URL and a fake GEMINI_API_KEY pointing at it."""
    with GeminiServer() as server:
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", server.base_url)
        monkeypatch.setenv("GEMINI_API_KEY", GEMINI_TEST_KEY)
        monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
        yield server


class FakeSleep:
    """An injectable ``sleep`` that records the waits and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def run_call(provider: Any, request: Any, sleep: FakeSleep | None = None, **kwargs: Any) -> Any:
    """``call_with_retry`` in a fresh event loop, then close the provider's client."""
    import asyncio

    from ingest.providers.retry import call_with_retry

    async def go() -> Any:
        try:
            return await call_with_retry(provider, request, sleep=sleep or FakeSleep(), **kwargs)
        finally:
            await provider.aclose()

    return asyncio.run(go())


def make_request(
    image: bytes | None = None, prompt: str = "Is this image real or synthetic?", **kw: Any
) -> Any:
    """A CallRequest for a PNG (a fresh 64x48 one unless given)."""
    import hashlib

    from ingest.providers.base import CallRequest

    image = image if image is not None else make_png()
    return CallRequest(
        image=image,
        mime="image/png",
        image_sha256=hashlib.sha256(image).hexdigest(),
        prompt_id="paper",
        prompt_text=prompt,
        **kw,
    )


#: Faults every provider meets the same way: (script, options, expected error_type or "ok", attempts,
#: waits or None). Provider test modules add their own (status codes and messages) to these.
TRANSPORT_FAULTS: list[tuple] = [
    ([("status", 500), ("status", 503)], {}, "ok", 3, None),
    ([("sleep", 4.0)], {"timeout_s": 1.5}, "ok", 2, None),  # generous: a loaded machine answers late
    ([("sleep", 4.0)] * 2, {"timeout_s": 1.5, "max_attempts": 2}, "timeout", 2, None),
    ([("malformed",)], {}, "ok", 2, None),
    ([("malformed",)] * 2, {"max_attempts": 2}, "malformed_reply", 2, None),
    ([("drop",)], {}, "ok", 2, None),
    ([("drop",)] * 2, {"max_attempts": 2}, "connection", 2, None),
    ([("empty_candidates",)], {}, "empty_reply", 1, []),
]


def check_fault(
    server: LoopbackServer,
    provider: Any,
    script: list,
    expected: str,
    attempts: int,
    waits: list | None,
    ok_finish: str,
    prefix: str,
) -> None:
    """Play ``script`` on ``server``, make one call with retries, and check how it ended."""
    from ingest.providers.retry import ERROR_TYPES

    server.push(*script)
    sleep = FakeSleep()
    outcome = run_call(provider, make_request(), sleep)
    assert outcome.attempts == attempts
    assert len(server.requests) == attempts
    if expected == "ok":
        assert outcome.error is None and outcome.reply.finish_reason == ok_finish
    else:
        assert outcome.reply is None and outcome.error.error_type == expected, outcome.error.message
        assert expected in ERROR_TYPES
        assert outcome.error.message.startswith(prefix)
    if waits is not None:
        assert sleep.waits == waits
