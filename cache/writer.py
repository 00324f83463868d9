"""StoreWriter: rows are journaled (durable) as they arrive, then batched into Parquet parts.

``add(row)`` only queues the row and returns at once (it is called on the run's event loop); a
background thread types the queued rows (``rows_to_table``: the scrubber runs there), appends them
to the journal as one group and fsyncs, then resolves each row's future: a caller that awaits it
knows the answer survives a SIGKILL. At least every ``flush_seconds`` (or ``max_rows``) the thread
closes the journal segment and writes it as the part named after it, then removes the segment and
calls ``on_durable(keys)`` (the run releases those keys' claims only then).

On a full disk nothing is dropped: the journal's reserved headroom takes the rows of the calls in
flight (``disk_full`` tells the run to stop scheduling), parts are retried at every flush, and what
is still not in a part at ``close`` stays in ``<store>/journal/<owner>/`` (mode 0600) for the next
command that writes the store to fold in.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from cache.journal import Journal, part_name
from cache.leases import Owner
from cache.storage import is_disk_full

if TYPE_CHECKING:
    from cache.store import Store


class StoreWriter:
    """Journal-first, thread-backed writer of response rows. Thread-safe; a context manager."""

    def __init__(
        self,
        store: Store,
        flush_seconds: float = 1.0,
        max_rows: int = 5000,
        *,
        owner: Owner | None = None,
        on_durable: Callable[[list[str]], None] | None = None,
    ):
        self.store, self.flush_seconds, self.max_rows = store, flush_seconds, max_rows
        self._own_owner = owner is None
        self.owner = owner or store.owner("store writer").start()
        self.journal = Journal(store.storage, self.owner.owner_id)
        try:
            self.journal.open(strict=True)  # no room for the journal: fail before any call is paid
        except BaseException:
            if self._own_owner:
                self.owner.stop()
            raise
        self.on_durable = on_durable
        self._cond = threading.Condition()
        self._queue: list[Mapping[str, Any]] = []
        self._queued: Future | None = None  # one future per group: resolved when the group is journaled
        self._dead = False
        self._segment: list[pa.Table] = []  # journaled rows of the open segment
        self._closed: list[tuple[int, pa.Table]] = []  # journaled segments waiting for their part
        self._unjournaled = False  # rows of the open segment that the journal could not take
        self._rewrite: set[int] = set()  # closed segments whose rows are not all in their journal file
        self._busy = False  # the thread holds rows taken from the queue
        self._flush_wanted = self._stop = False
        self._last_flush = time.monotonic()
        self.rows_written = 0
        self.disk_full: OSError | None = None  # set once the disk filled: stop starting calls
        self.error: BaseException | None = None  # the last failure to write a part
        self.bad_rows: list[str] = []  # rows that could not be typed (dropped; close raises ValueError)
        self._thread = threading.Thread(target=self._loop, name="medlens-writer", daemon=True)
        self._thread.start()

    # -- the caller's side ----------------------------------------------------------------
    def add(self, row: Mapping[str, Any]) -> Future:
        """Queue one row; the future resolves once it is in the journal (or fails with the OSError).
        Rows queued together share one future (one group, one fsync)."""
        with self._cond:
            if self._stop or self._dead:
                raise RuntimeError(f"StoreWriter is closed ({self.error or 'closed'})")
            if self._queued is None:
                self._queued = Future()
                self._cond.notify()  # the thread may be waiting for a first row
            self._queue.append(row)
            return self._queued

    @property
    def pending(self) -> int:
        """Rows added and not yet in a part."""
        with self._cond:
            return (
                len(self._queue)
                + sum(t.num_rows for t in self._segment)
                + sum(t.num_rows for _, t in self._closed)
                + (1 if self._busy else 0)
            )

    @property
    def journaled_only(self) -> int:
        """Rows durable in the journal but not in a part (what a full disk keeps there)."""
        with self._cond:
            return sum(t.num_rows for t in self._segment) + sum(t.num_rows for _, t in self._closed)

    def flush(self) -> int:
        """Write everything added so far into parts; returns the rows written. Raises the OSError of
        a failed part write (the rows stay journaled and queued, in order, for the next flush)."""
        before = self.rows_written
        with self._cond:
            self._flush_wanted, self.error = True, None
            self._cond.notify()
            while self._flush_wanted and self._thread.is_alive():
                self._cond.wait(0.05)
            error = self.error
        if error is not None:
            raise error
        return self.rows_written - before

    def close(self) -> None:
        """Flush and stop. If rows could not reach a part, they stay in the journal and an OSError
        says how many and where; the next command that writes the store folds them in."""
        with contextlib.suppress(OSError):  # a failed part write: the thread tries once more below
            self.flush()
        with self._cond:
            self._stop = True
            self._cond.notify()
        self._thread.join()
        kept_rows = self.journaled_only
        kept = self.journal.close()  # gives the reserve back: room for the segments and the run record
        lost = self._keep_unjournaled()
        if self._own_owner:
            self.owner.stop()
        if self.bad_rows:
            raise ValueError(f"{len(self.bad_rows)} row(s) could not be written: {self.bad_rows[0]}")
        if kept_rows or kept:
            where = f"{self.store.root}/{self.journal.folder}"
            raise OSError(
                f"could not write {kept_rows} row(s) to the parts of the store {self.store.root} "
                f"({self.error or self.disk_full}); {kept_rows - lost} are kept in {where} (journal, mode "
                "0600). Free space, then run any command that writes the store (e.g. the same `ingest run`): "
                "they are folded in without calling again" + (f"; {lost} could not be kept" if lost else "")
            )

    def _keep_unjournaled(self) -> int:
        """Rewrite the segments that lack rows the journal could not take; returns rows lost."""
        from cache.journal import encode_frame, segment_name

        lost = 0
        for seq, table in self._closed:
            if seq in self._rewrite:
                try:
                    self.store.storage.put(
                        segment_name(self.owner.owner_id, seq), encode_frame(table), mode=0o600
                    )
                except OSError:
                    lost += table.num_rows
        return lost

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the thread -----------------------------------------------------------------------
    def _loop(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # a bug of ours: fail every waiting row rather than hang the run
            with self._cond:
                self.error, self._dead, queued, self._queued = exc, True, self._queued, None
                self._queue, self._flush_wanted = [], False
                self._cond.notify_all()
            if queued is not None:
                queued.set_exception(exc)
            raise

    def _run(self) -> None:
        while True:
            with self._cond:
                while not (self._queue or self._stop or self._flush_wanted or self._due()):
                    self._cond.wait(self._wait_time())
                batch, future, self._queue, self._queued = self._queue, self._queued, [], None
                self._busy = bool(batch)
                stop, wanted = self._stop and not batch, self._flush_wanted
            if batch:
                self._journal(batch, future)
            if wanted or stop or self._due():
                self._write_parts()
            with self._cond:
                self._busy = False
                if wanted and not self._queue:
                    self._flush_wanted = False
                self._cond.notify_all()
            if stop:
                return

    def _rows(self) -> int:
        return sum(t.num_rows for t in self._segment)

    def _due(self) -> bool:
        rows = self._rows()
        late = time.monotonic() - self._last_flush >= self.flush_seconds
        return rows >= self.max_rows or bool((rows or self._closed) and late)

    def _wait_time(self) -> float | None:
        if not self._segment and not self._closed:
            return None
        return max(0.01, self.flush_seconds - (time.monotonic() - self._last_flush))

    def _journal(self, batch: list[Mapping[str, Any]], future: Future) -> None:
        from cache.store import rows_to_table

        try:
            table = rows_to_table(batch)
        except Exception:  # a bad row (unknown column, a bug): keep the others of its group
            good = []
            for row in batch:
                try:
                    good.append(rows_to_table([row]))
                except Exception as exc:
                    self.bad_rows.append(f"{row.get('key')}: {exc}")
            if not good:
                future.set_result(None)
                return
            table = pa.concat_tables(good)
        try:
            self.journal.append(table)
        except OSError as exc:  # no headroom left: keep the rows in memory for the part
            self.disk_full = self.disk_full or (exc if is_disk_full(exc) else None)
            self._segment.append(table)  # not journaled: only a part (or a rewritten segment) holds them
            self._unjournaled = True
            future.set_exception(exc)
            return
        if self.journal.low_space and self.disk_full is None:
            self.disk_full = OSError(28, "No space left on device (journal reserve could not grow)")
        self._segment.append(table)
        future.set_result(None)

    def _write_parts(self) -> None:
        self._last_flush = time.monotonic()
        if self._segment:
            seq = self.journal.rotate()
            if self._unjournaled:
                self._rewrite.add(seq)
            with self._cond:
                self._closed.append((seq, pa.concat_tables(self._segment)))
                self._segment, self._unjournaled = [], False
        while self._closed:
            seq, table = self._closed[0]
            try:
                name = part_name(self.owner.owner_id, seq)
                if not self.store.put_part(name, table):
                    self._add_missing(name, table)
            except OSError as exc:
                self.error = exc
                if is_disk_full(exc):
                    self.disk_full = self.disk_full or exc
                return
            self.journal.remove(seq)
            with self._cond:
                self._closed.pop(0)
                self.rows_written += table.num_rows
            if self.on_durable is not None:
                with contextlib.suppress(Exception):  # e.g. a claim not released: it expires with us
                    self.on_durable(table.column("key").to_pylist())

    def _add_missing(self, name: str, table: pa.Table) -> None:
        """Our part's name exists: another process took us for dead and folded our journal. Write
        the rows that part lacks (journaled after the fold) as a part of their own."""
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        with self.store.storage.open_input(name) as fh:
            present = pq.read_table(fh, columns=["key", "created_at"])
        seen = pc.binary_join_element_wise(present["key"], pc.cast(present["created_at"], pa.string()), "|")
        mine = pc.binary_join_element_wise(table["key"], pc.cast(table["created_at"], pa.string()), "|")
        missing = table.filter(pc.invert(pc.is_in(mine, value_set=seen)))
        if missing.num_rows:
            self.store.write_part(missing)
