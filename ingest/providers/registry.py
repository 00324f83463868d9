"""The provider registry: each provider module declares, in one entry, everything MedLens reads.

A provider is one module that decorates its class with ``@provider(ProviderEntry-fields)``::

    @provider(prefix="openai", form="openai:<model>", example="openai:gpt-4o", summary="...",
              keys=Keys(("OPENAI_API_KEY",)), price=PriceRule(image_tokens="tiles:85:170"),
              capabilities=Capabilities(structured=True, batch=True, text_only=True))
    class OpenAIProvider(Provider): ...

Everything else reads the entry: ``parse_spec`` (prefix, spec form, validation), the CLI listing
(``ingest models``), secret scrubbing (``key_envs``), pricing (``PriceRule``), the runner (local or
remote, local detectors by capability, batch by capability) and the registry contract tests.

Entries are found lazily, like inspect_ai's ``@modelapi``: on first need the registry imports every
module of the ``ingest.providers`` package (provider modules import their SDK only when a call is
made, so this costs no SDK import), then the modules named by installed packages under the entry
point group ``medlens.providers``. A test may call ``register`` itself.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from cache.redact import register_key_env
from ingest.providers.base import LocalDetector, ModelSpec, ProviderOptions, SpecError

if TYPE_CHECKING:
    from ingest.providers.base import Provider

ENTRY_POINT_GROUP = "medlens.providers"
_PREFIX = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Model names never hold whitespace or control characters; a spec is stored in every row.
_BAD_SPEC_CHARS = re.compile(r"[\s\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Keys:
    """Environment variables that hold the provider's key: any one of ``envs`` is enough."""

    envs: tuple[str, ...] = ()
    required: bool = True  # False: the key is optional (a local server may need none)


@dataclass(frozen=True)
class PriceRule:
    """How calls of this provider are priced (prices themselves are rows of data/prices.csv)."""

    image_tokens: str = "flat:258"  # image-token rule for rows that give none (see prices.csv)
    free_unless_priced: bool = False  # cost 0 unless a row with the provider's own prefix prices it
    batch_factor: float | None = None  # batch price / online price when a row gives no batch price


@dataclass(frozen=True)
class Capabilities:
    """What the provider can do; the runner and CLI choose by these, never by a provider's name."""

    structured: bool = False  # a JSON schema / JSON mode for the ``json`` prompt
    batch: bool = False  # a provider batch API (``ingest run --batch``): see ``ProviderEntry.batch``
    text_only: bool = False  # a request without an image (a judge reading another model's answer)
    local_detector: bool = False  # decides locally and must see the whole manifest first (prepare)


@dataclass(frozen=True)
class ProviderEntry:
    """One provider, declared once by its own module."""

    prefix: str  # the spec prefix and the store's ``provider`` column
    form: str  # the accepted spec form, e.g. compat:<model>@<base_url>
    example: str  # a spec that parses, shown in messages and checked by the registry tests
    summary: str  # one line for ``ingest models``
    factory: Callable[[ModelSpec, ProviderOptions], Provider]
    keys: Keys = Keys()
    local: bool = False  # no network, no cost
    price: PriceRule = PriceRule()
    capabilities: Capabilities = Capabilities()
    #: ``(prefix, rest, raw) -> ModelSpec``: validation beyond "a non-empty model name"
    parse: Callable[[str, str, str], ModelSpec] | None = None
    default_concurrency: int = 8
    #: ``"module:Class"`` of the batch client, imported on use (with ``capabilities.batch``)
    batch: str | None = None
    notes: str = ""  # shown next to the credentials in ``ingest models``

    def __post_init__(self) -> None:
        if not _PREFIX.match(self.prefix):
            raise ValueError(f"provider prefix {self.prefix!r}: use lower-case letters, digits and _")
        if self.capabilities.batch != bool(self.batch):
            raise ValueError(f"provider {self.prefix!r}: the batch capability needs a batch client and back")
        if self.capabilities.local_detector and not (
            isinstance(self.factory, type) and issubclass(self.factory, LocalDetector)
        ):
            raise ValueError(f"provider {self.prefix!r}: a local detector's factory must be a LocalDetector")


