"""gemini: provider: the real google-genai SDK against a loopback generateContent server."""

from __future__ import annotations

import asyncio

import pytest

from cache.parse import parse_answer
from ingest.providers.base import MissingCredentials, ProviderOptions, create_provider, parse_spec
from ingest.providers.gemini_provider import GeminiProvider
from ingest.providers.retry import call_with_retry
from tests import loopback
from tests.loopback import (
    GEMINI_TEST_KEY,
    TRANSPORT_FAULTS,
    USAGE_IN,
    USAGE_OUT,
    USAGE_THOUGHTS,
    FakeSleep,
    GeminiServer,
    check_fault,
    gemini_image_bytes,
    gemini_parts,
    make_png,
    make_request,
    pixels,
    run_call,
)

gemini_server = loopback.gemini_server  # fixture


def gemini(model: str = "gemini-2.5-flash", **options) -> GeminiProvider:
    options.setdefault("timeout_s", 5.0)
    provider = create_provider(parse_spec(f"gemini:{model}"), ProviderOptions(**options))
    assert isinstance(provider, GeminiProvider)
    return provider


def config(body: dict) -> dict:
    return body.get("generationConfig") or body.get("generation_config")


def test_request_carries_image_prompt_model_and_parameters(gemini_server: GeminiServer) -> None:
    image = make_png(72, 40, seed=5)
    provider = gemini(temperature=0.2, max_tokens=321)
    outcome = run_call(provider, make_request(image, prompt="Is this fundus photograph real?"))
    assert outcome.error is None and outcome.attempts == 1

    (request,) = gemini_server.requests
    assert request["path"].endswith("/models/gemini-2.5-flash:generateContent")
    assert request["headers"]["x-goog-api-key"] == GEMINI_TEST_KEY
    body = request["body"]
    mime, sent = gemini_image_bytes(body)  # URL-safe base64 inline data
    assert mime == "image/png" and sent == image and pixels(sent) == pixels(image)
    texts = [p["text"] for p in gemini_parts(body) if "text" in p]
    assert texts == ["Is this fundus photograph real?"]
    generation = config(body)
    assert generation["temperature"] == 0.2
    assert (generation.get("maxOutputTokens") or generation.get("max_output_tokens")) == 321
    assert not (generation.get("responseMimeType") or generation.get("response_mime_type"))

    reply = outcome.reply
    assert reply.text.startswith('{"label": "real"') and reply.finish_reason == "STOP"
    assert reply.model_version == "gemini-2.5-flash-001"
    assert (reply.input_tokens, reply.output_tokens) == (1234, 56)
    assert reply.refusal is None


def test_structured_prompt_sends_a_response_schema(gemini_server: GeminiServer) -> None:
    run_call(gemini(), make_request(structured=True))
    generation = config(gemini_server.last_body())
    assert (generation.get("responseMimeType") or generation.get("response_mime_type")) == "application/json"
    schema = generation.get("responseSchema") or generation.get("response_schema")
    assert schema["properties"]["label"]["enum"] == ["real", "synthetic", "uncertain"]
    assert set(schema["required"]) == {"label", "confidence", "interpretation"}


def test_json_mode_rejected_falls_back_once_and_is_remembered(gemini_server: GeminiServer) -> None:
    gemini_server.push(("status", 400, {}, "JSON mode is not enabled for models/gemma-3-27b-it"))
    provider = gemini("gemma-3-27b-it")

    async def two_calls():
        first = await call_with_retry(provider, make_request(structured=True), sleep=FakeSleep())
        second = await call_with_retry(provider, make_request(structured=True), sleep=FakeSleep())
        await provider.aclose()
        return first, second

    first, second = asyncio.run(two_calls())
    assert first.reply.text and first.attempts == 1 and second.reply.text
    has_mime = [bool(config(r["body"]).get("responseMimeType")) for r in gemini_server.requests]
    assert has_mime == [True, False, False]


def test_safety_stop_is_a_refusal_with_its_reason(gemini_server: GeminiServer) -> None:
    gemini_server.push(("safety",))
    outcome = run_call(gemini(), make_request())
    assert outcome.error is None and outcome.attempts == 1
    reply = outcome.reply
    assert reply.text is None and reply.finish_reason == "SAFETY"
    assert reply.refusal == "stopped for SAFETY (HARM_CATEGORY_DANGEROUS_CONTENT)"
    assert reply.model_version == "gemini-2.5-flash-001" and reply.input_tokens == 1234
    parse = pytest.importorskip("cache.parse")
    assert parse.parse_answer(reply.text, reply.finish_reason, reply.refusal).label == "refused"


def test_blocked_prompt_is_a_refusal_with_the_block_reason(gemini_server: GeminiServer) -> None:
    gemini_server.push(("blocked_prompt", "PROHIBITED_CONTENT"))
    outcome = run_call(gemini(), make_request())
    reply = outcome.reply
    assert outcome.attempts == 1
    assert reply.text is None and reply.finish_reason == "blocked:PROHIBITED_CONTENT"
    assert reply.refusal == "prompt blocked: PROHIBITED_CONTENT"
    parse = pytest.importorskip("cache.parse")
    assert parse.parse_answer(reply.text, reply.finish_reason, reply.refusal).label == "refused"


