"""The batch ledger: one JSON file per provider-side batch, ``<store>/batches/<ledger_id>.json``.

Neither provider's "create batch" is idempotent, so every step is recorded before it starts
(``pending``) and after it ends (``state``), each time written atomically (temporary name, fsync,
rename, fsync of the folder). States, in order::

    built      the requests are packed: <ledger_id>.requests.jsonl (the calls, one per line) and
               <ledger_id>.input.jsonl (the provider's input lines) are on disk
    uploaded   the provider has the input file (``input_file``); inline batches skip the upload
    submitted  the provider has the batch (``batch_id``); the input file on disk is removed
    finished   the provider says it is over (``outcome``: completed, failed, expired, cancelled)
    collected  its answers are rows of the store; its unanswered keys are open again

A process that dies anywhere leaves an entry whose ``pending`` step may or may not have happened
provider-side; the next process asks the provider (the batch is tagged with the ledger id) and
adopts what it finds instead of doing it again. Keys of an entry not yet collected are not
called again, online or in another batch.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from cache.store import atomic_write_bytes, utcnow
from ingest.rows import CallMeta

STATES = ("built", "uploaded", "submitted", "finished", "collected")
_LEDGER_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$")


class LedgerError(ValueError):
    """A ledger id that does not name an entry of the store (exit 2 at the CLI)."""


@dataclass
class LedgerEntry:
    """One provider-side batch and what MedLens knows about it."""

    ledger_id: str
    provider: str  # registry prefix
    model: str  # the model spec, as in the store's model column
    params_json: str
    options: dict[str, Any]  # ProviderOptions fields that build the provider again (no secrets)
    run_id: str
    requests: int
    payload_bytes: int
    mode: str  # file | inline
    state: str = "built"
    pending: str | None = None  # the step started and not yet recorded as done
    input_file: str | None = None
    batch_id: str | None = None
    provider_state: str | None = None
    outcome: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    message: str | None = None
    output: dict[str, str] = field(default_factory=dict)
    created_at: str = ""
    submitted_at: str | None = None
    finished_at: str | None = None
    provider_finished_at: float | None = None
    collected_at: str | None = None
    rows_collected: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        """Its keys are neither answered nor free: the batch is not collected yet."""
        return self.state != "collected"


def new_ledger_id() -> str:
    return utcnow().strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:8]


def folder(store_root: Path) -> Path:
    return Path(store_root) / "batches"


def _path(store_root: Path, ledger_id: str, suffix: str) -> Path:
    if not _LEDGER_ID.match(ledger_id):  # the id becomes a file name: never a path from outside
        raise LedgerError(f"{ledger_id!r} is not a ledger id (python -m ingest batches lists them)")
    return folder(store_root) / f"{ledger_id}{suffix}"


def payload_path(store_root: Path, ledger_id: str) -> Path:
    return _path(store_root, ledger_id, ".input.jsonl")


def save(store_root: Path, entry: LedgerEntry) -> None:
    """Record the entry (atomically, durably) with a history line for this write."""
    entry.history.append({"at": utcnow().isoformat(), "state": entry.state, "pending": entry.pending})
    data = json.dumps(asdict(entry), indent=1, sort_keys=True).encode()
    path = _path(store_root, entry.ledger_id, ".json")
    atomic_write_bytes(path, data)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load(store_root: Path, ledger_id: str) -> LedgerEntry:
    path = _path(store_root, ledger_id, ".json")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise LedgerError(
            f"no batch {ledger_id} in {store_root} (python -m ingest batches lists them)"
        ) from None
    known = {f.name for f in fields(LedgerEntry)}
    return LedgerEntry(**{k: v for k, v in data.items() if k in known})


def entries(store_root: Path) -> list[LedgerEntry]:
    """Every entry of the store, oldest first."""
    where = folder(store_root)
    if not where.is_dir():
        return []
    ids = sorted(p.name[: -len(".json")] for p in where.glob("*.json") if _LEDGER_ID.match(p.name[:-5]))
    return [load(store_root, ledger_id) for ledger_id in ids]


def write_calls(store_root: Path, ledger_id: str, calls: list[CallMeta]) -> None:
    """The calls of a batch, one JSON line each (what collection needs to write their rows)."""
    lines = "".join(json.dumps(asdict(call), sort_keys=True) + "\n" for call in calls)
    path = _path(store_root, ledger_id, ".requests.jsonl")
    atomic_write_bytes(path, lines.encode())


def read_calls(store_root: Path, ledger_id: str) -> dict[str, CallMeta]:
    path = _path(store_root, ledger_id, ".requests.jsonl")
    calls = (CallMeta(**json.loads(line)) for line in path.read_text().splitlines() if line)
    return {call.key: call for call in calls}


@contextmanager
def claim(store_root: Path, ledger_id: str) -> Iterator[bool]:
    """Hold the entry's lock file while taking it through a step (True), or learn that another
    process on this machine holds it (False: leave the entry to that process). Two processes
    advancing one entry at once could otherwise both create its batch."""
    path = _path(store_root, ledger_id, ".lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def open_keys(store_root: Path) -> set[str]:
    """Keys of every entry not yet collected: calls already paid for or on their way."""
    keys: set[str] = set()
    for entry in entries(store_root):
        if entry.is_open:
            keys |= set(read_calls(store_root, entry.ledger_id))
    return keys