_ENTRIES: dict[str, ProviderEntry] = {}
_EXTRA_KEY_ENVS: set[str] = set()
_LOCK = threading.Lock()
_discovered = False

T = TypeVar("T")


def register(entry: ProviderEntry, *, replace_existing: bool = False) -> ProviderEntry:
    """Add ``entry``; a second entry with the same prefix is refused unless ``replace_existing``."""
    with _LOCK:
        old = _ENTRIES.get(entry.prefix)
        if old is not None and old != entry and not replace_existing:
            raise ValueError(f"provider prefix {entry.prefix!r} is registered twice")
        _ENTRIES[entry.prefix] = entry
    for name in entry.keys.envs:  # the project's scrubber removes their values everywhere
        register_key_env(name)
    return entry


def unregister(prefix: str) -> None:
    """Remove an entry (tests that register their own providers clean up with this)."""
    with _LOCK:
        _ENTRIES.pop(prefix, None)


def provider(**fields: Any) -> Callable[[T], T]:
    """Class decorator: register the class as the factory of a ``ProviderEntry(**fields)``."""

    def decorate(cls: T) -> T:
        register(ProviderEntry(factory=cls, **fields))  # type: ignore[arg-type]
        return cls

    return decorate


def _discover() -> None:
    """Import every module of this package, then the entry-point modules (once per process)."""
    global _discovered
    if _discovered:
        return
    import ingest.providers as package

    for module in pkgutil.iter_modules(package.__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{package.__name__}.{module.name}")
    from importlib.metadata import entry_points

    for point in entry_points(group=ENTRY_POINT_GROUP):
        point.load()  # importing the module registers its entry
    _discovered = True


def entries() -> list[ProviderEntry]:
    """Every registered provider, by prefix."""
    _discover()
    return [_ENTRIES[p] for p in sorted(_ENTRIES)]


def get(prefix: str) -> ProviderEntry:
    """The entry for ``prefix``; SpecError listing the accepted forms when there is none."""
    entry = _ENTRIES.get(prefix)
    if entry is None:
        _discover()
        entry = _ENTRIES.get(prefix)
    if entry is None:
        raise SpecError(f"unknown provider {prefix!r}; {accepted_forms()}")
    return entry


def accepted_forms() -> str:
    forms = ", ".join(e.form for e in entries())
    examples = ", ".join(e.example for e in entries() if e.example != e.form)
    return f"use one of: {forms} (e.g. {examples})"


def parse_spec(spec: str) -> ModelSpec:
    """Split and validate a model spec through its provider's entry."""
    prefix, sep, rest = spec.partition(":")
    if _BAD_SPEC_CHARS.search(spec):
        raise SpecError(f"model spec {spec!r} holds whitespace or control characters; {accepted_forms()}")
    if not sep or not rest or not _PREFIX.match(prefix):
        raise SpecError(f"model spec {spec!r} is not understood; {accepted_forms()}")
    try:
        entry = get(prefix)
    except SpecError:
        raise SpecError(f"model spec {spec!r}: unknown provider {prefix!r}; {accepted_forms()}") from None
    if entry.parse is not None:
        return entry.parse(prefix, rest, spec)
    return ModelSpec(provider=prefix, model=rest, base_url=None, raw=spec)


def create_provider(spec: ModelSpec, options: ProviderOptions) -> Provider:
    """The provider for ``spec``, built by its entry's factory."""
    return get(spec.provider).factory(spec, options)


def key_envs() -> tuple[str, ...]:
    """Every env var that holds a provider key (registered entries, plus names chosen by the user
    with ``add_key_env``). Each is also registered with ``cache.redact`` as its entry is found, so
    the project's one scrubber removes their values from every message, row and export."""
    names = {name for entry in entries() for name in entry.keys.envs} | _EXTRA_KEY_ENVS
    return tuple(sorted(names))


def add_key_env(name: str) -> None:
    """A key env var named at run time (e.g. ``--compat-key-env``): scrub its value too."""
    with _LOCK:
        _EXTRA_KEY_ENVS.add(name)
    register_key_env(name)