FAULTS = TRANSPORT_FAULTS + [
    # script, options, expected (error_type or "ok"), attempts, waits
    ([("status", 429, {"Retry-After": "3"}, "Resource has been exhausted")], {}, "ok", 2, [3.0]),
    (
        [("status", 429, {}, "Quota exceeded", {"details": [{"retryDelay": "7s"}]})],
        {},
        "ok",
        2,
        [7.0],
    ),
    ([("status", 429, {"Retry-After": "900"})], {"max_retry_wait_s": 60}, "rate_limited", 1, []),
    ([("status", 503)] * 3, {"max_attempts": 3}, "server_error", 3, None),
    ([("status", 400, {}, "API key not valid. Please pass a valid API key.")], {}, "auth", 1, []),
    ([("status", 400, {}, "Unable to process input image.")], {}, "image_rejected", 1, []),
    ([("status", 400, {}, "Invalid value at 'generation_config.temperature'")], {}, "bad_request", 1, []),
    ([("status", 403, {}, "Permission denied")], {}, "permission", 1, []),
    ([("status", 404, {}, "models/gemini-9 is not found")], {}, "not_found", 1, []),
]


# --- replies seen in recordings of the real API (STACK_NOTES; issue 8.7) ---------------------------


def test_a_whole_budget_spent_thinking_is_a_paid_truncated_error(gemini_server: GeminiServer) -> None:
    gemini_server.push(("thinking_budget",))  # thoughtsTokenCount, no candidatesTokenCount, no text
    outcome = run_call(gemini(max_tokens=300), make_request())
    assert outcome.reply is None and outcome.attempts == 1
    error = outcome.error
    assert error.error_type == "truncated" and not error.retryable
    assert "MAX_TOKENS" in error.message and "raise --max-tokens (now 300)" in error.message
    assert (error.reply.input_tokens, error.reply.output_tokens) == (USAGE_IN, USAGE_THOUGHTS)


def test_thinking_tokens_count_as_output_next_to_the_answer(gemini_server: GeminiServer) -> None:
    gemini_server.push(("thoughts", "Real. A normal optic disc."))
    reply = run_call(gemini(), make_request()).reply
    assert reply.text == "Real. A normal optic disc." and reply.output_tokens == USAGE_OUT + USAGE_THOUGHTS


def test_cut_off_with_text_is_an_answer(gemini_server: GeminiServer) -> None:
    gemini_server.push(("max_tokens", "Synthetic. The vessels branch too"))
    reply = run_call(gemini(), make_request()).reply
    assert (reply.text, reply.finish_reason) == ("Synthetic. The vessels branch too", "MAX_TOKENS")
    assert parse_answer(reply.text, reply.finish_reason, reply.refusal).label == "synthetic"


@pytest.mark.parametrize(("script", "options", "expected", "attempts", "waits"), FAULTS)
def test_faults_end_as_ok_or_classified_error(
    gemini_server: GeminiServer, script, options, expected, attempts, waits
) -> None:
    check_fault(
        gemini_server, gemini(**options), script, expected, attempts, waits, "STOP", "gemini:gemini-2.5-flash"
    )


def test_error_messages_say_what_to_do(gemini_server: GeminiServer) -> None:
    gemini_server.push(("status", 400, {}, "API key not valid. Please pass a valid API key."))
    outcome = run_call(gemini(), make_request())
    assert "HTTP 400 INVALID_ARGUMENT: API key not valid" in outcome.error.message
    assert "check GEMINI_API_KEY or GOOGLE_API_KEY" in outcome.error.message
    gemini_server.push(("empty_candidates",))
    outcome = run_call(gemini(), make_request())
    assert "no candidates and no block reason" in outcome.error.message


def test_missing_key_stops_before_any_call(gemini_server: GeminiServer, monkeypatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    provider = gemini()
    with pytest.raises(MissingCredentials, match="set GEMINI_API_KEY or GOOGLE_API_KEY"):
        provider.check_credentials()
    outcome = run_call(provider, make_request())
    assert outcome.error.error_type == "auth" and outcome.attempts == 1
    assert gemini_server.requests == []


def test_google_api_key_is_accepted(gemini_server: GeminiServer, monkeypatch) -> None:
    monkeypatch.delenv("GEMINI_API_KEY")
    monkeypatch.setenv("GOOGLE_API_KEY", "AIzaOtherKeyForGoogle0123456789")
    outcome = run_call(gemini(), make_request())
    assert outcome.error is None
    assert gemini_server.requests[0]["headers"]["x-goog-api-key"] == "AIzaOtherKeyForGoogle0123456789"


def test_concurrent_calls_share_one_client_and_keep_images_apart(gemini_server: GeminiServer) -> None:
    provider = gemini()
    images = [make_png(16, 16, seed=i) for i in range(16)]

    async def many():
        outcomes = await asyncio.gather(
            *(
                call_with_retry(provider, make_request(img, prompt=f"image {i}"))
                for i, img in enumerate(images)
            )
        )
        await provider.aclose()
        return outcomes

    assert all(o.error is None for o in asyncio.run(many()))
    sent = {}
    for request in gemini_server.requests:
        text = next(p["text"] for p in gemini_parts(request["body"]) if "text" in p)
        sent[text] = gemini_image_bytes(request["body"])[1]
    assert sent == {f"image {i}": img for i, img in enumerate(images)}
