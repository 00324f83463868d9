"""``compat:<model>@<base_url>``: any OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp).

Same request, reply and error handling as ``openai:`` (Chat Completions, image as a data URL, a
strict JSON-schema ``response_format`` for the ``json`` prompt with the same one-time fallback when
the server rejects it). Differences: the base URL comes from the spec; the key is optional, read
from ``MEDLENS_COMPAT_API_KEY`` or from the env var named by ``options.extra['api_key_env']``
(local servers need none: a placeholder is sent); ``max_tokens`` is the field every compatible
server reads; concurrency defaults to 4 because local servers are usually one GPU.

The spec is stored in every row (the ``model`` column, the cache key), so it never keeps URL
credentials: ``user:password@`` is removed from it, with a warning, and a URL with a query or a
fragment (where keys hide) is refused.
"""

from __future__ import annotations

import os
import re
from typing import ClassVar
from urllib.parse import urlsplit, urlunsplit

from ingest.providers.base import ModelSpec, SpecError
from ingest.providers.openai_provider import OpenAIProvider
from ingest.providers.registry import Capabilities, Keys, PriceRule, add_key_env, provider

DEFAULT_KEY_ENV = "MEDLENS_COMPAT_API_KEY"
EXAMPLE = "compat:llava@http://127.0.0.1:11434/v1"
_SPLIT = re.compile(r"^(?P<model>.+?)@(?P<url>https?://.*)$")


def parse_compat(prefix: str, rest: str, raw: str) -> ModelSpec:
    """``<model>@<base_url>``: an http(s) URL with a host; credentials are dropped from it."""
    match = _SPLIT.match(rest)
    if not match:
        raise SpecError(f"model spec {raw!r}: {prefix} needs <model>@<base_url>, e.g. {EXAMPLE}")
    model, url = match.group("model"), match.group("url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise SpecError(f"model spec {raw!r}: the base URL is not valid ({exc}); e.g. {EXAMPLE}") from None
    if not parts.hostname:
        raise SpecError(f"model spec {raw!r}: the base URL has no host; e.g. {EXAMPLE}")
    if parts.query or parts.fragment:
        raise SpecError(
            f"model spec {prefix}:{model}@...: the base URL may not carry a query or fragment (it would be "
            f"stored with every answer); put a key in {DEFAULT_KEY_ENV} or name its env var with --compat-key-env"
        )
    warnings: tuple[str, ...] = ()
    if parts.username is not None or parts.password is not None:
        warnings = (
            f"{prefix}:{model}: the user name and password in the base URL were removed (the spec is stored "
            f"with every answer); put a key in {DEFAULT_KEY_ENV} or name its env var with --compat-key-env",
        )
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host + (f":{port}" if port is not None else "")
    clean = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return ModelSpec(
        provider=prefix, model=model, base_url=clean, raw=f"{prefix}:{model}@{clean}", warnings=warnings
    )


@provider(
    prefix="compat",
    form="compat:<model>@<base_url>",
    example=EXAMPLE,
    summary="any OpenAI-compatible server: Ollama, vLLM, LM Studio, llama.cpp server",
    keys=Keys((DEFAULT_KEY_ENV,), required=False),
    price=PriceRule(image_tokens="tiles:85:170", free_unless_priced=True),
    capabilities=Capabilities(structured=True, text_only=True),
    parse=parse_compat,
    default_concurrency=4,
    notes="key optional",
)
class CompatProvider(OpenAIProvider):
    max_tokens_field: ClassVar[str] = "max_tokens"

    def key_env(self) -> str:
        """The env var that holds this server's key (optional)."""
        name = str(self.options.extra.get("api_key_env") or DEFAULT_KEY_ENV)
        add_key_env(name)  # its value is scrubbed from every message
        return name

    @property
    def key_envs(self) -> tuple[str, ...]:
        return (self.key_env(),)

    def api_key(self) -> str | None:
        return os.environ.get(self.key_env()) or None

    def base_url(self) -> str | None:
        return self.spec.base_url

    def where(self) -> str:
        return self.spec.raw

    def key_hint(self) -> str:
        return self.key_env()
