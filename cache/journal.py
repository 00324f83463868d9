"""The journal: every answer is durable the moment it arrives, before it is batched into a part.

Layout (inside the store, never the system temp folder; folder 0700, files 0600)::

    <store>/journal/<owner_id>/<seq>.log    one segment per future part of that owner

A segment is a sequence of frames, one per small group of rows, each fsynced as it is written:
``b"MLJ1"``, payload length and CRC-32 (little-endian u32), then the rows as an Arrow IPC stream
(types exact, secrets already scrubbed: the rows went through ``rows_to_table``). A reader stops at
the first frame that is short, zero (space reserved ahead) or fails its CRC: a torn tail left by a
kill or a full disk costs at most the group being written.

Segment ``<seq>`` of owner ``X`` becomes exactly one part, named after it:
``responses/part-<X>-<seq>.parquet``. The owner writes that part when it flushes and then removes
the segment; after a crash, whoever folds the journal (``fold_journal``) writes the same name if
absent, so a segment folded twice, or folded by its owner and by someone else, gives one part.
"""

from __future__ import annotations

import re
import struct
import zlib
from typing import Any

import pyarrow as pa

from cache.leases import check_owner_id

JOURNAL = "journal"
MAGIC = b"MLJ1"
_HEAD = struct.Struct("<4sII")
_SEGMENT = re.compile(r"^(\d{6,})\.log$")
_JOURNAL_PART = re.compile(r"^part-(\d{8}T\d{6}Z-[0-9a-f]{6,32})-(\d{6,})\.parquet$")
#: allocated ahead of the journal's writes, and kept free for the calls in flight when the disk fills
RESERVE_BYTES = 4 << 20
HEADROOM_BYTES = 1 << 20


def encode_frame(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as stream:
        stream.write_table(table)
    payload = sink.getvalue().to_pybytes()
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def decode_frames(data: bytes) -> list[pa.Table]:
    """The complete frames of a segment, in order; stops at a torn or reserved (zero) tail."""
    tables, offset = [], 0
    while offset + _HEAD.size <= len(data):
        magic, length, crc = _HEAD.unpack_from(data, offset)
        payload = data[offset + _HEAD.size : offset + _HEAD.size + length]
        if magic != MAGIC or len(payload) != length or zlib.crc32(payload) != crc:
            break
        try:
            tables.append(pa.ipc.open_stream(payload).read_all())
        except pa.ArrowException:
            break
        offset += _HEAD.size + length
    return tables


def segment_name(owner_id: str, seq: int) -> str:
    return f"{JOURNAL}/{check_owner_id(owner_id)}/{seq:06d}.log"


def part_name(owner_id: str, seq: int, table: str = "responses") -> str:
    """The part a journal segment becomes (one name per segment: folding is idempotent)."""
    return f"{table}/part-{check_owner_id(owner_id)}-{seq:06d}.parquet"


def segment_of_part(name: str) -> str | None:
    """The journal segment a part was made from, or None for a part not made from a journal."""
    found = _JOURNAL_PART.match(name.rsplit("/", 1)[-1])
    return segment_name(found.group(1), int(found.group(2))) if found else None


def read_segment(storage: Any, name: str) -> pa.Table | None:
    tables = decode_frames(storage.read_log(name))
    return pa.concat_tables(tables, promote_options="permissive") if tables else None


class Journal:
    """One owner's journal: append groups of rows (durable on return), rotate into segments."""

    def __init__(
        self, storage: Any, owner_id: str, reserve: int = RESERVE_BYTES, headroom: int = HEADROOM_BYTES
    ):
        self.storage, self.owner_id = storage, check_owner_id(owner_id)
        self.reserve, self.headroom = reserve, headroom
        self.seq = 1
        self.rows = 0  # rows in the open segment
        self._log = None
        self._closed: dict[int, Any] = {}  # closed segments not yet in a part: their space stays reserved
        self.low_space = False  # the reserve could not be extended: stop starting new calls

    @property
    def folder(self) -> str:
        return f"{JOURNAL}/{self.owner_id}"

    def open(self, strict: bool = False) -> None:
        """Open the current segment and reserve space ahead. ``strict`` (the first segment, before
        any call): no space raises OSError (ENOSPC). Later, it only sets ``low_space``."""
        if self._log is not None:
            return
        name = segment_name(self.owner_id, self.seq)
        try:
            self._log = self.storage.open_log(name, self.reserve)
        except OSError:
            if strict:
                self.storage.delete_log(name)
                raise
            self.low_space = True
            self._log = self.storage.open_log(name, 0)

    def append(self, table: pa.Table) -> None:
        """Write one group of rows and fsync it. Extends the reservation first; when that fails
        (disk full) the group still goes into the headroom left and ``low_space`` is set."""
        self.open()
        frame = encode_frame(table)
        ensure = getattr(self._log, "ensure", None)
        if ensure is not None:
            try:
                ensure(self.headroom + len(frame))
            except OSError:
                self.low_space = True
        self._log.append(frame)
        self._log.sync()
        self.rows += table.num_rows

    def rotate(self) -> int:
        """Close the open segment; returns its number (the part it becomes). The next append opens
        the next segment."""
        seq = self.seq
        if self._log is not None:
            if self.rows == 0:
                self._log.close()
                self.remove(seq)
            else:
                self._closed[seq] = self._log  # reserve kept until its part is written
            self._log = None
        self.rows, self.seq = 0, seq + 1
        return seq

    def remove(self, seq: int) -> None:
        log = self._closed.pop(seq, None)
        if log is not None:
            log.close(trim=False)
        self.storage.delete_log(segment_name(self.owner_id, seq))

    def close(self) -> list[str]:
        """Close; remove the folder when empty. Returns the segments still kept (not in parts)."""
        for log in self._closed.values():
            log.close()  # trimmed: the reserve goes back (room for the run record)
        self._closed.clear()
        if self._log is not None:
            self._log.close()
            self._log = None
            if self.rows == 0:
                self.remove(self.seq)
        kept = [n for n in self.storage.list(self.folder) if _SEGMENT.match(n.rsplit("/", 1)[-1])]
        if not kept:
            self.storage.delete(self.folder)
        return kept


def journal_owners(storage: Any) -> list[str]:
    """Owners with a journal folder in the store."""
    return [name.rsplit("/", 1)[-1] for name in storage.list(JOURNAL)]


def fold_journal(store: Any, owner_id: str) -> int:
    """Turn a dead owner's segments into parts, each under its own name if absent; remove them.

    Exactly once: a segment whose part exists (or was merged by ``compact``) is only removed.
    The caller holds the layout lease, so no compaction runs meanwhile. Returns rows folded."""
    storage = store.storage
    existing = set(store.part_names(include_replaced=True))
    folded = 0
    for seg in storage.list(f"{JOURNAL}/{check_owner_id(owner_id)}"):
        found = _SEGMENT.match(seg.rsplit("/", 1)[-1])
        if not found:
            continue
        name = part_name(owner_id, int(found.group(1)))
        if name not in existing:
            table = read_segment(storage, seg)
            if table is not None and store.put_part(name, table):
                folded += table.num_rows
        storage.delete_log(seg)
    storage.delete(f"{JOURNAL}/{owner_id}")
    return folded
