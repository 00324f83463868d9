"""``openai:<model>``: OpenAI Chat Completions through the official ``openai`` SDK.

The prepared image goes as a base64 data URL (``detail`` from the options). The ``json`` prompt
(``request.structured``) adds a strict JSON-schema ``response_format``; a model or server that
rejects it with a 400 is called once more without it, and that is remembered for the model (its
free text is still parsed downstream). SDK retries are off: ``ingest.providers.retry`` retries.

Replies seen in recordings of the real API: a refusal comes as ``content: null`` plus
``message.refusal`` with the sentence, which is kept as the answer text (labelled refused by the
parser's refusal rule); Azure's content filter can return a choice with no ``message`` at all
(``finish_reason: content_filter``: a reply with no text, labelled refused); ``finish_reason:
length`` with no text is a ``truncated`` error row naming ``--max-tokens`` (with text it is an
answer: the parser reads what is there).

Error classes (``ProviderError.error_type``): rate_limited, quota, server_error, timeout,
connection, auth, permission, not_found, bad_request, image_rejected, malformed_reply,
empty_reply, truncated. A truncated or non-JSON 200 body (``malformed_reply``) is treated as
retryable: it is almost always a proxy or connection hiccup, and attempts are bounded anyway.

The SDK is imported on first use, so reading this module's registry entry loads no SDK.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

from ingest.providers.base import (
    CallRequest,
    MissingCredentials,
    ModelSpec,
    Provider,
    ProviderError,
    ProviderOptions,
    Reply,
    truncated_error,
)
from ingest.providers.registry import Capabilities, Keys, PriceRule, provider
from ingest.providers.retry import retry_after_seconds, scrub

if TYPE_CHECKING:
    import openai

#: The answer shape the ``json`` prompt asks for.
ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "label": {"type": "string", "enum": ["real", "synthetic", "uncertain"]},
        "confidence": {"type": "number"},
        "interpretation": {"type": "string"},
    },
    "required": ["label", "confidence", "interpretation"],
    "additionalProperties": False,
}
RESPONSE_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "medlens_answer", "strict": True, "schema": ANSWER_SCHEMA},
}
_MAX_MESSAGE = 500


def data_url(image: bytes, mime: str) -> str:
    """``data:<mime>;base64,<standard base64>``."""
    return f"data:{mime};base64,{base64.b64encode(image).decode('ascii')}"


#: Stands for the image's data URL while the rest of a body is serialised (NUL cannot survive JSON
#: unescaped, so the encoded slot cannot come from a prompt or an option).
_IMAGE_SLOT = "\x00medlens-image\x00"
_IMAGE_SLOT_JSON = json.dumps(_IMAGE_SLOT).encode()
_MIME = re.compile(r"[a-z]+/[a-z0-9.+-]+")  # spliced in unescaped: only what needs no JSON escape


def dumps_body(body: dict[str, Any]) -> bytes:
    """JSON as the SDK serialises a request body (compact, UTF-8, no NaN)."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def _connection_failed(exc: BaseException) -> bool:
    """A connection that failed without timing out (refused, reset, closed by the server), which
    the SDK's aiohttp transport raises as a connect timeout: its causes name the aiohttp error."""
    seen = exc.__cause__ or exc.__context__
    for _ in range(8):  # a chain is a few links long; a cycle must not hang the call
        if seen is None:
            return False
        if type(seen).__module__.startswith("aiohttp") and not isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    text = str(body["message"]) if isinstance(body, dict) and body.get("message") else exc.message
    return text[:_MAX_MESSAGE]


def _error_code(exc: openai.APIStatusError) -> str:
    return str(exc.body.get("code") or "") if isinstance(exc.body, dict) else ""


def is_schema_unsupported(exc: openai.APIStatusError) -> bool:
    """A 400/422 that rejects the ``response_format`` (json_schema / structured output)."""
    text = (_server_message(exc) + " " + json.dumps(exc.body, default=str)).lower()
    return exc.status_code in (400, 422) and (
        "response_format" in text or "json_schema" in text or "structured output" in text
    )


