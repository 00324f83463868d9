"""The shared retry policy: attempts, waits, Retry-After cap, timeout, rate limit, never a crash."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from ingest.providers.base import Provider, ProviderError, ProviderOptions, Reply, parse_spec
from ingest.providers.retry import (
    RateLimiter,
    backoff_wait,
    call_with_retry,
    retry_after_seconds,
)
from tests.loopback import FakeSleep, make_request


class ScriptedProvider(Provider):
    """Each call takes the next item: an exception to raise, a delay in seconds, or a Reply."""

    name = "scripted"

    def __init__(self, script: list, **options):
        super().__init__(parse_spec("openai:test-model"), ProviderOptions(**options))
        self.script = list(script)
        self.calls = 0

    async def call(self, request):
        self.calls += 1
        step = self.script.pop(0) if self.script else Reply(text="Real.")
        if isinstance(step, BaseException):
            raise step
        if isinstance(step, float):
            await asyncio.sleep(step)
            return Reply(text="slow but fine")
        return step


def run(provider: Provider, sleep: FakeSleep | None = None, seed: int = 7, **kw):
    return asyncio.run(
        call_with_retry(provider, make_request(), sleep=sleep or FakeSleep(), rng=random.Random(seed), **kw)
    )


def rate_limited(after: float | None = None) -> ProviderError:
    return ProviderError("rate_limited", "HTTP 429: slow down", retryable=True, retry_after=after, status=429)


def server_error() -> ProviderError:
    return ProviderError("server_error", "HTTP 503: overloaded", retryable=True, status=503)


def test_ok_first_time_is_one_attempt_with_latency() -> None:
    outcome = run(ScriptedProvider([Reply(text="Synthetic.", finish_reason="stop")]))
    assert outcome.error is None and outcome.reply.text == "Synthetic."
    assert outcome.attempts == 1
    assert 0 <= outcome.latency_ms < 1000


def test_retry_after_is_waited_exactly_then_success() -> None:
    sleep = FakeSleep()
    outcome = run(ScriptedProvider([rate_limited(3.0), rate_limited(0.5), Reply(text="Real.")]), sleep)
    assert outcome.reply.text == "Real." and outcome.attempts == 3
    assert sleep.waits == [3.0, 0.5]


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    sleep = FakeSleep()
    provider = ScriptedProvider([server_error()] * 5, max_attempts=6, max_retry_wait_s=5.0)
    outcome = run(provider, sleep, seed=3)
    assert outcome.attempts == 6 and outcome.reply is not None
    expected_rng = random.Random(3)
    ceilings = [1.0, 2.0, 4.0, 5.0, 5.0]  # 1 s base, factor 2, capped at max_retry_wait_s
    assert sleep.waits == [expected_rng.uniform(0, c) for c in ceilings]
    assert all(0 <= w <= c for w, c in zip(sleep.waits, ceilings, strict=True))


def test_backoff_wait_bounds() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        for _ in range(50):
            assert 0 <= backoff_wait(attempt, 30.0, rng) <= min(30.0, 2 ** (attempt - 1))


def test_attempts_are_bounded_and_message_says_so() -> None:
    provider = ScriptedProvider([server_error()] * 10, max_attempts=3)
    outcome = run(provider)
    assert outcome.reply is None and provider.calls == 3
    assert outcome.attempts == 3
    assert outcome.error.error_type == "server_error"
    assert outcome.error.message == "HTTP 503: overloaded (gave up after 3 attempts)"


def test_non_retryable_is_final_at_once() -> None:
    sleep = FakeSleep()
    bad = ProviderError("image_rejected", "HTTP 400: invalid image", retryable=False, status=400)
    provider = ScriptedProvider([bad, Reply(text="never reached")])
    outcome = run(provider, sleep)
    assert (outcome.error.error_type, outcome.attempts, provider.calls) == ("image_rejected", 1, 1)
    assert outcome.error.message == "HTTP 400: invalid image"
    assert sleep.waits == []


def test_retry_after_above_cap_is_not_waited_but_recorded() -> None:
    sleep = FakeSleep()
    provider = ScriptedProvider([rate_limited(600.0), Reply(text="never reached")], max_retry_wait_s=60.0)
    outcome = run(provider, sleep)
    assert sleep.waits == [] and provider.calls == 1
    assert outcome.attempts == 1
    assert outcome.error.error_type == "rate_limited"
    assert "asked to wait 600 s, above the cap of 60 s" in outcome.error.message
    assert "--max-retry-wait" in outcome.error.message
    assert outcome.error.retry_after == 600.0


def test_server_error_with_long_retry_after_becomes_rate_limited() -> None:
    slow_down = ProviderError("server_error", "HTTP 503", retryable=True, retry_after=300.0, status=503)
    outcome = run(ScriptedProvider([slow_down], max_retry_wait_s=10.0))
    assert outcome.error.error_type == "rate_limited" and outcome.attempts == 1
    assert outcome.error.status == 503


def test_timeout_is_enforced_per_attempt() -> None:
    provider = ScriptedProvider([5.0, 5.0], timeout_s=0.05, max_attempts=2)
    outcome = run(provider)
    assert outcome.error.error_type == "timeout" and outcome.attempts == 2
    assert "no reply within 0.05 s" in outcome.error.message
    assert 40 <= outcome.latency_ms < 1000  # the last attempt: about the timeout


def test_timeout_then_success() -> None:
    outcome = run(ScriptedProvider([5.0, 0.0], timeout_s=0.05))
    assert outcome.reply.text == "slow but fine" and outcome.attempts == 2


def test_unexpected_exception_becomes_an_error_row_never_a_crash() -> None:
    provider = ScriptedProvider([KeyError("choices"), Reply(text="never reached")])
    outcome = run(provider)
    assert outcome.reply is None and outcome.attempts == 1
    assert outcome.error.error_type == "unexpected"
    assert outcome.error.message == "openai:test-model: KeyError: 'choices'"
    assert outcome.error.retryable is False


def test_cancellation_propagates() -> None:
    async def go() -> None:
        task = asyncio.create_task(call_with_retry(ScriptedProvider([10.0]), make_request()))
        await asyncio.sleep(0.01)
        task.cancel()
        await task

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(go())


def test_limiter_is_acquired_once_per_attempt() -> None:
    class CountingLimiter(RateLimiter):
        count = 0

        async def acquire(self) -> None:
            self.count += 1

    limiter = CountingLimiter(60)
    outcome = run(ScriptedProvider([server_error(), server_error()]), limiter=limiter)
    assert outcome.attempts == 3 and limiter.count == 3


def test_rate_limiter_spaces_requests() -> None:
    now = [100.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    limiter = RateLimiter(120, clock=lambda: now[0], sleep=sleep)  # one slot every 0.5 s

    async def go() -> None:
        for _ in range(4):
            await limiter.acquire()
        now[0] += 10.0  # idle for a while: the next slot is free at once
        await limiter.acquire()

    asyncio.run(go())
    assert waits == [0.5, 1.0, 1.5]


def test_rate_limiter_off() -> None:
    async def go() -> None:
        limiter = RateLimiter(None)
        for _ in range(1000):
            await limiter.acquire()

    asyncio.run(go())  # returns at once: no sleeping
    assert RateLimiter(0).interval == 0.0
    with pytest.raises(ValueError):
        RateLimiter(-5)


def test_retry_after_header_forms() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    future = datetime.now(UTC) + timedelta(seconds=30)
    assert 25 <= retry_after_seconds({"retry-after": format_datetime(future, usegmt=True)}) <= 31
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0
