"""The response store: a directory of append-only Parquet parts read through in-memory DuckDB.

Layout::

    <store>/responses/part-<utc>-<uuid>.parquet   one file per flush, never rewritten (but by compact)
    <store>/readings/part-*.parquet               later readings of responses (reparse, reviewers)
    <store>/grades/part-*.parquet                 interpretation grades
    <store>/thumbs/<image_sha256>.jpg             small metadata-free thumbnails
    <store>/runs/<run_id>.json                    run provenance: arguments, audit, summary
    <store>/prep_memo.parquet                     (path, size, mtime) -> prepared image sha256

    <store>/merged-*.parquet in responses/       compact's output: lists the parts it replaces
    <store>/journal/<run>/<seq>.log               answers not yet in a part (cache.journal)
    <store>/claims/<key>, leases/<owner>.json     who is calling what, who is alive (cache.leases)

A part is written under a ``.tmp`` name that the readers' glob does not match, fsynced, then linked
into place (create-if-absent), so a reader never sees half a file and a crash never leaves one (see
STACK_NOTES: DuckDB locking). Every file operation goes through ``cache.storage``.

A store is a local folder or ``s3://bucket/prefix`` (``cache.location``; ``cache.s3storage`` on S3).
On S3 the same layout holds objects, readers scan the parts as an Arrow dataset (``cache.views``),
and what describes this machine rather than the study (the preparation memo, the prepared images)
stays in a local folder (``Store.local_dir``, see ``cache.location.S3Location.local_cache``).

Compaction never leaves a duplicate: the merged part records, in its Parquet metadata, the names of
the parts it replaces; listing ignores a part that a complete merged part lists, whether or not it
has been removed yet, so a kill at any instant leaves every row exactly once.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from cache.journal import fold_journal, journal_owners, segment_of_part
from cache.leases import CLAIMS, LEASES, Claims, Liveness, Owner, StoreBusy, layout_lease
from cache.location import S3Location, StoreLocation, parse_location
from cache.redact import SMALL_TABLE, scrub_json, scrub_secrets, scrub_secrets_rows, scrub_secrets_table
from cache.schema import SCHEMA_VERSION, TABLES, arrow_schema
from cache.storage import Entry, LocalStorage, Storage, is_disk_full
from cache.untrusted import MiB, read_capped, require_run_id, require_sha256

DEFAULT_STORE = Path("data/store")
PARTS_GLOB = "responses/**/*.parquet"
THUMB_MAX_BYTES = 16 * MiB
RUN_MAX_BYTES = 16 * MiB
REPLACES_KEY = b"medlens.replaces"
_REPLACES: dict[tuple[str, int], frozenset[str]] = {}  # (merged part path, size) -> names it replaces


def resolve_store(arg: str | os.PathLike[str] | None = None) -> StoreLocation:
    """`--store`, else env MEDLENS_STORE, else data/store (DESIGN: command-line contract): a folder
    or ``s3://bucket/prefix``. Raises cache.location.StoreLocationError for a malformed location."""
    if arg:
        return parse_location(arg)
    env = os.environ.get("MEDLENS_STORE")
    return parse_location(env) if env else DEFAULT_STORE


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
    schema = arrow_schema(table)
    # no secret is ever written: error messages, model versions and answers echo what servers send
    small = len(rows) <= SMALL_TABLE  # a journal group (often one row): scrubbed in Python, then typed
    if small:
        rows = scrub_secrets_rows(rows, schema)
        # one conversion of the rows as structs (missing keys are null): a third of the CPU of
        # one conversion per column
        values = pa.array([{**row, "schema_version": SCHEMA_VERSION} for row in rows], type=pa.struct(list(schema)))
        return pa.Table.from_batches([pa.RecordBatch.from_struct_array(values)], schema=schema)
    columns = {name: [row.get(name) for row in rows] for name in declared}
    columns["schema_version"] = [SCHEMA_VERSION] * len(rows)
    return scrub_secrets_table(pa.Table.from_pydict(columns, schema=schema))


def atomic_write_bytes(path: Path, data: bytes, durable: bool = True) -> None:
    """Write to a temporary sibling, fsync (unless not ``durable``), rename: absent or complete."""
    LocalStorage(path.parent).put(path.name, data, durable=durable)


def _parquet_writer(table: pa.Table) -> Any:
    def write(fh: Any) -> None:
        # row groups of 122,880 (DuckDB's own size): one huge group is scanned on one thread
        pq.write_table(table, fh, compression="zstd", row_group_size=122_880)

    return write