@provider(
    prefix="openai",
    form="openai:<model>",
    example="openai:gpt-4o",
    summary="OpenAI Chat Completions through the openai SDK (OPENAI_BASE_URL redirects it)",
    keys=Keys(("OPENAI_API_KEY",)),
    # OpenAI Batch API: 50% of the online price (openai.com/api/pricing)
    price=PriceRule(image_tokens="tiles:85:170", batch_factor=0.5),
    capabilities=Capabilities(structured=True, batch=True, text_only=True),
    batch="ingest.providers.openai_batch:OpenAIBatch",
)
class OpenAIProvider(Provider):
    """OpenAI Chat Completions; the compat provider reuses everything but the client set-up."""

    base_url_env: ClassVar[str] = "OPENAI_BASE_URL"
    #: OpenAI's current models take max_completion_tokens (o-series and gpt-5 reject max_tokens).
    max_tokens_field: ClassVar[str] = "max_completion_tokens"

    def __init__(self, spec: ModelSpec, options: ProviderOptions):
        super().__init__(spec, options)
        self._client: openai.AsyncOpenAI | None = None
        self.structured_supported = True

    def load(self) -> None:
        """Import the SDK and make the client (its TLS context: tens of ms) before the first call."""
        import openai  # noqa: F401 - imported before the first call (see Provider.load)

        with contextlib.suppress(ProviderError):  # no key: each call records the auth error
            self.client()

    def params(self) -> dict[str, Any]:
        return {**super().params(), "detail": self.options.detail}

    # --- client ---------------------------------------------------------------------------------

    def base_url(self) -> str | None:
        return os.environ.get(self.base_url_env) or None

    def client_key(self) -> str:
        try:
            self.check_credentials()
        except MissingCredentials as exc:
            raise ProviderError("auth", str(exc), retryable=False) from None
        return self.api_key() or "not-needed"

    def client(self) -> openai.AsyncOpenAI:
        """One shared client (one connection pool) for every call of this provider."""
        if self._client is None:
            import openai

            base_url = self.base_url()
            self._client = openai.AsyncOpenAI(
                api_key=self.client_key(),
                base_url=base_url,
                max_retries=0,
                timeout=self.options.timeout_s,
                http_client=self.http_client(base_url),
            )
        return self._client

    def http_client(self, base_url: str | None) -> Any:
        """The SDK's aiohttp transport (``openai.DefaultAioHttpClient``): less of the client's CPU per
        call than its default httpx transport, and that CPU is what bounds a run's calls per second
        (tests/benchmarks/bench_run.py). A base URL with credentials in it (``https://user:pw@gateway``)
        keeps the default transport, which sends them as Basic auth (the aiohttp one drops them)."""
        import openai

        if base_url and urlsplit(base_url).username is not None:
            return None
        return openai.DefaultAioHttpClient(timeout=self.options.timeout_s)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    # --- request / reply (pure) -----------------------------------------------------------------

    def build_request(self, request: CallRequest, *, structured: bool, url: str | None = None) -> dict[str, Any]:
        """The Chat Completions request body for one call (``url``: in place of the image's data URL)."""
        content: list[dict[str, Any]] = [{"type": "text", "text": request.prompt_text}]
        if request.image is not None:  # a text-only request (a judge) sends no image part
            image_url = {"url": url or data_url(request.image, request.mime), "detail": self.options.detail}
            content.append({"type": "image_url", "image_url": image_url})
        kwargs: dict[str, Any] = {
            "model": self.spec.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": self.options.temperature,
            self.max_tokens_field: self.options.max_tokens,
        }
        if structured:
            kwargs["response_format"] = RESPONSE_FORMAT
        return kwargs

    def request_body(self, request: CallRequest, *, structured: bool) -> bytes:
        """``build_request`` as the bytes the SDK would send. The image goes in as base64 bytes
        spliced into the serialised rest: escaping and re-encoding a ~100 KB data URL as a JSON
        string was a tenth of the client's CPU per call (base64 needs no JSON escape)."""
        if request.image is None:
            return dumps_body(self.build_request(request, structured=structured))
        head, *tail = dumps_body(self.build_request(request, structured=structured, url=_IMAGE_SLOT)).split(
            _IMAGE_SLOT_JSON
        )
        if len(tail) != 1 or not _MIME.fullmatch(request.mime):
            return dumps_body(self.build_request(request, structured=structured))
        encoded = base64.b64encode(request.image)
        return b"".join((head, b'"data:', request.mime.encode("ascii"), b";base64,", encoded, b'"', tail[0]))

    def read_reply(self, body: Any) -> Reply:
        """Text, finish reason, refusal, model version and usage of a Chat Completions reply body
        (the parsed JSON, online or a batch output line). Values of the wrong type count as absent."""
        choices = body.get("choices") if isinstance(body, dict) else None
        if not isinstance(choices, list) or not choices:
            raise ProviderError(
                "empty_reply", f"{self.where()}: the API answered with no choices", retryable=False
            )
        choice = _mapping(choices[0])
        message = _mapping(choice.get("message"))  # Azure's content filter may send none
        usage = _mapping(body.get("usage"))
        text, refusal = _text(message.get("content")), _text(message.get("refusal")) or None
        reply = Reply(
            # The refusal sentence is the answer text (content is null then); it stays labelled
            # refused because ``refusal`` is set too.
            text=text if text or not refusal else refusal,
            finish_reason=_text(choice.get("finish_reason")),
            refusal=refusal,
            model_version=_text(body.get("model")),
            input_tokens=_count(usage.get("prompt_tokens")),
            output_tokens=_count(usage.get("completion_tokens")),
        )
        if reply.finish_reason == "length" and not (reply.text or "").strip():
            raise truncated_error(self.where(), reply, self.options.max_tokens)
        return reply

    # --- the call -------------------------------------------------------------------------------

    async def call(self, request: CallRequest) -> Reply:
        import openai

        structured = request.structured and self.structured_supported
        try:
            try:
                response = await self._create(request, structured=structured)
            except (openai.BadRequestError, openai.UnprocessableEntityError) as exc:
                if not (structured and is_schema_unsupported(exc)):
                    raise
                # The model ignores JSON schemas: remember, and ask again in free text.
                self.structured_supported = False
                response = await self._create(request, structured=False)
        except openai.OpenAIError as exc:
            raise self.classify(exc) from None
        except ValueError as exc:  # json.JSONDecodeError: a 200 with a broken body
            raise ProviderError(
                "malformed_reply",
                scrub(f"{self.where()}: the server's reply is not valid JSON ({exc})"[:_MAX_MESSAGE]),
                retryable=True,
            ) from None
        return self.read_reply(response)

    async def _create(self, request: CallRequest, *, structured: bool) -> Any:
        import httpx2

        body = self.request_body(request, structured=structured)
        # The SDK's documented raw-body call rather than chat.completions.create(): create() walks
        # every request through the SDK's TypedDict transform, which leaves a plain JSON body as it
        # is but cost ~1 ms of CPU per image call (a quarter of the client's CPU in the profile,
        # see tests/benchmarks/bench_providers.py). The body goes as bytes, and the reply comes back
        # as the HTTP response, read by ``read_reply`` (building the SDK's ChatCompletion model was
        # a tenth of the client's CPU per call). Auth, status errors and timeouts are the SDK's own.
        response = await self.client().post("/chat/completions", content=body, cast_to=httpx2.Response)
        return json.loads(response.content)

    def key_hint(self) -> str:
        """The env var(s) a person sets to fix an auth error."""
        return " or ".join(self.key_envs)

    def where(self) -> str:
        return f"{self.spec.raw} ({self.base_url() or 'api.openai.com'})"

    def classify(self, exc: openai.OpenAIError) -> ProviderError:
        """Map an SDK exception to a ProviderError (retryable or not, after how long)."""
        import openai

        where = self.where()
        if isinstance(exc, openai.APITimeoutError) and not _connection_failed(exc):
            return ProviderError("timeout", f"{where}: request timed out", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({type(cause).__name__}: {cause})" if cause else ""
            return ProviderError(
                "connection",
                scrub(f"{where}: connection failed{detail}"[:_MAX_MESSAGE]),
                retryable=True,
            )
        if isinstance(exc, openai.APIStatusError):
            return self.classify_status(exc)
        if isinstance(exc, openai.APIResponseValidationError):
            return ProviderError("malformed_reply", scrub(f"{where}: {exc}"[:_MAX_MESSAGE]), retryable=True)
        return ProviderError("unexpected", scrub(f"{where}: {type(exc).__name__}: {exc}"), retryable=False)

    def classify_status(self, exc: openai.APIStatusError) -> ProviderError:
        wait = retry_after_seconds(exc.response.headers)
        return self.status_error(exc.status_code, _server_message(exc), _error_code(exc), wait)

    def status_error(
        self, status: int, text: str, code: str = "", wait: float | None = None
    ) -> ProviderError:
        """The ProviderError for an HTTP status and the server's message (online calls and batch
        output lines share it)."""
        base = f"{self.where()}: HTTP {status}: {text[:_MAX_MESSAGE]}"

        def error(kind: str, hint: str = "", retryable: bool = False, wait: float | None = None):
            return ProviderError(
                kind, scrub(base + hint), retryable=retryable, retry_after=wait, status=status
            )

        if status == 429 and code == "insufficient_quota":
            return error("quota", " (the account has no quota left: check billing)")
        if status == 429:
            return error("rate_limited", retryable=True, wait=wait)
        if status >= 500 or status in (408, 409):
            return error("server_error", retryable=True, wait=wait)
        if status == 401:
            return error("auth", f" (check {self.key_hint()})")
        if status == 403:
            return error("permission", " (the key has no access to this model or region)")
        if status == 404:
            return error("not_found", f" (is {self.spec.model!r} a model this endpoint serves?)")
        if status == 413 or (status in (400, 422) and "image" in text.lower()):
            return error("image_rejected", " (the API did not accept the image)")
        if "temperature" in text.lower():  # reasoning models (o-series, gpt-5) take only the default
            return error(
                "bad_request", " (this model may accept only its default temperature: try --temperature 1)"
            )
        return error("bad_request")
