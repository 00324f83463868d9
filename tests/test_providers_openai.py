"""openai: and compat: providers: the real openai SDK against a loopback Chat Completions server."""

from __future__ import annotations

import asyncio

import pytest

from cache.parse import parse_answer
from ingest.providers.base import (
    MissingCredentials,
    ProviderError,
    ProviderOptions,
    create_provider,
    parse_spec,
)
from ingest.providers.compat_provider import CompatProvider
from ingest.providers.openai_provider import OpenAIProvider
from ingest.providers.retry import ERROR_TYPES, call_with_retry
from tests import loopback
from tests.loopback import (
    OPENAI_TEST_KEY,
    TRANSPORT_FAULTS,
    USAGE_IN,
    USAGE_OUT,
    FakeSleep,
    OpenAIServer,
    check_fault,
    make_png,
    make_request,
    openai_image_bytes,
    openai_prompt_text,
    pixels,
    run_call,
)

openai_server = loopback.openai_server  # fixture


def openai(model: str = "gpt-4o", **options) -> OpenAIProvider:
    options.setdefault("timeout_s", 5.0)
    provider = create_provider(parse_spec(f"openai:{model}"), ProviderOptions(**options))
    assert isinstance(provider, OpenAIProvider)
    return provider


def test_request_carries_image_prompt_model_and_parameters(openai_server: OpenAIServer) -> None:
    image = make_png(80, 60, seed=11)
    provider = openai("gpt-4o", temperature=0.3, max_tokens=77, detail="low")
    outcome = run_call(provider, make_request(image, prompt="Real or synthetic? Explain."))
    assert outcome.error is None and outcome.attempts == 1

    (request,) = openai_server.requests
    body = request["body"]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {OPENAI_TEST_KEY}"
    assert body["model"] == "gpt-4o"
    assert body["temperature"] == 0.3 and body["max_completion_tokens"] == 77
    assert "response_format" not in body
    assert openai_prompt_text(body) == "Real or synthetic? Explain."
    mime, sent, detail = openai_image_bytes(body)  # standard base64 data URL
    assert (mime, detail) == ("image/png", "low")
    assert sent == image and pixels(sent) == pixels(image)

    reply = outcome.reply
    assert reply.text.startswith('{"label": "real"')
    assert reply.finish_reason == "stop" and reply.refusal is None
    assert reply.model_version == "gpt-4o-2024-08-06"
    assert (reply.input_tokens, reply.output_tokens) == (1234, 56)
    assert provider.params() == {"temperature": 0.3, "max_tokens": 77, "detail": "low"}


@pytest.mark.parametrize(
    "prompt",
    ["Real or synthetic? Répondez en français \u2028 \"quoted\" \\ back", "\x00medlens-image\x00", ""],
)
def test_a_prompt_that_mimics_the_image_slot_still_sends_its_own_text(
    openai_server: OpenAIServer, prompt: str
) -> None:
    """The body is serialised with the image spliced in as bytes: whatever the prompt holds (even the
    placeholder's own text), the server must read the prompt and the image exactly as given."""
    image = make_png(40, 30, seed=5)
    outcome = run_call(openai(), make_request(image, prompt=prompt))
    assert outcome.error is None
    (request,) = openai_server.requests
    assert openai_prompt_text(request["body"]) == prompt
    assert openai_image_bytes(request["body"])[1] == image


def test_structured_prompt_sends_a_strict_json_schema(openai_server: OpenAIServer) -> None:
    run_call(openai(), make_request(structured=True))
    response_format = openai_server.last_body()["response_format"]
    assert response_format["type"] == "json_schema"
    schema = response_format["json_schema"]
    assert schema["strict"] is True
    assert schema["schema"]["properties"]["label"]["enum"] == ["real", "synthetic", "uncertain"]
    assert schema["schema"]["properties"]["confidence"]["type"] == "number"
    assert set(schema["schema"]["required"]) == {"label", "confidence", "interpretation"}


def test_json_schema_rejected_falls_back_once_and_is_remembered(openai_server: OpenAIServer) -> None:
    openai_server.push(("no_json_schema",))
    provider = openai()

    async def two_calls():
        sleep = FakeSleep()
        first = await call_with_retry(provider, make_request(structured=True), sleep=sleep)
        second = await call_with_retry(provider, make_request(structured=True), sleep=sleep)
        await provider.aclose()
        return first, second

    first, second = asyncio.run(two_calls())
    assert first.reply.text and first.attempts == 1 and second.attempts == 1
    bodies = [r["body"] for r in openai_server.requests]
    assert ["response_format" in b for b in bodies] == [True, False, False]
    assert provider.structured_supported is False


def test_content_filter_is_a_reply_with_no_text(openai_server: OpenAIServer) -> None:
    openai_server.push(("content_filter",))
    outcome = run_call(openai(), make_request())
    assert outcome.error is None and outcome.attempts == 1
    assert outcome.reply.text is None and outcome.reply.finish_reason == "content_filter"
    parse = pytest.importorskip("cache.parse")
    assert parse.parse_answer(None, "content_filter", None).label == "refused"


