"""Batches after submission: poll, collect into the store, cancel, wait (``ingest batches``).

``refresh`` asks the provider for a submitted batch's state and records it; an entry whose batch
is over becomes ``finished``. ``collect`` writes a finished batch's answers through the store's
normal writer, one row per answered call (the same row as an online answer, plus ``batch_id``,
``queued_ms`` and the batch price); a key with a row from this batch already is skipped, so
collecting twice, or again after a crash half-way, adds nothing. Calls the batch never answered
(it failed, expired or was cancelled) get no row: their keys are open for the next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cache.store import Store, StoreWriter, utcnow
from ingest import batch_ledger as ledger
from ingest.batch import with_retries
from ingest.batch_ledger import LedgerEntry
from ingest.providers.base import ProviderError, ProviderOptions, Reply
from ingest.providers.batch_api import BatchClient, BatchStatus, batch_client
from ingest.providers.registry import create_provider, parse_spec
from ingest.rows import response_row


def client_for(entry: LedgerEntry) -> BatchClient:
    """The batch client of the entry's model, with the options it was submitted with."""
    options = ProviderOptions(**entry.options)
    return batch_client(create_provider(parse_spec(entry.model), options))


def refresh(store_root: Path, entry: LedgerEntry, client: BatchClient) -> LedgerEntry:
    """Record what the provider says now; an entry whose batch is over becomes ``finished``."""
    if entry.state != "submitted" or entry.batch_id is None:
        return entry
    status = with_retries(client.provider, client.status, entry.batch_id)
    changed = (status.provider_state, status.counts, status.output) != (
        entry.provider_state,
        entry.counts,
        entry.output,
    )
    entry.provider_state, entry.counts, entry.output = status.provider_state, status.counts, status.output
    entry.message = status.message or entry.message
    if status.outcome is not None:
        entry.state, entry.outcome = "finished", status.outcome
        entry.finished_at, entry.provider_finished_at = utcnow().isoformat(), status.finished_at
        changed = True
    if changed:
        ledger.save(store_root, entry)
    return entry


def _queued_ms(entry: LedgerEntry) -> float | None:
    if not entry.submitted_at:
        return None
    submitted = datetime.fromisoformat(entry.submitted_at).timestamp()
    ended = (
        entry.provider_finished_at
        or datetime.fromisoformat(entry.finished_at or utcnow().isoformat()).timestamp()
    )
    return max(0.0, (ended - submitted) * 1000.0)


def _rows_of_batch(store: Store, batch_id: str) -> set[str]:
    """Keys with a row from this batch in the store's parts (call after folding dead journals)."""
    if not store.part_paths():
        return set()
    con = store.connect()
    try:
        return {
            key
            for (key,) in con.execute("SELECT key FROM responses WHERE batch_id = ?", [batch_id]).fetchall()
        }
    finally:
        con.close()


def collect(store: Store, entry: LedgerEntry, client: BatchClient, prices: Any) -> int:
    """Write a finished batch's answers into the store; returns the rows added."""
    if entry.state != "finished":
        return 0
    entry.pending = "collect"
    ledger.save(store.local_dir, entry)
    calls = ledger.read_calls(store.local_dir, entry.ledger_id)
    owner = store.owner("ingest batches --collect").start()
    try:
        store.recover(owner)  # rows a killed collection journaled are in the store before we look
        have = _rows_of_batch(store, entry.batch_id) if entry.batch_id else set()
        added = _write_rows(store, owner, entry, client, prices, calls, have)
    finally:
        owner.stop()
    entry.state, entry.pending, entry.collected_at = "collected", None, utcnow().isoformat()
    entry.rows_collected = len(have & set(calls))  # this batch's rows in the store, collected now or before
    ledger.save(store.local_dir, entry)
    return added


def _write_rows(store: Store, owner: Any, entry: LedgerEntry, client: BatchClient, prices: Any,
                calls: dict[str, Any], have: set[str]) -> int:  # fmt: skip
    """One row per answered call not yet in the store (``have`` grows with what is written)."""
    spec, added = parse_spec(entry.model), 0
    extra = {"batch_id": entry.batch_id, "queued_ms": _queued_ms(entry)}

    def price(reply: Reply) -> float | None:
        return prices.cost(spec, reply.input_tokens, reply.output_tokens, batch=True) if prices else None

    status = BatchStatus(entry.provider_state or "", entry.outcome, entry.counts, entry.message, entry.output)
    with StoreWriter(store, owner=owner) as writer:
        for key, result in client.results(status, list(calls)) if entry.output else ():
            if key not in calls or key in have:
                continue
            error = None if isinstance(result, Reply) else (result.error_type, result.message)
            paid = result.reply if isinstance(result, ProviderError) else None
            reply = result if isinstance(result, Reply) else None
            writer.add(response_row(calls[key], entry.run_id, reply=reply, error=error, price=price, attempts=1,
                                    latency_ms=None, paid=paid, extra=extra))  # fmt: skip
            have.add(key)
            added += 1
    return added


