"""One retry policy for every provider (SDK retries are always off).

``call_with_retry`` makes up to ``options.max_attempts`` calls of ``provider.call``. It retries only
errors the provider classified as retryable; it waits what the server asked for (Retry-After) when
that is at most ``options.max_retry_wait_s``, otherwise exponential backoff with full jitter (base
1 s, factor 2, capped at ``max_retry_wait_s``). A Retry-After above the cap is not waited out: the
call ends at once as ``rate_limited`` with a message naming the option that raises the cap.

Each attempt is bounded by ``options.timeout_s`` and, when a ``RateLimiter`` is given, waits for a
requests-per-minute slot. Whatever happens, the caller gets a ``CallOutcome``: never an exception
(except cancellation), and never a message that contains a secret (see ``scrub``).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from cache.redact import KEY_ENVS, REDACTED, register_key_env, scrub_secrets  # noqa: F401 (re-exported)
from ingest.providers.base import CallRequest, Provider, ProviderError, Reply

#: The ``error_type`` vocabulary of provider errors (the store's ``error_type`` column).
ERROR_TYPES: dict[str, str] = {
    "rate_limited": "HTTP 429, or a Retry-After above the cap (then not waited out); retried",
    "quota": "the account has no quota or credit left (OpenAI insufficient_quota); not retried",
    "server_error": "HTTP 5xx, 408 or 409; retried",
    "timeout": "no reply within the per-call timeout; retried",
    "connection": "connection refused, reset or dropped; retried",
    "malformed_reply": "a 200 whose body is not valid JSON; retried",
    "empty_reply": "no choices / no candidates and no block reason; not retried",
    "truncated": "the reply hit the token limit (finish_reason length, MAX_TOKENS) before any answer "
    "text; not retried in the run, retried by the next (raise --max-tokens)",
    "auth": "key missing (before any call) or rejected (401; Gemini 400 'API key not valid'); not retried",
    "permission": "HTTP 403; not retried",
    "not_found": "HTTP 404, e.g. an unknown model name; not retried",
    "image_rejected": "HTTP 413, or a 400/422 that mentions the image; not retried",
    "bad_request": "any other 4xx; not retried",
    "unexpected": "an exception no provider classified (a bug): recorded, not retried",
}

BACKOFF_BASE_S = 1.0
BACKOFF_FACTOR = 2.0
#: the jitter of every call that brings no ``rng`` of its own (seeding one per call from the OS was
#: 13 of the retry path's 85 py-spy samples over a 2,000-call ``ingest run``)
_JITTER = random.Random()

Sleep = Callable[[float], Awaitable[None]]


@dataclass
class CallOutcome:
    """The end of one logical call: a reply or a final error, and how many calls it took."""

    reply: Reply | None
    error: ProviderError | None
    attempts: int
    latency_ms: float  # wall time of the last attempt


class RateLimiter:
    """Requests-per-minute limit shared by all calls of one provider: slots spaced 60/rpm s apart.

    ``rpm=None`` (or 0) means no limit. ``acquire`` reserves the next free slot and sleeps until it;
    there is no await between reading and reserving, so no lock is needed in one event loop.
    """

    def __init__(
        self,
        rpm: float | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ):
        if rpm is not None and rpm < 0:
            raise ValueError("--rpm must be positive")
        self.interval = 60.0 / rpm if rpm else 0.0
        self._clock = clock
        self._sleep = sleep
        self._next_slot = float("-inf")

    async def acquire(self) -> None:
        if not self.interval:
            return
        now = self._clock()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self.interval
        if slot > now:
            await self._sleep(slot - now)


# --- secrets: one scrubber for the project (cache.redact) ----------------------------------------

# The registry hands every entry's key env vars to cache.redact as it finds the entry (the first
# spec parsed finds them all), so the one scrubber knows every provider's key names.
scrub = scrub_secrets  # the name the providers use


def scrubbed(error: ProviderError, suffix: str = "") -> ProviderError:
    """A copy of ``error`` with a scrubbed message (and ``suffix`` appended)."""
    return ProviderError(
        error.error_type,
        scrub(error.message + suffix),
        retryable=error.retryable,
        retry_after=error.retry_after,
        status=error.status,
        reply=error.reply,
    )


# --- the policy --------------------------------------------------------------------------------


def backoff_wait(attempt: int, cap: float, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * factor**(attempt-1))] after attempt ``attempt``."""
    ceiling = min(cap, BACKOFF_BASE_S * BACKOFF_FACTOR ** (attempt - 1))
    return rng.uniform(0.0, ceiling)