# --- replies seen in recordings of the real API (STACK_NOTES; issue 8.7) ---------------------------


def test_a_refusal_keeps_its_sentence_as_the_answer_text(openai_server: OpenAIServer) -> None:
    sentence = "I'm sorry, but I can't help with identifying whether that image is real."
    openai_server.push(("refusal", sentence))
    reply = run_call(openai(), make_request()).reply
    assert (reply.text, reply.refusal, reply.finish_reason) == (sentence, sentence, "stop")
    assert parse_answer(reply.text, reply.finish_reason, reply.refusal).label == "refused"


def test_a_content_filter_choice_without_a_message_is_a_refusal(openai_server: OpenAIServer) -> None:
    openai_server.push(("no_message",))  # Azure's content filter
    outcome = run_call(openai(), make_request())
    assert outcome.error is None and outcome.attempts == 1
    assert (outcome.reply.text, outcome.reply.finish_reason) == (None, "content_filter")
    assert outcome.reply.input_tokens == USAGE_IN
    assert parse_answer(None, "content_filter", None).label == "refused"


@pytest.mark.parametrize("text", [None, ""])
def test_cut_off_with_no_text_is_a_truncated_error_naming_max_tokens(
    openai_server: OpenAIServer, text
) -> None:
    openai_server.push(("length", text))
    outcome = run_call(openai(max_tokens=64), make_request())
    assert outcome.reply is None and outcome.attempts == 1 and len(openai_server.requests) == 1
    error = outcome.error
    assert error.error_type == "truncated" and error.error_type in ERROR_TYPES and not error.retryable
    assert "raise --max-tokens (now 64)" in error.message and error.message.startswith("openai:gpt-4o")
    assert (error.reply.input_tokens, error.reply.output_tokens) == (USAGE_IN, USAGE_OUT)  # it was paid


def test_cut_off_with_text_is_an_answer(openai_server: OpenAIServer) -> None:
    openai_server.push(("length", "Synthetic. The vessel calibre is unnaturally"))
    reply = run_call(openai(max_tokens=12), make_request()).reply
    assert (reply.text, reply.finish_reason) == ("Synthetic. The vessel calibre is unnaturally", "length")
    assert parse_answer(reply.text, reply.finish_reason, reply.refusal).label == "synthetic"


FAULTS = TRANSPORT_FAULTS + [
    # script, options, expected (error_type or "ok"), attempts, waits
    ([("status", 429, {"Retry-After": "2"})], {}, "ok", 2, [2.0]),
    ([("status", 429, {"retry-after-ms": "1500"})], {}, "ok", 2, [1.5]),
    ([("status", 502)] * 3, {"max_attempts": 3}, "server_error", 3, None),
    ([("status", 429, {"Retry-After": "500"})], {"max_retry_wait_s": 60}, "rate_limited", 1, []),
    (
        [("status", 429, {}, "You exceeded your current quota", {"code": "insufficient_quota"})],
        {},
        "quota",
        1,
        [],
    ),
    ([("status", 400, {}, "Invalid value for 'temperature'")], {}, "bad_request", 1, []),
    ([("status", 400, {}, "Invalid image: could not decode image data")], {}, "image_rejected", 1, []),
    ([("status", 413, {}, "Request too large")], {}, "image_rejected", 1, []),
    ([("status", 401, {}, "Incorrect API key provided")], {}, "auth", 1, []),
    ([("status", 403, {}, "Project does not have access")], {}, "permission", 1, []),
    ([("status", 404, {}, "The model `gpt-9` does not exist")], {}, "not_found", 1, []),
]


@pytest.mark.parametrize(("script", "options", "expected", "attempts", "waits"), FAULTS)
def test_faults_end_as_ok_or_classified_error(
    openai_server: OpenAIServer, script, options, expected, attempts, waits
) -> None:
    check_fault(openai_server, openai(**options), script, expected, attempts, waits, "stop", "openai:gpt-4o")


def test_error_messages_say_what_to_do(openai_server: OpenAIServer) -> None:
    openai_server.push(("status", 401, {}, "Incorrect API key provided"))
    outcome = run_call(openai(), make_request())
    assert "HTTP 401: Incorrect API key provided" in outcome.error.message
    assert "check OPENAI_API_KEY" in outcome.error.message
    openai_server.push(("status", 404, {}, "The model `gpt-9` does not exist"))
    outcome = run_call(openai("gpt-9"), make_request())
    assert "is 'gpt-9' a model this endpoint serves?" in outcome.error.message
    openai_server.push(
        ("status", 400, {}, "Unsupported value: 'temperature' does not support 0.0 with this model.")
    )
    outcome = run_call(openai("gpt-5"), make_request())
    assert outcome.error.error_type == "bad_request" and "try --temperature 1" in outcome.error.message
    openai_server.push(*[("status", 503)] * 2)
    outcome = run_call(openai(max_attempts=2), make_request())
    assert outcome.error.message.endswith("HTTP 503: scripted failure (gave up after 2 attempts)")


