"""``fake:<script>``: an in-process provider for runner tests (no HTTP, no SDK, no key).

Importing this module registers the entry. A script is a function registered by name with
``script(name)``; each call runs ``answer(request, attempt)`` where ``attempt`` counts the calls
of this script for the same image since it was registered, across runs (1, 2, ...). It returns a ``Reply`` (or a string: the answer
text) or raises ``ProviderError``; an ``async`` script may sleep. Built-in scripts: ``real``,
``synthetic`` (always that answer). Every provider records its calls and the most calls it had in
flight at once, so tests can check what the runner asked for.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ingest.providers.base import CallRequest, ModelSpec, Provider, ProviderOptions, Reply, SpecError
from ingest.providers.registry import Capabilities, Keys, PriceRule, provider

Script = Callable[[CallRequest, int], Any]
SCRIPTS: dict[str, Script] = {
    "real": lambda request, attempt: "Real. A normal fundus photograph.",
    "synthetic": lambda request, attempt: "Synthetic. Vessels are too smooth.",
}
ATTEMPTS: Counter[tuple[str, str]] = Counter()  # (script, image sha256) -> calls so far
#: Every FakeProvider built, newest last (tests read calls and in-flight counts from here).
INSTANCES: list[FakeProvider] = []


@contextmanager
def script(name: str, answer: Script) -> Iterator[None]:
    """Register ``answer`` as ``fake:<name>`` for the duration of a test."""
    SCRIPTS[name] = answer
    for seen in [k for k in ATTEMPTS if k[0] == name]:
        del ATTEMPTS[seen]
    try:
        yield
    finally:
        SCRIPTS.pop(name, None)


def parse_fake(prefix: str, rest: str, raw: str) -> ModelSpec:
    if rest not in SCRIPTS:
        raise SpecError(f"model spec {raw!r}: no fake script {rest!r} (known: {', '.join(sorted(SCRIPTS))})")
    return ModelSpec(provider=prefix, model=rest, base_url=None, raw=raw)


@provider(
    prefix="fake",
    form="fake:<script>",
    example="fake:real",
    summary="in-process test provider answering from a Python script (tests only)",
    keys=Keys(("MEDLENS_FAKE_API_KEY",), required=False),
    price=PriceRule(image_tokens="flat:100", batch_factor=0.5),
    capabilities=Capabilities(structured=True, text_only=True),
    parse=parse_fake,
    default_concurrency=4,
)
class FakeProvider(Provider):
    def __init__(self, spec: ModelSpec, options: ProviderOptions):
        super().__init__(spec, options)
        self.calls: list[CallRequest] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.closed = False
        INSTANCES.append(self)

    async def call(self, request: CallRequest) -> Reply:
        self.calls.append(request)
        attempt_key = (self.spec.model, request.image_sha256)
        ATTEMPTS[attempt_key] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            result = SCRIPTS[self.spec.model](request, ATTEMPTS[attempt_key])
            if inspect.isawaitable(result):
                result = await result
            await asyncio.sleep(0)  # a real call yields to the loop at least once
        finally:
            self.in_flight -= 1
        if isinstance(result, str):
            return Reply(
                text=result,
                finish_reason="stop",
                model_version=f"{self.spec.model}-v1",
                input_tokens=100,
                output_tokens=10,
            )
        return result

    async def aclose(self) -> None:
        self.closed = True
