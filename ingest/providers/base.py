"""The provider interface: one small module per provider, one retry policy for all of them.

A provider builds a request from a prepared image and a prompt, makes one call, and turns the reply
into text + finish reason + usage (``Reply``). It classifies its own failures as ``ProviderError``
(retryable or not, after how long); the shared loop in ``ingest.providers.retry`` retries. SDK
retries are always off so that attempts are counted and Retry-After is honoured in one place.
What MedLens knows about a provider besides its calls (spec form, key env vars, local or remote,
price rule, capabilities) is its entry in ``ingest.providers.registry``. A provider that decides
locally after seeing the whole manifest is a ``LocalDetector`` (capability ``local_detector``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class SpecError(ValueError):
    """A model spec that cannot be understood (exit code 2 at the CLI)."""


class MissingCredentials(RuntimeError):
    """A provider's key is not set; raised before any call is made."""


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec; each provider's registry entry says which forms it accepts
    (``python -m ingest models`` lists them)."""

    provider: str
    model: str
    base_url: str | None
    raw: str
    #: things the parser changed or dropped that the user should hear about (not part of identity)
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def name(self) -> str:
        """The model column of the store: the spec as the user wrote it (minus any credentials)."""
        return self.raw


def parse_spec(spec: str) -> ModelSpec:
    """Split and validate a model spec (``ingest.providers.registry.parse_spec``)."""
    from ingest.providers.registry import parse_spec as parse

    return parse(spec)


@dataclass(frozen=True)
class ProviderOptions:
    """Options shared by every provider; validated once, before any call."""

    temperature: float = 0.0
    max_tokens: int = 1024
    detail: str = "high"  # OpenAI image detail: high | low | auto
    timeout_s: float = 120.0
    max_attempts: int = 6
    max_retry_wait_s: float = 120.0  # cap on a single Retry-After / backoff wait
    concurrency: int | None = None  # None: the provider's default
    rpm: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.detail not in ("high", "low", "auto"):
            raise SpecError(f"--detail {self.detail!r}: use high, low or auto")
        if self.max_attempts < 1:
            raise SpecError("--max-attempts must be at least 1")
        if self.timeout_s <= 0:
            raise SpecError("--timeout must be positive")


@dataclass(frozen=True)
class CallRequest:
    """One image (or none, for a text-only request) and one prompt, ready to send."""

    image: bytes | None
    mime: str
    image_sha256: str
    prompt_id: str
    prompt_text: str
    modality: str = ""
    structured: bool = False  # the prompt asks for {"label","confidence","interpretation"}


@dataclass
class Reply:
    """What a call returned. ``label``/``confidence``/``interpretation`` are set only by providers
    that decide locally (the baseline); for the others the shared parser reads ``text``."""

    text: str | None
    finish_reason: str | None = None
    refusal: str | None = None
    model_version: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    label: str | None = None
    confidence: float | None = None
    interpretation: str | None = None


class ProviderError(Exception):
    """A failed call, classified by the provider.

    ``error_type`` is short and stable (the vocabulary is ``retry.ERROR_TYPES``); the message says
    what a person can do about it and never contains a secret. ``reply`` keeps what a paid but
    unusable reply reported (tokens, finish reason, model version: a truncated reply still costs).
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
        reply: Reply | None = None,
    ):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.reply = reply


def truncated_error(where: str, reply: Reply, max_tokens: int) -> ProviderError:
    """A reply stopped by the token limit before any answer text: an error row, not an answer.

    Not retried within the run (the same request hits the same limit); the key stays open, so a
    later run calls it again, and a run with a larger ``--max-tokens`` asks for more room.
    """
    spent = f"{reply.output_tokens} output tokens" if reply.output_tokens is not None else "the output budget"
    return ProviderError(
        "truncated",
        f"{where}: the reply stopped at the token limit ({reply.finish_reason}) before any answer text, "
        f"after {spent} (thinking models spend it before answering); raise --max-tokens (now "
        f"{max_tokens}) and run again",
        retryable=False,
        reply=reply,
    )


class Provider(ABC):
    """Base class: a subclass implements ``call``; its registry entry holds everything else
    (key env vars, local or remote, default concurrency, price rule, capabilities)."""

    def __init__(self, spec: ModelSpec, options: ProviderOptions):
        self.spec = spec
        self.options = options

    @property
    def entry(self) -> Any:
        """This provider's ``registry.ProviderEntry``."""
        from ingest.providers.registry import get  # deferred: the registry imports this module

        return get(self.spec.provider)

    @property
    def name(self) -> str:
        return self.spec.provider

    @property
    def key_envs(self) -> tuple[str, ...]:
        """Any one of these env vars holds the key."""
        return self.entry.keys.envs

    @property
    def key_required(self) -> bool:
        """A key must be set before any call (a provider with no key env needs none)."""
        keys = self.entry.keys
        return keys.required and bool(keys.envs)

    @property
    def local(self) -> bool:
        """No network, no cost."""
        return self.entry.local

    @property
    def concurrency(self) -> int:
        return self.options.concurrency or self.entry.default_concurrency

    def load(self) -> None:  # noqa: B027 - optional hook
        """Import the SDK (seconds for some) before the first call, so no call's timeout is spent on
        it. The runner calls it only for providers with calls to make: a fully cached re-run, or
        listing the providers, imports no SDK."""

    def params(self) -> dict[str, Any]:
        """Generation parameters that change the answer; part of the cache key."""
        return {"temperature": self.options.temperature, "max_tokens": self.options.max_tokens}

    def api_key(self) -> str | None:
        for env in self.key_envs:
            if os.environ.get(env):
                return os.environ[env]
        return None

    def check_credentials(self) -> None:
        """Raise MissingCredentials naming the env var(s) when a required key is absent."""
        if self.key_required and self.key_envs and not self.api_key():
            names = " or ".join(self.key_envs)
            raise MissingCredentials(
                f"{self.spec.raw}: no API key; set {names} (e.g. export {self.key_envs[0]}=...)"
            )

    @abstractmethod
    async def call(self, request: CallRequest) -> Reply:
        """Make one call (no retries). Raise ProviderError on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""


@dataclass(frozen=True)
class DetectorItem:
    """One manifest image as a local detector sees it before any call."""

    image_sha256: str
    modality: str
    truth: str  # real | synthetic
    load: Callable[[], bytes]  # the prepared image bytes exactly as a cloud model would receive them


class LocalDetector(Provider):
    """A provider that decides locally and must see every manifest image before its first call
    (capability ``local_detector``): the runner hands it the whole manifest in ``prepare``."""

    @abstractmethod
    async def prepare(self, items: list[DetectorItem]) -> None:
        """Called once before the calls of a run with every identified manifest image."""


def create_provider(spec: ModelSpec, options: ProviderOptions) -> Provider:
    """The provider for ``spec`` (``ingest.providers.registry.create_provider``)."""
    from ingest.providers.registry import create_provider as create

    return create(spec, options)
