"""``gemini:<model>``: the Gemini API through ``google-genai`` (the successor of the retired
``google-generativeai``).

The prepared image goes inline (``Part.from_bytes``) before the prompt text; the ``json`` prompt
adds ``response_mime_type=application/json`` and a response schema (a model that rejects JSON mode
with a 400 is asked once more without it, and that is remembered). SDK retries are off, the
timeout is given in milliseconds, as the SDK expects, and the transport is always httpx2 (see
``client``).

Refusals are replies, not errors: a candidate stopped for SAFETY (or another policy reason) gives
``Reply(text=None, finish_reason='SAFETY')``, a blocked prompt gives
``Reply(text=None, finish_reason='blocked:<REASON>')``, both with the reason kept in ``refusal``,
so the parser labels them ``refused``. No candidates and no block reason is an error
(``empty_reply``, not retryable): nothing says the model refused, and the row must not count as
an answer. Output tokens include thinking tokens, which Gemini bills as output: a thinking
model that spent its whole budget reports ``thoughtsTokenCount`` and no ``candidatesTokenCount``
(seen in recordings of the real API), and those tokens still cost. A reply stopped at
``MAX_TOKENS`` with no text is a ``truncated`` error row naming ``--max-tokens``, with its tokens
and cost kept; with text it is an answer (the parser reads what is there).

The SDK is imported on first use, so reading this module's registry entry loads no SDK.
"""

from __future__ import annotations

import functools
import json
import os
import re
from typing import TYPE_CHECKING, Any, ClassVar

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
    import httpx2
    from google import genai
    from google.genai import errors, types


@functools.cache
def response_schema() -> types.Schema:
    """The answer shape the ``json`` prompt asks for."""
    from google.genai import types

    return types.Schema(
        type=types.Type.OBJECT,
        properties={
            "label": types.Schema(type=types.Type.STRING, enum=["real", "synthetic", "uncertain"]),
            "confidence": types.Schema(type=types.Type.NUMBER),
            "interpretation": types.Schema(type=types.Type.STRING),
        },
        required=["label", "confidence", "interpretation"],
        # Said explicitly (the SDK adds the same when it sends a schema) so a batch input file,
        # which MedLens writes itself, asks for exactly what an online call asks for.
        property_ordering=["label", "confidence", "interpretation"],
    )


#: Finish reasons that mean a policy stopped the answer (the parser labels them refused).
POLICY_FINISH = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY", "RECITATION"}
_MAX_MESSAGE = 500
_DURATION = re.compile(r"^([0-9.]+)s$")


def _enum_name(value: Any) -> str | None:
    if value is None:
        return None
    return str(getattr(value, "value", None) or getattr(value, "name", None) or value)


def output_tokens(usage: Any) -> int | None:
    """Billed output tokens: the answer's plus the thinking tokens (either may be absent)."""
    if usage is None or (usage.candidates_token_count is None and usage.thoughts_token_count is None):
        return None
    return (usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0)


def read_reply(response: types.GenerateContentResponse, where: str = "gemini", max_tokens: int = 0) -> Reply:
    """Text, finish/block reason, model version and usage of a generateContent response."""
    usage = response.usage_metadata
    output = output_tokens(usage)
    common = {
        "model_version": response.model_version,
        "input_tokens": usage.prompt_token_count if usage is not None else None,
        "output_tokens": output,
    }
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _enum_name(feedback.block_reason)
        refusal = feedback.block_reason_message or f"prompt blocked: {reason}"
        return Reply(text=None, finish_reason=f"blocked:{reason}", refusal=refusal, **common)
    if not response.candidates:
        raise ProviderError(
            "empty_reply",
            f"{where}: the API answered with no candidates and no block reason (nothing to parse)",
            retryable=False,
        )
    candidate = response.candidates[0]
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    texts = [p.text for p in parts if p.text and not p.thought]
    finish = _enum_name(candidate.finish_reason)
    refusal = None
    if finish in POLICY_FINISH:
        ratings = candidate.safety_ratings or []
        flagged = [r for r in ratings if r.blocked] or [
            r for r in ratings if _enum_name(r.probability) in ("HIGH", "MEDIUM")
        ]
        blocked = [_enum_name(r.category) for r in flagged]
        refusal = f"stopped for {finish}" + (f" ({', '.join(blocked)})" if blocked else "")
    reply = Reply(text="".join(texts) if texts else None, finish_reason=finish, refusal=refusal, **common)
    if finish == "MAX_TOKENS" and not (reply.text or "").strip():
        raise truncated_error(where, reply, max_tokens)
    return reply


def _retry_delay(details: Any) -> float | None:
    """``RetryInfo.retryDelay`` ("13s") from a Google error body, if present."""
    error = details.get("error", details) if isinstance(details, dict) else {}
    for item in error.get("details", []) if isinstance(error, dict) else []:
        match = _DURATION.match(str(item.get("retryDelay", ""))) if isinstance(item, dict) else None
        if match:
            return float(match.group(1))
    return None


def _is_json_mode_unsupported(exc: errors.APIError) -> bool:
    text = f"{exc.message} {json.dumps(exc.details, default=str)}".lower()
    return exc.code == 400 and any(
        word in text for word in ("response_mime_type", "responsemimetype", "response_schema", "json mode")
    )


