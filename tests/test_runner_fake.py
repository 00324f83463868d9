"""Runner logic with the in-process fake provider (tests/fake_provider.py): no HTTP, no SDK.

Retries and error rows, what a second run calls, the concurrency bound, the budget, a truncated
reply that was paid for, and a local detector chosen by capability (a provider named nothing like
the baseline gets the whole manifest first).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from cache.store import Store
from ingest.images import PrepOptions
from ingest.manifest import read_manifest, scan_dataset, write_manifest
from ingest.pricing import PriceTable
from ingest.prompts import load_prompt
from ingest.providers import registry
from ingest.providers.base import (
    CallRequest,
    DetectorItem,
    LocalDetector,
    ProviderError,
    ProviderOptions,
    Reply,
    truncated_error,
)
from ingest.runner import Runner
from tests import fake_provider
from tests.fake_provider import script
from tests.pipeline_helpers import make_dataset, store_rows, write_image


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "data", per_cell=3, modalities=("fundus",))
    path = tmp_path / "m.csv"
    write_manifest(scan_dataset(data), path)
    return path


def run(manifest: Path, store: Path, specs: list[str], prices: PriceTable | None = None, **kw):
    """One in-process `ingest run` over the manifest; returns (result, providers)."""
    options = ProviderOptions(**kw.pop("options", {}))
    providers = [registry.create_provider(registry.parse_spec(s), options) for s in specs]
    runner = Runner(
        store=Store(store),
        rows=read_manifest(manifest),
        manifest_dir=manifest.parent,
        providers=providers,
        prompt=load_prompt("paper"),
        prep=PrepOptions(),
        progress=False,
        prices=prices,
        **kw,
    )
    return asyncio.run(runner.run()), providers


def test_retries_error_rows_and_a_second_run_calls_only_the_errors(manifest: Path, tmp_path: Path) -> None:
    seen: dict[str, int] = {}

    def flaky(request: CallRequest, attempt: int):
        index = seen.setdefault(request.image_sha256, len(seen))  # the first image fails for good
        if index == 0:
            raise ProviderError("bad_request", "fake: HTTP 400 scripted", retryable=False)
        if index == 1 and attempt == 1:
            raise ProviderError("server_error", "fake: HTTP 503", retryable=True, retry_after=0)
        return "Synthetic."

    with script("flaky", flaky):
        result, (fake,) = run(manifest, tmp_path / "s", ["fake:flaky"])
        rows = store_rows(tmp_path / "s")
        assert len(rows) == 6 and fake.closed
        errors = [r for r in rows if r["status"] == "error"]
        assert [(r["error_type"], r["attempts"]) for r in errors] == [("bad_request", 1)]
        assert sorted(r["attempts"] for r in rows if r["status"] == "ok") == [1, 1, 1, 1, 2]
        assert {r["label"] for r in rows if r["status"] == "ok"} == {"synthetic"}
        assert result.tallies["fake:flaky"].errors == {"bad_request": 1}

        _, (again,) = run(manifest, tmp_path / "s", ["fake:flaky"])
        assert [c.image_sha256 for c in again.calls] == [errors[0]["image_sha256"]]


def test_calls_in_flight_never_pass_the_concurrency(manifest: Path, tmp_path: Path) -> None:
    async def slow(request: CallRequest, attempt: int) -> str:
        await asyncio.sleep(0.02)
        return "Real."

    with script("slow", slow):
        _, (fake,) = run(manifest, tmp_path / "s", ["fake:slow"], options={"concurrency": 2})
    assert len(fake.calls) == 6 and fake.max_in_flight == 2


def test_the_collector_is_frozen_while_calling_and_not_after(manifest: Path, tmp_path: Path) -> None:
    """gc.freeze() keeps the start-up objects out of collections during the calls; a process that
    runs the runner (a notebook, the tests) gets its collector back afterwards, also on failure."""
    import gc

    frozen: list[int] = []

    async def peek(request: CallRequest, attempt: int) -> str:
        frozen.append(gc.get_freeze_count())
        if len(frozen) == 4:
            raise RuntimeError("a bug in a provider")
        return "Real."

    before = gc.get_freeze_count()
    with script("peek", peek):
        run(manifest, tmp_path / "s", ["fake:peek"], options={"concurrency": 2})
    assert len(frozen) == 6 and min(frozen) > before, "every call ran with the start-up frozen"
    assert gc.get_freeze_count() == before


def test_budget_stops_scheduling_at_the_estimate(manifest: Path, tmp_path: Path) -> None:
    prices_csv = tmp_path / "prices.csv"
    # fake's image rule (flat:100) + the prompt: one call is estimated at ~0.0004 USD here
    prices_csv.write_text("model,input_per_mtok,output_per_mtok\nfake:real,1.0,1.0\n")
    prices = PriceTable.load(prices_csv)
    spec = registry.parse_spec("fake:real")
    one = prices.estimate(spec, load_prompt("paper").text, 96, 96)
    assert one == pytest.approx((100 + 10 + len(load_prompt("paper").text) // 4 + 1 + 300) / 1e6, rel=0.05)
    paid = (100 + 10) / 1e6  # what one fake call reports: 100 tokens in, 10 out
    # A call is scheduled while spent + its estimate fits: after 0, 1 and 2 calls, not after 3.
    result, (fake,) = run(
        manifest,
        tmp_path / "s",
        ["fake:real"],
        prices=prices,
        budget_usd=one + 2.5 * paid,
        options={"concurrency": 1},
    )
    assert result.budget_stopped and len(fake.calls) == len(store_rows(tmp_path / "s")) == 3
    assert result.tallies["fake:real"].skipped_budget == 3
    assert result.tallies["fake:real"].cost_usd == pytest.approx(3 * paid)


def test_a_truncated_reply_is_a_paid_error_row_retried_next_run(manifest: Path, tmp_path: Path) -> None:
    prices_csv = tmp_path / "prices.csv"
    prices_csv.write_text("model,input_per_mtok,output_per_mtok\nfake:trunc,1.0,2.0\n")

    def trunc(request: CallRequest, attempt: int):
        if attempt == 1:
            spent = Reply(text=None, finish_reason="MAX_TOKENS", input_tokens=300, output_tokens=64)
            raise truncated_error("fake:trunc", spent, 64)
        return "Real."

    with script("trunc", trunc):
        run(manifest, tmp_path / "s", ["fake:trunc"], prices=PriceTable.load(prices_csv))
        rows = store_rows(tmp_path / "s")
        assert {r["error_type"] for r in rows} == {"truncated"} and len(rows) == 6
        row = rows[0]
        assert "--max-tokens" in row["error_message"] and row["attempts"] == 1
        assert (row["input_tokens"], row["output_tokens"], row["finish_reason"]) == (300, 64, "MAX_TOKENS")
        assert row["cost_usd"] == pytest.approx((300 * 1.0 + 64 * 2.0) / 1e6)
        _, (again,) = run(manifest, tmp_path / "s", ["fake:trunc"], prices=PriceTable.load(prices_csv))
    assert len(again.calls) == 6
    assert len(store_rows(tmp_path / "s", "status = 'ok'")) == 6


class TruthPeeker(LocalDetector):
    """A local detector that answers each image's truth: it can only know it from prepare()."""

    prepared: list[list[DetectorItem]] = []

    def __init__(self, spec, options):
        super().__init__(spec, options)
        self.truths: dict[str, str] = {}

    async def prepare(self, items: list[DetectorItem]) -> None:
        TruthPeeker.prepared.append(items)
        self.truths = {item.image_sha256: item.truth for item in items}
        assert all(item.load()[:4] == b"\x89PNG" for item in items[:2])  # prepared bytes on demand

    async def call(self, request: CallRequest) -> Reply:
        truth = self.truths[request.image_sha256]
        return Reply(text=truth.capitalize(), finish_reason="stop", label=truth, confidence=1.0)