class Store:
    """A MedLens store (a folder, or ``s3://bucket/prefix``). Cheap to construct; creates folders on
    first write. ``root`` is the folder's ``Path``, or the ``S3Location`` (``str(root)`` names either)."""

    def __init__(self, root: str | os.PathLike[str] | S3Location, storage: Storage | None = None):
        self.root: Any = parse_location(root)
        self.remote = isinstance(self.root, S3Location)
        if storage is None:
            if self.remote:
                from cache.s3storage import S3Storage  # boto3 is imported for S3 stores only

                storage = S3Storage(self.root)
            else:
                storage = LocalStorage(self.root)
        self.storage: Storage = storage

    def _folder(self, name: str) -> Path:
        if self.remote:
            raise TypeError(f"{self.root} is on object storage: it has no local folder {name}/ "
                            "(go through Store methods or store.storage)")
        return self.root / name

    @property
    def responses_dir(self) -> Path:
        return self._folder("responses")

    @property
    def thumbs_dir(self) -> Path:
        return self._folder("thumbs")

    @property
    def runs_dir(self) -> Path:
        return self._folder("runs")

    @property
    def local_dir(self) -> Path:
        """This machine's folder of the store's local files (memo, prepared images): the store
        folder itself, or for an S3 store ``S3Location.local_cache()`` (they describe this machine's
        files, and are caches: see cache.location)."""
        return self.root.local_cache() if self.remote else self.root

    def exists(self) -> bool:
        """Whether the store holds anything yet (an S3 store: any object under its prefix)."""
        if not self.remote:
            return self.root.exists()
        return bool(self.storage.list(""))

    def table_dir(self, table: str = "responses") -> Path:
        """The folder of one table's parts (``TABLES`` names the tables)."""
        if table not in TABLES:
            raise ValueError(f"unknown store table {table!r}")
        return self._folder(table)

    # -- writing ---------------------------------------------------------------------------
    def put_part(self, name: str, data: pa.Table, replaces: list[str] | None = None) -> bool:
        """Create the part ``name`` (store-relative) unless it exists; True when this call made it."""
        if replaces is not None:
            meta = dict(data.schema.metadata or {}) | {REPLACES_KEY: json.dumps(replaces).encode()}
            data = data.replace_schema_metadata(meta)
        return self.storage.put_if_absent(name, _parquet_writer(data))

    def write_part(self, data: pa.Table, table: str = "responses") -> Path | str | None:
        """Append one Parquet part of ``table`` (atomically). Returns its path (an S3 store: its URL),
        or None when empty."""
        if data.num_rows == 0:
            return None
        if table not in TABLES:
            raise ValueError(f"unknown store table {table!r}")
        name = f"{table}/part-{utcnow().strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:12]}.parquet"
        self.put_part(name, data)
        return f"{self.root}/{name}" if self.remote else self.root / name

    def append(self, rows: Iterable[Mapping[str, Any]], table: str = "responses") -> Path | str | None:
        """Append rows of ``table`` (default: responses) as one part."""
        return self.write_part(rows_to_table(rows, table), table)

    def write_thumb(self, image_sha256: str, jpeg: bytes) -> None:
        # no fsync: a thumbnail lost in a power cut is only missing from a page
        if self.remote:
            self.storage.put_if_absent(self.thumb_name(image_sha256), jpeg, durable=False)
            return
        path = self.thumb_path(image_sha256)
        if not path.exists():
            atomic_write_bytes(path, jpeg, durable=False)

    def thumb_name(self, image_sha256: str) -> str:
        """thumbs/<sha>.jpg; raises cache.untrusted.UnsafeValue unless ``image_sha256`` is a sha256."""
        return f"thumbs/{require_sha256(image_sha256)}.jpg"

    def thumb_path(self, image_sha256: str) -> Path:
        """The thumbnail's file (a local store; see ``thumb_name``, ``has_thumb``)."""
        return self._folder("thumbs") / f"{require_sha256(image_sha256)}.jpg"

    def has_thumb(self, image_sha256: str) -> bool:
        return self.storage.exists(self.thumb_name(image_sha256))

    def read_thumb(self, image_sha256: object) -> bytes | None:
        """The thumbnail's bytes, or None (no such image id, no file, not a regular file, over 16 MiB)."""
        try:
            if self.remote:
                return self.storage.read_capped(self.thumb_name(image_sha256), THUMB_MAX_BYTES)  # type: ignore[arg-type]
            return read_capped(self.thumb_path(image_sha256), THUMB_MAX_BYTES)  # type: ignore[arg-type]
        except (ValueError, OSError):
            return None

    def run_name(self, run_id: str) -> str:
        """runs/<run_id>.json; raises cache.untrusted.UnsafeValue unless ``run_id`` is a plain name."""
        return f"runs/{require_run_id(run_id)}.json"

    def run_path(self, run_id: str) -> Path:
        """The run record's file (a local store; see ``run_name``, ``read_json``)."""
        return self._folder("runs") / f"{require_run_id(run_id)}.json"

    def write_run(self, run_id: str, meta: Mapping[str, Any]) -> None:
        meta = scrub_json(dict(meta), scrub_secrets)  # a run record holds options and messages
        data = json.dumps(meta, indent=2, sort_keys=True, default=str).encode()
        if self.remote:
            self.storage.put(self.run_name(run_id), data)
        else:
            self._write_run_bytes(self.run_path(run_id), data)

    def read_json(self, name: str, max_bytes: int = RUN_MAX_BYTES) -> Any:
        """A small JSON file of the store (``runs/<id>.json``, ``demo.json``...), or None when it is
        missing, too big, not a regular file or not JSON."""
        try:
            return json.loads(self.storage.read_capped(name, max_bytes))
        except (OSError, ValueError):
            return None

    def reserve_run(self, run_id: str, size: int = 256 << 10) -> None:
        """Set space aside for the run record, so that a run on a disk that fills up still writes it
        (a local store: an object store does not fill up)."""
        if self.remote:
            return
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.runs_dir / f".{require_run_id(run_id)}.json.reserve", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(fd, 0, size)
        finally:
            os.close(fd)

    def _write_run_bytes(self, path: Path, data: bytes) -> None:
        reserve = path.with_name(f".{path.name}.reserve")
        try:
            atomic_write_bytes(path, data)
        except OSError as exc:  # a full disk: write into the space set aside (no new blocks needed)
            if not (is_disk_full(exc) and reserve.exists() and len(data) <= reserve.stat().st_size):
                raise
            fd = os.open(reserve, os.O_WRONLY)
            try:
                os.pwrite(fd, data, 0)
                os.ftruncate(fd, len(data))
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(reserve, path)
        reserve.unlink(missing_ok=True)

    def runs(self) -> list[dict[str, Any]]:
        """Run provenance records, oldest first (unreadable, too big or not JSON: not a run record)."""
        found = (self.read_json(name) for name in self.storage.list("runs") if name.endswith(".json"))
        return sorted((r for r in found if isinstance(r, dict)), key=lambda r: str(r.get("started_at", "")))

    # -- reading ---------------------------------------------------------------------------
    def _replaced_by(self, name: str) -> frozenset[str]:
        """The part names a merged part replaces (from its footer; cached: parts never change)."""
        try:
            with self.storage.open_input(name) as fh:
                key = (f"{self.root}/{name}", fh.seek(0, os.SEEK_END))
                if key not in _REPLACES:
                    meta = pq.ParquetFile(fh).schema_arrow.metadata or {}
                    _REPLACES[key] = frozenset(json.loads(meta.get(REPLACES_KEY, b"[]")))
            return _REPLACES[key]
        except (OSError, ValueError, pa.ArrowException):
            return frozenset()  # unreadable: it replaces nothing (and queries name it)

    def part_names(self, table: str = "responses", include_replaced: bool = False) -> list[str]:
        """Store-relative names of the parts of ``table`` that hold its rows, sorted (oldest first).

        A part that a complete merged part replaces is left out (compaction in progress or killed);
        with ``include_replaced``, those names are added (present or already removed)."""
        names = [n for n in self.storage.list(table, recursive=True) if n.endswith(".parquet")]
        return self._holding(names, include_replaced)

    def part_entries(self, table: str = "responses") -> list[Entry]:
        """The parts of ``table`` that hold its rows, with sizes and times (one listing; see ``part_names``)."""
        entries = [e for e in self.storage.entries(table) if e.name.endswith(".parquet")]
        keep = set(self._holding([e.name for e in entries]))
        return [e for e in entries if e.name in keep]

    def _holding(self, names: list[str], include_replaced: bool = False) -> list[str]:
        replaced: set[str] = set()
        for name in names:
            if name.rsplit("/", 1)[-1].startswith("merged-"):
                replaced |= self._replaced_by(name)
        if include_replaced:
            return sorted(set(names) | replaced)
        return [n for n in names if n not in replaced]

    def part_paths(self, table: str = "responses") -> list[Path]:
        """The Parquet parts of ``table`` of a local store, sorted by name (oldest first); see
        ``part_names`` (which names them on any store)."""
        self._folder(table)  # a local store only
        return [self.root / name for name in self.part_names(table)]

    def part_sizes(self, table: str = "responses") -> dict[str, int]:
        """Bytes of each part of ``table`` that holds rows (one listing; see ``part_names``)."""
        return {e.name: e.size for e in self.part_entries(table)}

    def foreign_parts(self, table: str = "responses") -> list[tuple[str, str]]:
        """(file, reason) for Parquet files among ``table``'s parts that are not MedLens parts
        (footers only; see cache.untrusted.foreign_parts)."""
        from cache.untrusted import foreign_parts

        if not self.remote:
            return [(str(p), reason) for p, reason in foreign_parts(self.part_paths(table), table)]
        found = foreign_parts(self.part_names(table), table, open_input=self.storage.open_input)
        return [(f"{self.root}/{name}", reason) for name, reason in found]

    def connect(self) -> duckdb.DuckDBPyConnection:
        """An in-memory DuckDB connection with the store's views (see cache.views)."""
        from cache.views import install_views

        con = duckdb.connect()
        install_views(con, self)
        return con

    def done_keys(self) -> set[str]:
        """Keys that already have an ok row: `run` never calls these again."""
        from cache.views import parts_source

        names = self.part_names()
        if not names:
            return set()
        con = duckdb.connect()
        try:
            source = parts_source(con, self, "responses", names)
            rows = con.execute(f"SELECT DISTINCT key FROM {source} WHERE status = 'ok'").fetchall()
        finally:
            con.close()
        return {r[0] for r in rows}

    # -- owners, recovery, compaction ------------------------------------------------------
    def owner(self, command: str, owner_id: str | None = None) -> Owner:
        """A lease for a process writing this store (use as a context manager)."""
        return Owner(self.storage, command, owner_id)

    def fold_dead_journals(self, owner: Owner, liveness: Liveness | None = None) -> int:
        """Fold the journals of dead owners into parts. The caller holds the layout lease."""
        liveness = liveness or Liveness(self.storage, owner.ttl)
        folded = 0
        for other in journal_owners(self.storage):
            if other != owner.owner_id and not liveness.alive(other):
                folded += fold_journal(self, other)
                self.storage.delete(f"{LEASES}/{other}.json")
        return folded

    def recover(self, owner: Owner, liveness: Liveness | None = None) -> int | None:
        """Fold what dead runs journaled (rows folded), or None when another process holds the
        layout lease (compacting): the dead runs' keys stay claimed until a later try."""
        liveness = liveness or Liveness(self.storage, owner.ttl)
        if not any(o != owner.owner_id and not liveness.alive(o) for o in journal_owners(self.storage)):
            return 0
        try:
            with layout_lease(self.storage, owner, "folding a dead run's journal", self.root):
                folded = self.fold_dead_journals(owner, liveness)
                self.sweep_claims(owner, liveness)  # the dead runs' claims on keys now answered
                return folded
        except StoreBusy:
            return None

    def _drop_replaced(self) -> None:
        """Finish an interrupted compaction: remove parts (and their journal segments) it replaced."""
        for name in set(self.part_names(include_replaced=True)) - set(self.part_names()):
            segment = segment_of_part(name)
            if segment:
                self.storage.delete(segment)
            self.storage.delete(name)

    def sweep_claims(self, owner: Owner, liveness: Liveness) -> int:
        """Remove claims left by dead owners (after their journals are folded); returns how many."""
        claims, swept = Claims(self.storage, owner, liveness), 0
        for name in self.storage.list(CLAIMS):
            base = name.rsplit("/", 1)[-1]
            if ".x-" in base:
                key, dead = base.split(".x-", 1)
                if not liveness.alive(dead) and claims._owner_of(key) != dead:
                    self.storage.delete(name)  # a taker's marker left behind by a taker that died
                continue
            holder = claims._owner_of(base)
            if holder and holder != "?" and not liveness.alive(holder) and claims.take_over(base, holder):
                claims.release([base])
                swept += 1
        return swept

    def compact(self) -> tuple[int, int]:
        """Merge all parts into one under the layout lease. Returns (parts before, rows).

        Kill-safe: the merged part lists the parts it replaces (readers ignore them at once), then
        they are removed; a killed compaction's leftovers are removed by the next one."""
        with self.owner("cache compact") as owner, layout_lease(self.storage, owner, "`cache compact`", self.root):
            liveness = Liveness(self.storage, owner.ttl)
            self.fold_dead_journals(owner, liveness)
            self._drop_replaced()
            self.sweep_claims(owner, liveness)
            return self._merge()

    def _merge(self) -> tuple[int, int]:
        from cache.views import parts_source

        names = self.part_names()
        if len(names) <= 1:
            if not names:
                return 0, 0
            with self.storage.open_input(names[0]) as fh:
                return 1, pq.ParquetFile(fh).metadata.num_rows
        con = duckdb.connect()
        try:
            source = parts_source(con, self, "responses", names)
            table = con.sql(f"SELECT * FROM {source} ORDER BY created_at").to_arrow_table()
        finally:
            con.close()
        merged = f"responses/merged-{utcnow().strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:12]}.parquet"
        self.put_part(merged, table, replaces=names)
        self._drop_replaced()
        return len(names), table.num_rows


# The writer lives in cache.writer (journal, background thread); imported here, where callers find it.
from cache.writer import StoreWriter  # noqa: E402

__all__ = ["DEFAULT_STORE", "Store", "StoreBusy", "StoreWriter", "atomic_write_bytes", "resolve_store",
           "rows_to_table", "utcnow"]