def test_missing_key_stops_before_any_call(openai_server: OpenAIServer, monkeypatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY")
    provider = openai()
    with pytest.raises(MissingCredentials, match="set OPENAI_API_KEY"):
        provider.check_credentials()
    outcome = run_call(provider, make_request())
    assert outcome.error.error_type == "auth" and outcome.attempts == 1
    assert openai_server.requests == []


def test_concurrent_calls_share_one_client_and_keep_images_apart(openai_server: OpenAIServer) -> None:
    provider = openai()
    images = [make_png(16, 16, seed=i) for i in range(24)]

    async def many():
        outcomes = await asyncio.gather(
            *(
                call_with_retry(provider, make_request(img, prompt=f"image {i}"))
                for i, img in enumerate(images)
            )
        )
        client = provider.client()
        await provider.aclose()
        return outcomes, client

    outcomes, client = asyncio.run(many())
    assert all(o.error is None for o in outcomes)
    assert client.max_retries == 0
    sent = {openai_prompt_text(r["body"]): openai_image_bytes(r["body"])[1] for r in openai_server.requests}
    assert sent == {f"image {i}": img for i, img in enumerate(images)}


# --- compat: ---------------------------------------------------------------------------------


def compat(server: OpenAIServer, **options) -> CompatProvider:
    spec = parse_spec(f"compat:llava:13b@{server.base_url}")
    provider = create_provider(spec, ProviderOptions(timeout_s=5.0, **options))
    assert isinstance(provider, CompatProvider)
    return provider


def test_compat_without_key_sends_placeholder_and_max_tokens(monkeypatch) -> None:
    monkeypatch.delenv("MEDLENS_COMPAT_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-be-sent-0123456789")
    with OpenAIServer() as server:
        provider = compat(server, max_tokens=99)
        provider.check_credentials()  # no key needed
        outcome = run_call(provider, make_request(structured=True))
    assert outcome.error is None and outcome.reply.model_version == "llava:13b-2024-08-06"
    request = server.requests[0]
    assert request["headers"]["authorization"] == "Bearer not-needed"
    assert request["body"]["model"] == "llava:13b" and request["body"]["max_tokens"] == 99
    assert request["body"]["response_format"]["type"] == "json_schema"
    assert provider.concurrency == 4


def test_compat_key_from_env_and_from_named_env(monkeypatch) -> None:
    monkeypatch.setenv("MEDLENS_COMPAT_API_KEY", "sk-compat-default-key-123456")
    monkeypatch.setenv("VLLM_KEY", "token-vllm-9876543210")
    with OpenAIServer() as server:
        run_call(compat(server), make_request())
        run_call(compat(server, extra={"api_key_env": "VLLM_KEY"}), make_request())
        server.push(("status", 401, {}, "bad token"))
        outcome = run_call(compat(server, extra={"api_key_env": "VLLM_KEY"}), make_request())
    auth = [r["headers"]["authorization"] for r in server.requests]
    assert auth[:2] == ["Bearer sk-compat-default-key-123456", "Bearer token-vllm-9876543210"]
    assert outcome.error.error_type == "auth" and "check VLLM_KEY" in outcome.error.message


def test_compat_json_schema_fallback(monkeypatch) -> None:
    with OpenAIServer() as server:
        server.push(("no_json_schema",))
        outcome = run_call(compat(server), make_request(structured=True))
    assert outcome.error is None and outcome.attempts == 1
    assert ["response_format" in r["body"] for r in server.requests] == [True, False]


def test_compat_server_not_running_is_a_connection_error() -> None:
    with OpenAIServer() as server:
        base_url = server.base_url
    spec = parse_spec(f"compat:llava@{base_url}")  # the port is closed now
    provider = create_provider(spec, ProviderOptions(timeout_s=2.0, max_attempts=2))
    outcome = run_call(provider, make_request())
    assert outcome.error.error_type == "connection" and outcome.attempts == 2
    assert outcome.error.message.startswith(f"compat:llava@{base_url}: connection failed")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # a hostile or broken server: values of the wrong type count as absent, never crash the run
        ({"choices": [{"message": {"content": 123}, "finish_reason": ["stop"]}], "usage": "many"},
         (None, None, None, None)),
        ({"choices": [{"message": {"content": "Real."}}], "usage": {"prompt_tokens": True,
          "completion_tokens": 9}, "model": {"x": 1}}, ("Real.", None, None, 9)),
        ({"choices": ["not an object"]}, (None, None, None, None)),
    ],
)
def test_reply_fields_of_the_wrong_type_count_as_absent(body, expected) -> None:
    reply = openai().read_reply(body)
    assert (reply.text, reply.model_version, reply.input_tokens, reply.output_tokens) == expected


@pytest.mark.parametrize("body", [{}, {"choices": []}, {"choices": {"0": {}}}, ["choices"], None])
def test_a_reply_without_a_list_of_choices_is_an_empty_reply(body) -> None:
    with pytest.raises(ProviderError) as raised:
        openai().read_reply(body)
    assert raised.value.error_type == "empty_reply" and not raised.value.retryable