@pytest.fixture
def peeker():
    entry = registry.ProviderEntry(
        prefix="peeker",
        form="peeker:<name>",
        example="peeker:x",
        summary="test local detector",
        factory=TruthPeeker,
        local=True,
        price=registry.PriceRule(free_unless_priced=True),
        capabilities=registry.Capabilities(local_detector=True),
    )
    registry.register(entry)
    TruthPeeker.prepared = []
    yield entry
    registry.unregister("peeker")


def test_a_local_detector_is_chosen_by_capability_not_by_name(manifest: Path, tmp_path: Path, peeker) -> None:
    prices = PriceTable.load()
    result, _ = run(manifest, tmp_path / "s", ["peeker:x", "fake:real"], prices=prices)
    assert len(TruthPeeker.prepared) == 1 and len(TruthPeeker.prepared[0]) == 6  # once, whole manifest
    rows = store_rows(tmp_path / "s", "model = 'peeker:x'")
    assert len(rows) == 6 and all(r["label"] == r["truth"] for r in rows)
    assert {r["cost_usd"] for r in rows} == {0.0}  # free unless priced, from the entry
    assert result.tallies["peeker:x"].estimate_usd is None  # only a dry run estimates
    assert len(fake_provider.INSTANCES[-1].calls) == 6  # the remote fake got no prepare, just calls


def test_an_image_changed_after_it_was_identified_is_an_error_row_and_never_sent(
    manifest: Path, tmp_path: Path
) -> None:
    """The feeder reads each claimed image's prepared bytes just before its call: an image whose
    file changed since phase 1 (and whose prepared bytes are gone) must not be sent as the other
    image under the first one's key."""
    rows = read_manifest(manifest)
    victim = manifest.parent / rows[0].image_path

    class ChangingRunner(Runner):
        async def identify(self):
            items = await super().identify()
            write_image(victim, seed=999)  # other pixels, after the sha256 was taken
            self.images._items.clear()
            for entry in (Path(self.store.local_dir) / "prepared").rglob("*.*"):
                entry.unlink()
            return items

    (fake,) = [registry.create_provider(registry.parse_spec("fake:real"), ProviderOptions())]
    runner = ChangingRunner(store=Store(tmp_path / "s"), rows=rows, manifest_dir=manifest.parent,
                            providers=[fake], prompt=load_prompt("paper"), prep=PrepOptions(), progress=False)
    result = asyncio.run(runner.run())
    stored = store_rows(tmp_path / "s")
    changed = [r for r in stored if r["status"] == "error"]
    assert [(r["image_path"], r["error_type"]) for r in changed] == [(rows[0].image_path, "image_changed")]
    assert len(fake.calls) == len(rows) - 1 == result.tallies["fake:real"].ok
    assert changed[0]["image_sha256"] not in {c.image_sha256 for c in fake.calls}
