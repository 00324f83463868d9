"""``ingest run --batch``: the planned calls go to the providers' batch APIs instead of one by one.

The runner identifies the images and plans the calls as for an online run (same cache keys; the
key is each request's custom id), then hands them to ``submit_planned``: calls are packed into
batches by count and bytes (``pack``), each batch is recorded in the ledger
(``ingest.batch_ledger``) and taken through its steps by ``advance``, which records each step
before and after it and, after a crash, adopts what the provider already has instead of doing it
again. Polling, collecting into the store and cancelling are in ``ingest.batch_collect``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from cache.store import StoreWriter, utcnow
from ingest import batch_ledger as ledger
from ingest.batch_ledger import LedgerEntry
from ingest.images import ImageError
from ingest.providers.base import CallRequest, Provider, ProviderError
from ingest.providers.batch_api import BatchClient, batch_client
from ingest.rows import CallMeta

T = TypeVar("T")


@dataclass
class Pack:
    """One batch being packed: its calls and the payload file they go to (a temporary name)."""

    ledger_id: str
    path: Path
    handle: IO[bytes]
    calls: list[CallMeta] = field(default_factory=list)
    bytes: int = 0


def pack(
    store_root: Path, lines: Iterable[tuple[CallMeta, bytes]], max_requests: int, max_bytes: int
) -> Iterator[Pack]:
    """Stream ``(call, line)`` into payload files of at most ``max_requests`` lines and
    ``max_bytes`` bytes; yield each pack once its file is complete (fsynced, under its final
    name). Memory stays at one line, whatever the batch size."""
    current: Pack | None = None
    for call, line in lines:
        if len(line) > max_bytes:
            raise ValueError(
                f"one request ({len(line):,} bytes) is larger than a batch may be ({max_bytes:,})"
            )
        if current is not None and (
            len(current.calls) >= max_requests or current.bytes + len(line) > max_bytes
        ):
            yield _close(current)
            current = None
        if current is None:
            ledger_id = ledger.new_ledger_id()
            final = ledger.payload_path(store_root, ledger_id)
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.tmp")
            current = Pack(ledger_id, final, open(tmp, "wb"))  # noqa: SIM115 - closed in _close
        current.handle.write(line)
        current.calls.append(call)
        current.bytes += len(line)
    if current is not None:
        yield _close(current)


def _close(current: Pack) -> Pack:
    current.handle.flush()
    os.fsync(current.handle.fileno())
    current.handle.close()
    os.replace(current.handle.name, current.path)
    return current


def with_retries(provider: Provider, fn: Callable[..., T], *args: Any) -> T:
    """A batch-management call with the provider's attempt budget (retryable errors only)."""
    options = provider.options
    retrying = Retrying(
        stop=stop_after_attempt(options.max_attempts),
        wait=wait_exponential_jitter(initial=1.0, max=options.max_retry_wait_s),
        retry=retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.retryable),
        reraise=True,
    )
    return retrying(fn, *args)


def advance(store_root: Path, entry: LedgerEntry, client: BatchClient) -> LedgerEntry:
    """Take a built entry through upload and submission, recording each step before and after.

    An entry found with a step pending (a process died during it) asks the provider first: an
    uploaded file or a created batch tagged with the ledger id is adopted, not made again."""
    payload = ledger.payload_path(store_root, entry.ledger_id)
    provider = client.provider
    if entry.state == "built" and entry.mode == "file":
        entry.pending = "upload"
        ledger.save(store_root, entry)
        entry.input_file = with_retries(provider, client.upload, entry, payload)
        entry.state, entry.pending = "uploaded", None
        ledger.save(store_root, entry)
    if entry.state in ("built", "uploaded"):
        adopt = entry.pending == "submit"  # a create may have reached the provider before a crash
        entry.pending = "submit"
        ledger.save(store_root, entry)
        entry.batch_id = _create_once(entry, client, payload, adopt)
        entry.state, entry.pending, entry.submitted_at = "submitted", None, utcnow().isoformat()
        ledger.save(store_root, entry)
        payload.unlink(missing_ok=True)  # the provider has it now
    return entry


def _create_once(entry: LedgerEntry, client: BatchClient, payload: Path, adopt: bool) -> str:
    """Create the batch, unless the provider already has one tagged with this entry; a create
    that failed in a way that may still have created it (timeout, 5xx) looks again first."""
    for attempt in range(1, client.provider.options.max_attempts + 1):
        found = with_retries(client.provider, client.find, entry) if adopt else None
        if found is not None:
            return found
        try:
            return client.create(entry, payload)
        except ProviderError as error:
            if not error.retryable or attempt == client.provider.options.max_attempts:
                raise
            adopt = True
            time.sleep(min(2.0**attempt, client.provider.options.max_retry_wait_s))
    raise AssertionError("unreachable")


