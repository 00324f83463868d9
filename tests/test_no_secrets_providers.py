"""No API key ever appears in a provider error: every fault, key echoed by the server, crashes."""

from __future__ import annotations

import asyncio

import pytest

from ingest.providers.base import Provider, ProviderOptions, create_provider, parse_spec
from ingest.providers.retry import REDACTED, call_with_retry, scrub
from tests.loopback import GeminiServer, OpenAIServer, make_request, run_call

OPENAI_KEY = "sk-proj-SECRETopenai0123456789abcdefXYZ"
GEMINI_KEY = "AIzaSySECRETgemini0123456789abcdefXYZ"
COMPAT_KEY = "local-SECRET-compat-0123456789"  # no recognisable shape: only the env scrub catches it
KEYS = (OPENAI_KEY, GEMINI_KEY, COMPAT_KEY)


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    monkeypatch.setenv("MEDLENS_COMPAT_API_KEY", COMPAT_KEY)


def assert_clean(*texts: object) -> None:
    for text in map(str, texts):
        for key in KEYS:
            assert key not in text
            assert key[6:22] not in text  # not even a fragment


def echo_key(key: str) -> list[tuple]:
    """Server faults whose messages carry the key, as a careless proxy or local server might."""
    return [
        ("status", 401, {}, f"Incorrect API key provided: {key}"),
        ("status", 400, {}, f"bad request (api_key={key}) image could not be decoded"),
        ("status", 403, {}, f"Authorization: Bearer {key} has no access"),
        ("status", 404, {}, f"model not found for key {key}"),
        ("status", 429, {"Retry-After": "9999"}, f"quota for {key} exhausted"),
        ("status", 500, {}, f"internal error while checking {key}"),
    ]


FAULTS = [("malformed",), ("drop",), ("sleep", 1.0), ("content_filter",), ("empty_candidates",)]


def run_faults(provider_spec: str, server_cls: type, env: str, key: str, monkeypatch) -> list:
    outcomes = []
    with server_cls() as server:
        monkeypatch.setenv(env, server.base_url)
        spec = provider_spec.format(base_url=getattr(server, "base_url", ""))
        for behaviour in [*echo_key(key), *FAULTS]:
            server.push(behaviour)
            options = ProviderOptions(timeout_s=0.3, max_attempts=1, max_retry_wait_s=60)
            provider = create_provider(parse_spec(spec), options)
            outcomes.append(run_call(provider, make_request()))
    return outcomes


@pytest.mark.parametrize(
    ("spec", "server_cls", "env", "key"),
    [
        ("openai:gpt-4o", OpenAIServer, "OPENAI_BASE_URL", OPENAI_KEY),
        ("compat:llava@{base_url}", OpenAIServer, "UNUSED_BASE_URL", COMPAT_KEY),
        ("gemini:gemini-2.5-flash", GeminiServer, "GOOGLE_GEMINI_BASE_URL", GEMINI_KEY),
    ],
)
def test_every_fault_message_is_free_of_keys(spec, server_cls, env, key, monkeypatch) -> None:
    outcomes = run_faults(spec, server_cls, env, key, monkeypatch)
    errors = [o.error for o in outcomes if o.error is not None]
    assert len(errors) >= 8  # the echoed ones and the transport faults all ended as errors
    for error in errors:
        assert_clean(error.message, error, repr(error), error.args)
    assert any(REDACTED in e.message for e in errors)  # the echoed key was there, and removed


def test_unexpected_exception_carrying_a_key_is_scrubbed() -> None:
    class Leaky(Provider):
        name = "leaky"

        async def call(self, request):
            raise RuntimeError(f"client built with api_key={OPENAI_KEY} and {COMPAT_KEY}")

    provider = Leaky(parse_spec("openai:gpt-4o"), ProviderOptions())
    outcome = asyncio.run(call_with_retry(provider, make_request()))
    assert outcome.error.error_type == "unexpected"
    assert_clean(outcome.error.message, outcome.error)
    assert "RuntimeError: client built with api_key=" in outcome.error.message


def test_scrub_removes_key_shapes_and_env_values(monkeypatch) -> None:
    monkeypatch.setenv("SOME_SERVICE_TOKEN", "tok_abcdefghijklmnop")
    text = scrub(
        f"{OPENAI_KEY} | sk-other-1234567890abcdef | AIzaSyAnotherKey_0123456789-abc | "
        f"Bearer eyJhbGciOi.payload.sig | ?key=plainvalue&x=1 | x-goog-api-key: zzzzzzzz | "
        f"{COMPAT_KEY} | tok_abcdefghijklmnop"
    )
    assert_clean(text)
    for fragment in ("sk-other", "AIzaSyAnother", "eyJhbGciOi", "plainvalue", "zzzzzzzz", "tok_abc"):
        assert fragment not in text
    assert text.count(REDACTED) == 8
    assert "?key=[redacted]&x=1" in text and "Bearer [redacted]" in text


def test_compat_named_key_env_is_scrubbed(monkeypatch) -> None:
    monkeypatch.setenv("MY_LOCAL_CREDS", "opaque-credential-value-42")
    with OpenAIServer() as server:
        server.push(("status", 401, {}, "rejected opaque-credential-value-42"))
        spec = parse_spec(f"compat:llava@{server.base_url}")
        provider = create_provider(spec, ProviderOptions(extra={"api_key_env": "MY_LOCAL_CREDS"}))
        outcome = run_call(provider, make_request())
    assert server.requests[0]["headers"]["authorization"] == "Bearer opaque-credential-value-42"
    assert outcome.error.error_type == "auth"
    assert (
        "opaque-credential" not in outcome.error.message and "check MY_LOCAL_CREDS" in outcome.error.message
    )


def test_scrub_leaves_ordinary_text_alone() -> None:
    text = "openai:gpt-4o: HTTP 400: Invalid image; ask-me-later is not a key; risk-free"
    assert scrub(text) == text
