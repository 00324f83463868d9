"""The claims of one writing session (an ``ingest run``, a batch submission): never call a key twice.

``KeyClaimer.claim(keys)`` is called just before the keys are called (a few dozen at a time, off
the event loop). For each key it creates the claim if absent (``cache.leases``); a key claimed by a
live owner is *held* (skip it, or wait); a key claimed by a dead owner is taken over, but only after
that owner's journal is folded into the store, so an answer it paid for is found instead of paid
again. Then it re-reads the parts written since the session's snapshot (other owners release a
claim only once the key's row is durable in a part), and drops every key that has an ``ok`` row by
now: a session that planned before another finished a key never calls it.

The owner releases a key's claim once its row is in a part (``release``, given to the StoreWriter
as ``on_durable``), and at the end every claim it won but did not call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import pyarrow.parquet as pq

from cache.leases import Claims, Holder, Liveness, Owner


@dataclass
class Claimed:
    """What one ``claim`` gave: keys to call now, keys another live owner holds, keys found done."""

    won: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # key -> owner id
    done: list[str] = field(default_factory=list)


class KeyClaimer:
    """Claims, re-checks and releases the keys of one owner's session on a store."""

    def __init__(self, store: object, owner: Owner, snapshot_parts: list[str]):
        self.store, self.owner = store, owner
        self.liveness = Liveness(store.storage, owner.ttl)  # type: ignore[attr-defined]
        self.claims = Claims(store.storage, owner, self.liveness)  # type: ignore[attr-defined]
        self.known = set(snapshot_parts)
        self._own = f"part-{owner.owner_id}-"
        self.done: set[str] = set()  # keys answered ok in parts written since the snapshot
        self.unused: set[str] = set()  # claims won whose call has not started
        self.calling: set[str] = set()  # calls started whose row has not reached the writer
        self._lock = threading.Lock()  # the claims' files (claim, release: I/O, off the loop)
        self._sets = threading.Lock()  # unused / calling (started, added: on the loop, never wait on I/O)

    def _refresh(self) -> None:
        """Read the keys of parts that appeared since the last look (not our own parts)."""
        for name in self.store.part_names():  # type: ignore[attr-defined]
            if name in self.known:
                continue
            self.known.add(name)
            if name.rsplit("/", 1)[-1].startswith(self._own):
                continue
            try:
                with self.store.storage.open_input(name) as fh:  # type: ignore[attr-defined]
                    table = pq.read_table(fh, columns=["key", "status"])
            except (OSError, ValueError):
                continue  # removed by a compaction meanwhile: its merged part shows up as new
            keys, status = table.column("key").to_pylist(), table.column("status").to_pylist()
            self.done.update(k for k, s in zip(keys, status, strict=True) if s == "ok")

    def claim(self, keys: list[str]) -> Claimed:
        """Claim ``keys`` (see the module docstring). Thread-safe; blocking (run it off the loop)."""
        with self._lock:
            result = self.claims.try_many(keys)
            won, held = list(result.won), dict(result.held)
            if result.dead:
                folded = self.store.recover(self.owner, self.liveness)  # type: ignore[attr-defined]
                for key, dead in result.dead.items():
                    if folded is not None and self.claims.take_over(key, dead):
                        won.append(key)
                    else:  # compaction holds the layout (fold later), or another run took it first
                        held[key] = dead
            self._refresh()
            out = Claimed(held=held)
            for key in won:
                (out.done if key in self.done else out.won).append(key)
            self.claims.release(out.done)
            with self._sets:
                self.unused.update(out.won)
            return out

    def started(self, key: str) -> None:
        """The call of ``key`` begins: its claim is released by ``release`` once its row is durable."""
        with self._sets:
            self.unused.discard(key)
            self.calling.add(key)

    def added(self, key: str) -> None:
        """The row of ``key`` is with the writer (released when durable in a part, or kept claimed
        while only the journal holds it: a later run folds it in before taking the key over)."""
        with self._sets:
            self.calling.discard(key)

    def release(self, keys: list[str]) -> None:
        """Release claims whose rows are durable in a part (the writer's ``on_durable``)."""
        with self._lock:
            self.claims.release(keys)

    def release_unused(self) -> None:
        """Release the claims won but never called (a stop, a budget, a full disk) or whose call was
        cancelled before it gave a row."""
        with self._lock:
            with self._sets:
                left = sorted(self.unused | self.calling)
                self.unused.clear()
                self.calling.clear()
            self.claims.release(left)

    def holder(self, owner_id: str) -> Holder:
        return self.liveness.holder(owner_id)
