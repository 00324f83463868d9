"""The response store: a directory of append-only Parquet parts read through in-memory DuckDB.

Layout::

    <store>/responses/part-<utc>-<uuid>.parquet   one file per flush, never rewritten (but by compact)
    <store>/readings/part-*.parquet               later readings of responses (reparse, reviewers)
    <store>/grades/part-*.parquet                 interpretation grades
    <store>/thumbs/<image_sha256>.jpg             small metadata-free thumbnails
    <store>/runs/<run_id>.json                    run provenance: arguments, audit, summary
    <store>/prep_memo.parquet                     (path, size, mtime) -> prepared image sha256

A part is written under a ``.tmp`` name that the readers' glob does not match, fsynced, then renamed,
so a reader never sees half a file and a crash never leaves one (see STACK_NOTES: DuckDB locking).
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cache.redact import scrub_json, scrub_secrets, scrub_secrets_table
from cache.schema import SCHEMA_VERSION, TABLES, arrow_schema
from cache.untrusted import MiB, read_capped, require_run_id, require_sha256

DEFAULT_STORE = Path("data/store")
PARTS_GLOB = "responses/**/*.parquet"
THUMB_MAX_BYTES = 16 * MiB
RUN_MAX_BYTES = 16 * MiB


def resolve_store(arg: str | os.PathLike[str] | None = None) -> Path:
    """`--store`, else env MEDLENS_STORE, else data/store (DESIGN: command-line contract)."""
    if arg:
        return Path(arg)
    env = os.environ.get("MEDLENS_STORE")
    return Path(env) if env else DEFAULT_STORE


def utcnow() -> datetime:
    return datetime.now(UTC)


def rows_to_table(rows: Iterable[Mapping[str, Any]], table: str = "responses") -> pa.Table:
    """Rows (dicts) to an Arrow table of ``table`` in the current schema; missing columns are null,
    unknown ones rejected."""
    rows = list(rows)
    declared = TABLES[table]
    for row in rows:
        unknown = set(row) - set(declared)
        if unknown:
            raise ValueError(f"unknown {table} column(s): {sorted(unknown)}")
    columns = {name: [row.get(name) for row in rows] for name in declared}
    columns["schema_version"] = [SCHEMA_VERSION] * len(rows)
    # no secret is ever written: error messages, model versions and answers echo what servers send
    return scrub_secrets_table(pa.Table.from_pydict(columns, schema=arrow_schema(table)))


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, rename: the file is either absent or complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Store:
    """A MedLens store directory. Cheap to construct; creates folders on first write."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)
        self.responses_dir = self.root / "responses"
        self.thumbs_dir = self.root / "thumbs"
        self.runs_dir = self.root / "runs"

    def table_dir(self, table: str = "responses") -> Path:
        """The folder of one table's parts (``TABLES`` names the tables)."""
        if table not in TABLES:
            raise ValueError(f"unknown store table {table!r}")
        return self.root / table

    # -- writing ---------------------------------------------------------------------------
    def write_part(self, data: pa.Table, table: str = "responses") -> Path | None:
        """Append one Parquet part of ``table`` (atomically). Returns its path, or None when empty."""
        if data.num_rows == 0:
            return None
        folder = self.table_dir(table)
        folder.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        final = folder / f"part-{stamp}-{uuid.uuid4().hex[:12]}.parquet"
        tmp = folder / f".{final.name}.tmp"  # outside the *.parquet glob
        with open(tmp, "wb") as fh:
            # row groups of 122,880 (DuckDB's own size): one huge group is scanned on one thread
            pq.write_table(data, fh, compression="zstd", row_group_size=122_880)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
        _fsync_dir(folder)
        return final

    def append(self, rows: Iterable[Mapping[str, Any]], table: str = "responses") -> Path | None:
        """Append rows of ``table`` (default: responses) as one part."""
        return self.write_part(rows_to_table(rows, table), table)

    def write_thumb(self, image_sha256: str, jpeg: bytes) -> None:
        path = self.thumb_path(image_sha256)
        if not path.exists():
            atomic_write_bytes(path, jpeg)

    def thumb_path(self, image_sha256: str) -> Path:
        """thumbs/<sha>.jpg; raises cache.untrusted.UnsafeValue unless ``image_sha256`` is a sha256."""
        return self.thumbs_dir / f"{require_sha256(image_sha256)}.jpg"

    def read_thumb(self, image_sha256: object) -> bytes | None:
        """The thumbnail's bytes, or None (no such image id, no file, not a regular file, over 16 MiB)."""
        try:
            return read_capped(self.thumb_path(image_sha256), THUMB_MAX_BYTES)  # type: ignore[arg-type]
        except (ValueError, OSError):
            return None

    def run_path(self, run_id: str) -> Path:
        """runs/<run_id>.json; raises cache.untrusted.UnsafeValue unless ``run_id`` is a plain name."""
        return self.runs_dir / f"{require_run_id(run_id)}.json"

    def write_run(self, run_id: str, meta: Mapping[str, Any]) -> None:
        meta = scrub_json(dict(meta), scrub_secrets)  # a run record holds options and messages
        data = json.dumps(meta, indent=2, sort_keys=True, default=str).encode()
        atomic_write_bytes(self.run_path(run_id), data)

    def runs(self) -> list[dict[str, Any]]:
        """Run provenance records, oldest first."""
        out = []
        for path in sorted(self.runs_dir.glob("*.json")) if self.runs_dir.exists() else []:
            try:
                out.append(json.loads(read_capped(path, RUN_MAX_BYTES)))
            except (OSError, ValueError):  # unreadable, too big or not JSON: not a run record
                continue
        return sorted(out, key=lambda r: str(r.get("started_at", "")))

    # -- reading ---------------------------------------------------------------------------
    def part_paths(self, table: str = "responses") -> list[Path]:
        """The Parquet parts of ``table``, sorted by name (oldest first)."""
        folder = self.table_dir(table)
        if not folder.exists():
            return []
        return sorted(folder.rglob("*.parquet"))

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the store's views (see cache.views)."""
        from cache.views import install_views

        con = duckdb.connect()
        install_views(con, self)
        return con

    def done_keys(self) -> set[str]:
        """Keys that already have an ok row: `run` never calls these again."""
        if not self.part_paths():
            return set()
        con = duckdb.connect()
        try:
            rows = con.execute(
                "SELECT DISTINCT key FROM read_parquet(?, union_by_name=true) WHERE status = 'ok'",
                [str(self.root / PARTS_GLOB)],
            ).fetchall()
        finally:
            con.close()
        return {r[0] for r in rows}

    def compact(self) -> tuple[int, int]:
        """Merge all parts into one, atomically. Returns (parts before, rows).

        The merged file is written and renamed into place before the old parts are removed; a reader
        between the two steps may see rows twice, which the `results` view's dedup by key absorbs.
        """
        parts = self.part_paths()
        if len(parts) <= 1:
            return len(parts), (pq.read_metadata(parts[0]).num_rows if parts else 0)
        con = duckdb.connect()
        try:
            files = [str(p) for p in parts]
            table = con.sql(
                "SELECT * FROM read_parquet($files, union_by_name=true) ORDER BY created_at",
                params={"files": files},
            ).to_arrow_table()
        finally:
            con.close()
        self.write_part(table)
        for path in parts:
            path.unlink(missing_ok=True)
        _fsync_dir(self.responses_dir)
        return len(parts), table.num_rows


