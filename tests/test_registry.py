"""The provider registry: every entry keeps its contract, specs are validated, no code names a provider.

The contract tests run over ``registry.entries()``, so a new provider is checked by them without
being named here.
"""

from __future__ import annotations

import ast
import io
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from ingest.pricing import image_tokens
from ingest.providers import registry
from ingest.providers.base import LocalDetector, ProviderOptions, SpecError
from ingest.providers.batch_api import BatchClient, batch_client
from ingest.providers.retry import REDACTED, scrub
from tests.pipeline_helpers import ROOT

ENTRIES = registry.entries()
PREFIXES = [entry.prefix for entry in ENTRIES]


def test_the_shipped_providers_are_found_without_a_list() -> None:
    assert {"openai", "gemini", "compat", "baseline"} <= set(PREFIXES)


@pytest.mark.parametrize("entry", ENTRIES, ids=PREFIXES)
def test_every_entry_keeps_its_contract(entry: registry.ProviderEntry, monkeypatch) -> None:
    spec = registry.parse_spec(entry.example)
    assert (spec.provider, spec.raw) == (entry.prefix, entry.example)
    assert entry.form.startswith(f"{entry.prefix}:") and entry.form in registry.accepted_forms()
    provider = registry.create_provider(spec, ProviderOptions())
    assert provider.entry is entry and provider.concurrency == entry.default_concurrency
    assert provider.local == entry.local and provider.key_envs == entry.keys.envs
    assert set(entry.keys.envs) <= set(registry.key_envs())
    assert image_tokens(entry.price.image_tokens, 1024, 1024) > 0  # a valid rule
    assert entry.capabilities.local_detector == isinstance(provider, LocalDetector)
    if entry.local:
        assert not entry.keys.envs and entry.price.free_unless_priced
    if entry.capabilities.batch:  # a batch API client that packs within the provider's limits
        client = batch_client(provider)
        assert isinstance(client, BatchClient) and client.max_requests > 0 and client.max_bytes > 0
        assert entry.price.batch_factor is not None  # a batch call always has a price rule
    for env in entry.keys.envs:  # every key env's value is scrubbed, whatever its name looks like
        monkeypatch.setenv(env, f"value-of-{env.lower()}-0123456789")
        assert scrub(f"server said value-of-{env.lower()}-0123456789") == f"server said {REDACTED}"


def test_models_lists_every_entry_with_its_form_and_credentials(monkeypatch) -> None:
    from ingest.cli import main

    for entry in ENTRIES:
        for env in entry.keys.envs:
            monkeypatch.delenv(env, raising=False)
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["models"]) == 0
    lines = {line.split()[0]: line for line in out.getvalue().splitlines() if line.strip()}
    for entry in ENTRIES:
        assert entry.form in lines[entry.prefix]
        if entry.keys.envs:
            assert f"missing: set {' or '.join(entry.keys.envs)}" in lines[entry.prefix]
        else:
            assert "none needed" in lines[entry.prefix]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("gpt-4o", "is not understood"),
        ("nosuch:model", "unknown provider 'nosuch'"),
        ("openai:", "is not understood"),
        ("openai:gpt 4o", "whitespace or control characters"),
        ("openai:gpt-4o\n", "whitespace or control characters"),
        ("compat:llava", "compat needs <model>@<base_url>"),
        ("compat:llava@ftp://host/v1", "compat needs <model>@<base_url>"),
        ("compat:llava@http:///v1", "has no host"),
        ("compat:llava@http://host:99999/v1", "not valid"),
        ("compat:llava@http://host/v1?api-key=abc", "may not carry a query"),
        ("baseline:resnet", "the baseline detectors are forensic"),
    ],
)
def test_bad_specs_are_refused_with_the_accepted_forms(spec: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        registry.parse_spec(spec)
    assert message in str(caught.value)
    if "not understood" in message or "unknown provider" in message:
        assert "compat:<model>@<base_url>" in str(caught.value) and "openai:<model>" in str(caught.value)
    assert "api-key=abc" not in str(caught.value)  # what may be a key is not echoed


def test_compat_url_credentials_never_reach_the_stored_spec() -> None:
    spec = registry.parse_spec("compat:llava:13b@http://bob:hunter2-secret@127.0.0.1:11434/v1")
    assert spec.raw == "compat:llava:13b@http://127.0.0.1:11434/v1"
    assert spec.base_url == "http://127.0.0.1:11434/v1" and spec.model == "llava:13b"
    assert "hunter2" not in repr(spec) and "bob" not in repr(spec)
    assert spec.warnings and "removed" in spec.warnings[0]
    # the same server with and without credentials is one model, one set of cache keys
    assert spec == registry.parse_spec("compat:llava:13b@http://127.0.0.1:11434/v1")
    ipv6 = registry.parse_spec("compat:m@http://[::1]:8000/v1")
    assert ipv6.base_url == "http://[::1]:8000/v1"


def test_a_second_entry_for_a_prefix_and_broken_entries_are_refused() -> None:
    openai = registry.get("openai")
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(
            registry.ProviderEntry(
                prefix="openai",
                form="openai:<m>",
                example="openai:x",
                summary="again",
                factory=openai.factory,
            )
        )
    with pytest.raises(ValueError, match="must be a LocalDetector"):
        registry.ProviderEntry(
            prefix="x",
            form="x:<m>",
            example="x:m",
            summary="",
            factory=openai.factory,
            capabilities=registry.Capabilities(local_detector=True),
        )
    with pytest.raises(ValueError, match="lower-case"):
        registry.ProviderEntry(prefix="Bad-Name", form="", example="", summary="", factory=openai.factory)
    assert registry.get("openai") is openai


def _names_compared_in(path: Path, names: set[str]) -> list[str]:
    """`x == "openai"`, `x in ("compat", "baseline")`, `x.startswith("gemini")` in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        operands: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") in ("startswith", "endswith"):
            operands = list(node.args)
        for operand in operands:
            items = operand.elts if isinstance(operand, ast.Tuple | ast.List | ast.Set) else [operand]
            for item in items:
                text = item.value if isinstance(item, ast.Constant) else None
                if isinstance(text, str) and text.split(":", 1)[0] in names:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {text!r}")
    return found


def test_no_code_outside_a_provider_module_tests_a_provider_name() -> None:
    """What the rest of MedLens knows about a provider comes from its entry, never from its name."""
    providers = {ROOT / (entry.factory.__module__.replace(".", "/") + ".py") for entry in ENTRIES}
    packages = ("ingest", "cache", "dashboard", "data")
    modules = [p for pkg in packages for p in (ROOT / pkg).rglob("*.py") if p not in providers]
    assert len(modules) > 30 and ROOT / "ingest" / "runner.py" in modules
    found = [hit for path in modules for hit in _names_compared_in(path, set(PREFIXES))]
    assert found == []