def _over_cap(error: ProviderError, cap: float) -> bool:
    return error.retry_after is not None and error.retry_after > cap


async def _one_attempt(provider: Provider, request: CallRequest) -> Reply:
    """One call, bounded by the timeout; every failure comes out as a ProviderError."""
    timeout = provider.options.timeout_s
    try:
        async with asyncio.timeout(timeout):  # no task of its own per call, unlike wait_for
            return await provider.call(request)
    except ProviderError:
        raise
    except TimeoutError:
        raise ProviderError(
            "timeout",
            f"{provider.spec.raw}: no reply within {timeout:g} s (raise the per-call timeout if the model is slow)",
            retryable=True,
        ) from None
    except Exception as exc:  # noqa: BLE001  (a provider bug or SDK surprise: recorded, never fatal)
        message = f"{provider.spec.raw}: {type(exc).__name__}: {exc}"
        raise ProviderError("unexpected", scrub(message), retryable=False) from None


async def call_with_retry(
    provider: Provider,
    request: CallRequest,
    *,
    limiter: RateLimiter | None = None,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
) -> CallOutcome:
    """Call ``provider`` with the shared retry policy; always returns a ``CallOutcome``.

    A plain loop rather than a retry library's iterator: the first attempt, which is almost every
    call, costs the event loop nothing beyond the call itself (the loop's CPU bounds a run's calls
    per second; tenacity's per-call set-up was a fifth of what the runner adds to the SDK)."""
    options = provider.options
    cap = options.max_retry_wait_s
    rng = rng or _JITTER
    provider.load()  # the SDK is imported before the first attempt's timeout starts (once per process)
    attempt = 0
    while True:
        attempt += 1
        if limiter is not None:
            await limiter.acquire()
        started = time.perf_counter()
        try:
            reply = await _one_attempt(provider, request)
        except ProviderError as error:
            latency_ms = (time.perf_counter() - started) * 1000.0
            if attempt >= options.max_attempts or not error.retryable or _over_cap(error, cap):
                return CallOutcome(None, _final_error(error, cap, attempt), attempt, latency_ms)
            wait = error.retry_after if error.retry_after is not None else backoff_wait(attempt, cap, rng)
            await sleep(max(0.0, wait))
            continue
        return CallOutcome(reply, None, attempt, (time.perf_counter() - started) * 1000.0)


def _final_error(error: ProviderError, cap: float, attempts: int) -> ProviderError:
    if _over_cap(error, cap):
        final = ProviderError(
            "rate_limited",
            f"{error.message}; the server asked to wait {error.retry_after:g} s, above the cap of "
            f"{cap:g} s, so the call was not retried (raise max_retry_wait_s, "
            "CLI --max-retry-wait, to wait that long)",
            retryable=True,
            retry_after=error.retry_after,
            status=error.status,
        )
        return scrubbed(final)
    if error.retryable and attempts > 1:
        return scrubbed(error, f" (gave up after {attempts} attempts)")
    return scrubbed(error)


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or an
    HTTP date); None when absent or unreadable. ``headers`` is any case-insensitive mapping."""
    if headers is None:
        return None
    try:
        value = headers.get("retry-after-ms")
        if value is not None:
            return max(0.0, float(value) / 1000.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(0.0, float(value))
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, AttributeError):
        return None