@provider(
    prefix="gemini",
    form="gemini:<model>",
    example="gemini:gemini-2.5-flash",
    summary="the Gemini API through google-genai (GOOGLE_GEMINI_BASE_URL redirects it)",
    keys=Keys(("GEMINI_API_KEY", "GOOGLE_API_KEY")),
    # Gemini Batch Mode: 50% of the online price (ai.google.dev/gemini-api/docs/batch-mode)
    price=PriceRule(image_tokens="gemini_tiles:258", batch_factor=0.5),
    capabilities=Capabilities(structured=True, batch=True, text_only=True),
    batch="ingest.providers.gemini_batch:GeminiBatch",
)
class GeminiProvider(Provider):
    base_url_env: ClassVar[str] = "GOOGLE_GEMINI_BASE_URL"

    def __init__(self, spec: ModelSpec, options: ProviderOptions):
        super().__init__(spec, options)
        self._client: genai.Client | None = None  # keep the reference: a temporary is closed
        self._http: httpx2.AsyncClient | None = None
        self.structured_supported = True

    def load(self) -> None:
        from google import genai  # noqa: F401 - imported before the first call (see Provider.load)

    def client_key(self) -> str | None:
        """The key, or an ``auth`` ProviderError naming the env vars when a required one is unset."""
        try:
            self.check_credentials()
        except MissingCredentials as exc:
            raise ProviderError("auth", str(exc), retryable=False) from None
        return self.api_key()

    def client(self) -> genai.Client:
        if self._client is None:
            import httpx2
            from google import genai
            from google.genai import types

            key = self.client_key()
            # Our own httpx2 client, always: when aiohttp is importable google-genai otherwise
            # switches to it, and on that path it silently retries dropped connections after a
            # 1-10 s sleep (uncounted attempts) and raises aiohttp's exceptions instead.
            pool = max(100, 2 * self.concurrency)
            self._http = httpx2.AsyncClient(
                limits=httpx2.Limits(max_connections=pool, max_keepalive_connections=pool)
            )
            http_options = types.HttpOptions(
                base_url=os.environ.get(self.base_url_env) or None,
                timeout=int(self.options.timeout_s * 1000),  # milliseconds
                retry_options=None,
                httpx_async_client=self._http,
            )
            self._client = genai.Client(api_key=key, vertexai=False, http_options=http_options)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
            self._client = None
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def build_config(self, *, structured: bool) -> types.GenerateContentConfig:
        from google.genai import types

        config = types.GenerateContentConfig(
            temperature=self.options.temperature, max_output_tokens=self.options.max_tokens
        )
        if structured:
            config.response_mime_type = "application/json"
            config.response_schema = response_schema()
        return config

    @staticmethod
    def build_contents(request: CallRequest) -> list[types.Content]:
        from google.genai import types

        parts = [types.Part.from_text(text=request.prompt_text)]
        if request.image is not None:  # the image goes first; a text-only request (a judge) has none
            parts.insert(0, types.Part.from_bytes(data=request.image, mime_type=request.mime))
        return [types.Content(role="user", parts=parts)]

    async def call(self, request: CallRequest) -> Reply:
        import httpx2
        from google.genai import errors

        structured = request.structured and self.structured_supported
        try:
            try:
                response = await self._generate(request, structured=structured)
            except errors.ClientError as exc:
                if not (structured and _is_json_mode_unsupported(exc)):
                    raise
                self.structured_supported = False
                response = await self._generate(request, structured=False)
        except errors.APIError as exc:
            raise self.classify_api_error(exc) from None
        except httpx2.TimeoutException:
            raise ProviderError("timeout", f"{self.spec.raw}: request timed out", retryable=True) from None
        except httpx2.TransportError as exc:
            message = f"{self.spec.raw}: connection failed ({type(exc).__name__}: {exc})"
            raise ProviderError("connection", scrub(message[:_MAX_MESSAGE]), retryable=True) from None
        except ValueError as exc:  # json.JSONDecodeError / pydantic: a 200 with a broken body
            message = f"{self.spec.raw}: the server's reply is not valid JSON ({exc})"
            raise ProviderError("malformed_reply", scrub(message[:_MAX_MESSAGE]), retryable=True) from None
        return read_reply(response, self.spec.raw, self.options.max_tokens)

    async def _generate(self, request: CallRequest, *, structured: bool) -> types.GenerateContentResponse:
        return await self.client().aio.models.generate_content(
            model=self.spec.model,
            contents=self.build_contents(request),
            config=self.build_config(structured=structured),
        )

    def classify_api_error(self, exc: errors.APIError) -> ProviderError:
        """Map a google-genai APIError (``.code`` is the HTTP status) to a ProviderError."""
        code = exc.code or 0
        text = str(exc.message or exc.status or exc)[:_MAX_MESSAGE]
        base = f"{self.spec.raw}: HTTP {code} {exc.status or ''}: {text}"

        def error(kind: str, hint: str = "", retryable: bool = False) -> ProviderError:
            headers = getattr(exc.response, "headers", None)
            wait = retry_after_seconds(headers) if retryable else None
            if retryable and wait is None:
                wait = _retry_delay(exc.details)
            return ProviderError(kind, scrub(base + hint), retryable=retryable, retry_after=wait, status=code)

        lowered = text.lower()
        if code == 429:
            return error("rate_limited", retryable=True)
        if code >= 500 or code == 408:
            return error("server_error", retryable=True)
        if code == 401 or (code in (400, 403) and "api key" in lowered):
            return error("auth", f" (check {' or '.join(self.key_envs)})")
        if code == 403:
            return error("permission", " (the key has no access to this model or region)")
        if code == 404:
            return error("not_found", f" (is {self.spec.model!r} a Gemini model name?)")
        if code == 413 or (code == 400 and ("image" in lowered or "inline_data" in lowered)):
            return error("image_rejected", " (the API did not accept the image)")
        return error("bad_request")
