"""``compat:<model>@<base_url>``: any OpenAI-compatible server (Ollama, vLLM, LM Studio, llama.cpp).

Same request, reply and error handling as ``openai:`` (Chat Completions, image as a data URL, a
strict JSON-schema ``response_format`` for the ``json`` prompt with the same one-time fallback when
the server rejects it). Differences: the base URL comes from the spec; the key is optional, read
from ``MEDLENS_COMPAT_API_KEY`` or from the env var named by ``options.extra['api_key_env']``
(local servers need none: a placeholder is sent); ``max_tokens`` is the field every compatible
server reads; concurrency defaults to 4 because local servers are usually one GPU.
"""

from __future__ import annotations

import os
from typing import ClassVar

from ingest.providers.openai_provider import OpenAIProvider
from ingest.providers.retry import register_key_env

DEFAULT_KEY_ENV = "MEDLENS_COMPAT_API_KEY"


class CompatProvider(OpenAIProvider):
    name: ClassVar[str] = "compat"
    key_envs: ClassVar[tuple[str, ...]] = (DEFAULT_KEY_ENV,)
    key_required: ClassVar[bool] = False
    default_concurrency: ClassVar[int] = 4
    max_tokens_field: ClassVar[str] = "max_tokens"

    def key_env(self) -> str:
        """The env var that holds this server's key (optional)."""
        name = str(self.options.extra.get("api_key_env") or DEFAULT_KEY_ENV)
        register_key_env(name)  # its value is scrubbed from every message
        return name

    def api_key(self) -> str | None:
        return os.environ.get(self.key_env()) or None

    def base_url(self) -> str | None:
        return self.spec.base_url

    def where(self) -> str:
        return self.spec.raw

    def key_hint(self) -> str:
        return self.key_env()
