"""The provider interface: one small module per provider, one retry policy for all of them.

A provider builds a request from a prepared image and a prompt, makes one call, and turns the reply
into text + finish reason + usage (``Reply``). It classifies its own failures as ``ProviderError``
(retryable or not, after how long); the shared loop in ``ingest.providers.retry`` retries. SDK
retries are always off so that attempts are counted and Retry-After is honoured in one place.
"""

from __future__ import annotations

import importlib
import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar


class SpecError(ValueError):
    """A model spec that cannot be understood (exit code 2 at the CLI)."""


class MissingCredentials(RuntimeError):
    """A provider's key is not set; raised before any call is made."""


@dataclass(frozen=True)
class ModelSpec:
    """``openai:<model>``, ``gemini:<model>``, ``compat:<model>@<base_url>``, ``baseline:<name>``."""

    provider: str
    model: str
    base_url: str | None
    raw: str

    @property
    def name(self) -> str:
        """The model column of the store: the spec as the user wrote it."""
        return self.raw


PROVIDERS: dict[str, str] = {
    "openai": "ingest.providers.openai_provider:OpenAIProvider",
    "gemini": "ingest.providers.gemini_provider:GeminiProvider",
    "compat": "ingest.providers.compat_provider:CompatProvider",
    "baseline": "ingest.providers.baseline:BaselineProvider",
}


def parse_spec(spec: str) -> ModelSpec:
    """Split a model spec; raise SpecError with the accepted forms when it does not fit."""
    provider, sep, rest = spec.partition(":")
    if not sep or not rest or provider not in PROVIDERS:
        raise SpecError(
            f"model spec {spec!r} is not understood; use one of: openai:<model>, gemini:<model>, "
            "compat:<model>@<base_url> (e.g. compat:llava@http://127.0.0.1:11434/v1), baseline:forensic"
        )
    base_url = None
    if provider == "compat":
        model, at, base_url = rest.rpartition("@")
        if not at or not model or not base_url.startswith(("http://", "https://")):
            raise SpecError(
                f"model spec {spec!r}: compat needs <model>@<base_url>, "
                "e.g. compat:llava@http://127.0.0.1:11434/v1"
            )
        rest = model
    return ModelSpec(provider=provider, model=rest, base_url=base_url, raw=spec)


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
    """One image and one prompt, ready to send."""

    image: bytes
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

    ``error_type`` is short and stable (rate_limited, server_error, timeout, connection,
    bad_request, auth, not_found, image_rejected, malformed_reply, ...); the message says what a
    person can do about it and never contains a secret.
    """

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        retryable: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ):
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class Provider(ABC):
    """Base class. Subclasses set the class attributes and implement ``call``."""

    name: ClassVar[str]
    key_envs: ClassVar[tuple[str, ...]] = ()  # any one of these holds the key
    key_required: ClassVar[bool] = True
    default_concurrency: ClassVar[int] = 8
    local: ClassVar[bool] = False  # no network, no cost

    def __init__(self, spec: ModelSpec, options: ProviderOptions):
        self.spec = spec
        self.options = options

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

    @property
    def concurrency(self) -> int:
        return self.options.concurrency or self.default_concurrency

    async def prepare(self, items: list[Any]) -> None:  # noqa: B027 - optional hook
        """Called once before the calls of a run with every manifest item (the baseline trains)."""

    @abstractmethod
    async def call(self, request: CallRequest) -> Reply:
        """Make one call (no retries). Raise ProviderError on failure."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release clients."""


def create_provider(spec: ModelSpec, options: ProviderOptions) -> Provider:
    """Import the provider module only when used; one clear error when its SDK is missing."""
    module_name, _, class_name = PROVIDERS[spec.provider].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise SpecError(
            f"{spec.raw}: the {spec.provider} provider cannot load ({exc}); "
            "install the requirements: pip install -r requirements.txt"
        ) from exc
    return getattr(module, class_name)(spec, options)