class StoreWriter:
    """Buffers rows and flushes them as parts at least once a second (and on close).

    Thread-safe. Used as a context manager by the runner, so Ctrl-C / SIGTERM flush what is done.
    """

    def __init__(self, store: Store, flush_seconds: float = 1.0, max_rows: int = 5000):
        self.store = store
        self.flush_seconds = flush_seconds
        self.max_rows = max_rows
        self._buffer: list[Mapping[str, Any]] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self.rows_written = 0

    def add(self, row: Mapping[str, Any]) -> None:
        with self._lock:
            self._buffer.append(row)
            due = (
                len(self._buffer) >= self.max_rows
                or time.monotonic() - self._last_flush >= self.flush_seconds
            )
        if due:
            self.flush()

    def flush(self) -> int:
        """Write the buffered rows as one part. If the write fails (disk full, OSError...), the rows go
        back to the front of the buffer, in order, and the error propagates: nothing is lost."""
        with self._lock:
            rows, self._buffer = self._buffer, []
            self._last_flush = time.monotonic()
            if rows:
                try:
                    self.store.append(rows)
                except BaseException:
                    self._buffer[:0] = rows
                    raise
                self.rows_written += len(rows)
        return len(rows)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        """Flush what is left. If that still fails, the pending rows are saved to a rescue JSONL file
        (``<store>/rescue-<utc>.jsonl``, else in the temp folder) and an OSError names it."""
        try:
            self.flush()
        except Exception as exc:
            with self._lock:
                rows, self._buffer = self._buffer, []
            if not rows:
                raise
            rescue = self._rescue(rows)
            if rescue is None:
                raise OSError(f"could not write {len(rows)} row(s) to the store {self.store.root} ({exc}) "
                              "nor to a rescue file: they are lost") from exc
            raise OSError(
                f"could not write {len(rows)} row(s) to the store {self.store.root} ({exc}); they are kept in "
                f"{rescue} (JSON lines, one row per line in the store schema). Free space; running the same "
                "command again calls those keys again"
            ) from exc

    def _rescue(self, rows: list[Mapping[str, Any]]) -> Path | None:
        name = f"rescue-{utcnow().strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:8]}.jsonl"
        data = "".join(json.dumps(dict(row), default=str) + "\n" for row in rows).encode()
        for folder in (self.store.root, Path(tempfile.gettempdir())):
            path, created = folder / name, False
            try:
                folder.mkdir(parents=True, exist_ok=True)
                with open(path, "xb") as fh:
                    created = True
                    fh.write(data)
                    fh.flush()
                    os.fsync(fh.fileno())
                return path
            except OSError:
                if created:
                    path.unlink(missing_ok=True)
        return None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
