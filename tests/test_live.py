"""Opt-in smoke tests against the real APIs: one small image each. They cost a fraction of a cent.

Run with ``pytest tests/test_live.py --live`` and the provider's key set; without ``--live`` they
are skipped by conftest, and without the key each test skips itself. The base-URL overrides are
cleared so a test never talks to a loopback server by accident.
"""

from __future__ import annotations

import os

import pytest

from ingest.pricing import PriceTable
from ingest.providers.base import ProviderOptions, create_provider, parse_spec
from tests.loopback import make_png, make_request, run_call

pytestmark = pytest.mark.live

LIVE_MODELS = [
    ("openai:gpt-4o-mini", ("OPENAI_API_KEY",)),
    ("gemini:gemini-2.5-flash", ("GEMINI_API_KEY", "GOOGLE_API_KEY")),
]


@pytest.mark.parametrize(("spec", "key_envs"), LIVE_MODELS, ids=[m for m, _ in LIVE_MODELS])
@pytest.mark.parametrize("structured", [False, True], ids=["free_text", "json"])
def test_one_small_image(spec: str, key_envs: tuple[str, ...], structured: bool, monkeypatch) -> None:
    if not any(os.environ.get(env) for env in key_envs):
        pytest.skip(f"{spec}: set {' or '.join(key_envs)} to run this live test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    provider = create_provider(
        parse_spec(spec), ProviderOptions(max_tokens=400, timeout_s=60, max_attempts=3)
    )
    provider.check_credentials()
    prompt = (
        'Reply with a JSON object {"label": "real"|"synthetic"|"uncertain", "confidence": 0-1, '
        '"interpretation": "..."}: is this small test pattern a real medical image?'
        if structured
        else "Is this small test pattern a real medical image? Answer Real, Synthetic or Uncertain, then one sentence."
    )
    outcome = run_call(
        provider, make_request(make_png(128, 128, seed=3), prompt=prompt, structured=structured)
    )
    assert outcome.error is None, f"{outcome.error.error_type}: {outcome.error.message}"
    reply = outcome.reply
    assert reply.text or reply.refusal or reply.finish_reason, reply
    assert reply.model_version
    assert reply.input_tokens and reply.input_tokens > 50  # the image was counted
    cost = PriceTable.load().cost(provider.spec, reply.input_tokens, reply.output_tokens)
    assert cost is not None and 0 < cost < 0.05