def within_budget(runner: Any, tasks: list[Any]) -> list[Any]:
    """The calls whose estimated batch cost fits ``--budget``, in plan order (the rest are
    counted as skipped, as an online run would)."""
    if runner.budget_usd is None or runner.prices is None:
        return tasks
    kept, total = [], 0.0
    for task in tasks:
        spec, item = task.provider.spec, task.item
        detail = task.provider.options.detail
        estimate = (
            runner.prices.estimate(spec, runner.prompt.text, item.width, item.height, detail=detail) or 0.0
        )
        if total + estimate > runner.budget_usd:
            runner.budget_stopped = True
            runner.tallies[spec.raw].skipped_budget += 1
            continue
        total += estimate
        kept.append(task)
    return kept


def claimed(runner: Any, tasks: list[Any], claimer: Any) -> list[Any]:
    """The calls whose keys this run claims (``cache.claiming``): a key another live run holds is
    skipped, a key answered meanwhile counts as cached. Claims won are kept while this process
    lives; once a batch holds a key, the ledger keeps every later plan from calling it."""
    if claimer is None:
        return tasks
    kept = []
    for start in range(0, len(tasks), 500):
        part = tasks[start : start + 500]
        got = claimer.claim([t.key for t in part])
        won, done = set(got.won), set(got.done)
        for task in part:
            tally = runner.tallies[task.provider.spec.raw]
            if task.key in won:
                kept.append(task)
            elif task.key in done:
                tally.pending, tally.cached = tally.pending - 1, tally.cached + 1
            else:
                tally.skipped_claimed += 1
                owner_id = got.held[task.key]
                if owner_id not in runner.claimed_by:  # named in the summary, as an online run does
                    runner.claimed_by[owner_id] = claimer.holder(owner_id)
    return kept


def _lines(runner: Any, client: BatchClient, tasks: list[Any], writer: StoreWriter):
    """(call, input line) for each task; an image that cannot be prepared is an error row."""
    for task in tasks:
        if runner.stopping:
            return
        try:
            prepared = runner.images.get(task.item)
        except ImageError as exc:
            writer.add(runner._row(task, None, (f"image_{exc.reason}", str(exc))))
            continue
        request = CallRequest(
            image=prepared.data, mime=prepared.mime, image_sha256=prepared.sha256, prompt_id=runner.prompt.id,
            prompt_text=runner.prompt.text, modality=task.item.row.modality, structured=runner.prompt.structured,
        )  # fmt: skip
        yield runner.call_meta(task), client.line(task.key, request)


def build(
    runner: Any, provider: Provider, client: BatchClient, tasks: list[Any], writer: StoreWriter, claimer: Any = None
):  # fmt: skip
    """Pack one model's calls into ledger entries in state ``built``; yields each entry."""
    root = runner.store.local_dir
    lines = _lines(runner, client, tasks, writer)
    for done in pack(root, lines, client.max_requests, client.max_bytes):
        entry = LedgerEntry(
            ledger_id=done.ledger_id, provider=provider.spec.provider, model=provider.spec.raw,
            params_json=done.calls[0].params_json, options=asdict(provider.options), run_id=runner.run_id,
            requests=len(done.calls), payload_bytes=done.bytes, mode=client.mode(done.bytes),
            created_at=utcnow().isoformat(),
        )  # fmt: skip
        ledger.write_calls(root, entry.ledger_id, done.calls)
        ledger.save(root, entry)
        for call in done.calls if claimer is not None else ():
            claimer.started(call.key)  # in a batch now: kept claimed (not released as unused)
            claimer.added(call.key)
        yield entry


def _submit(runner: Any, tasks: list[Any], writer: StoreWriter, claimer: Any) -> list[dict[str, Any]]:
    root, opened = runner.store.local_dir, []
    for provider in runner.providers:
        client = batch_client(provider)
        try:
            earlier = [e for e in ledger.entries(root) if e.model == provider.spec.raw and e.is_open]
            mine = [t for t in tasks if t.provider is provider]
            mine = claimed(runner, within_budget(runner, mine), claimer)
            for entry in [*earlier, *build(runner, provider, client, mine, writer, claimer)]:
                if runner.stopping:
                    break
                with ledger.claim(root, entry.ledger_id) as mine:
                    if mine and entry.state in ("built", "uploaded"):
                        entry = advance(root, ledger.load(root, entry.ledger_id), client)  # as it is now
                opened.append({"ledger_id": entry.ledger_id, "model": entry.model,
                               "batch_id": entry.batch_id, "requests": entry.requests})  # fmt: skip
        finally:
            client.close()
    return opened


async def submit_planned(
    runner: Any, tasks: list[Any], writer: StoreWriter, claimer: Any = None
) -> list[dict[str, Any]]:
    """The runner's batch hook: resume this store's unsubmitted batches of the run's models, pack
    and submit the planned calls; returns every open batch of the run's models (ledger id, batch
    id, calls), those submitted now and those submitted before, for ``--wait``."""
    return await asyncio.to_thread(_submit, runner, tasks, writer, claimer)