def adopt(store_root: Path, entry: LedgerEntry, client: BatchClient) -> LedgerEntry:
    """An entry whose submission was cut short: if the provider has its batch, record it (this
    creates nothing; ``ingest run --batch`` resumes a submission that never reached the provider)."""
    if entry.batch_id is not None or entry.pending != "submit":
        return entry
    found = with_retries(client.provider, client.find, entry)
    if found is not None:
        entry.batch_id, entry.state, entry.pending = found, "submitted", None
        entry.submitted_at = entry.submitted_at or utcnow().isoformat()
        ledger.save(store_root, entry)
        ledger.payload_path(store_root, entry.ledger_id).unlink(missing_ok=True)
    return entry


def cancel(store_root: Path, entry: LedgerEntry, client: BatchClient) -> LedgerEntry:
    """Cancel on the provider's side (a batch still being submitted is looked up first); an entry
    never submitted is simply over. Either way its unanswered keys are open once it is collected."""
    entry = adopt(store_root, entry, client)
    if entry.batch_id is None:
        entry.state, entry.outcome, entry.pending = "finished", "cancelled", None
        entry.finished_at = utcnow().isoformat()
        ledger.save(store_root, entry)
        ledger.payload_path(store_root, entry.ledger_id).unlink(missing_ok=True)
        return entry
    if entry.state == "submitted":
        with_retries(client.provider, client.cancel, entry.batch_id)
    return refresh(store_root, entry, client)


@dataclass
class Progress:
    """What one pass over the open batches did."""

    open: list[LedgerEntry]  # still running after the pass
    collected: list[tuple[LedgerEntry, int]]  # (entry, rows added)
    problems: list[str] = field(default_factory=list)  # entries the provider did not answer for


def poll_once(store: Store, prices: Any, *, collect_finished: bool, ids: set[str] | None = None) -> Progress:
    """Refresh every open entry (or those in ``ids``); collect the finished ones if asked. A
    provider that fails for one entry (no key, 401, down) is reported; the others go on."""
    progress = Progress([], [])
    for entry in ledger.entries(store.local_dir):
        if not entry.is_open or (ids is not None and entry.ledger_id not in ids):
            continue
        client = client_for(entry)
        try:
            with ledger.claim(store.local_dir, entry.ledger_id) as mine:
                if not mine:  # another process is taking it through a step
                    progress.open.append(entry)
                    continue
                entry = _step(
                    store, ledger.load(store.local_dir, entry.ledger_id), client, prices, collect_finished
                )
            if entry.state == "collected":
                progress.collected.append((entry, entry.rows_collected))
            elif entry.is_open:
                progress.open.append(entry)
        except ProviderError as error:
            progress.problems.append(f"{entry.ledger_id}: {error.message}")
            progress.open.append(entry)
        finally:
            client.close()
    return progress


def _step(
    store: Store, entry: LedgerEntry, client: BatchClient, prices: Any, collect_finished: bool
) -> LedgerEntry:
    """Adopt, refresh and (if asked) collect one entry, under its claim."""
    entry = adopt(store.local_dir, entry, client)
    entry = refresh(store.local_dir, entry, client)
    if entry.state == "finished" and collect_finished:
        collect(store, entry, client, prices)
    return entry


def wait(
    store: Store, prices: Any, ids: set[str], *, timeout_s: float, poll_s: float,
    report: Callable[[Progress], None] = lambda progress: None,
) -> Progress:  # fmt: skip
    """Poll the entries in ``ids`` until all are collected or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    collected: list[tuple[LedgerEntry, int]] = []
    while True:
        progress = poll_once(store, prices, collect_finished=True, ids=ids)
        collected += progress.collected
        report(progress)
        if progress.problems:  # waiting will not fix a refused key or a missing one
            return Progress(progress.open, collected, progress.problems)
        if not progress.open or time.monotonic() + poll_s > deadline:
            return Progress(progress.open, collected)
        time.sleep(poll_s)
