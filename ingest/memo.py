"""Memo of prepared-image identities: (path, size, mtime, preparation options) -> sha256.

A fully cached re-run must not decode 10,000 images to learn that nothing is left to do. The memo
lives in the store folder (``prep_memo.parquet``; for an S3 store in this machine's ``Store.local_dir``:
it maps this machine's paths) and is only a shortcut: a changed file (size or mtime)
misses and is prepared again; a deleted memo costs time, never correctness.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from cache.schema import canonical_json
from cache.store import Store, atomic_write_bytes

MEMO_NAME = "prep_memo.parquet"
MEMO_SCHEMA = pa.schema([
    ("path", pa.string()), ("size", pa.int64()), ("mtime_ns", pa.int64()), ("prep", pa.string()),
    ("sha256", pa.string()), ("mime", pa.string()), ("width", pa.int32()), ("height", pa.int32()),
])


def _plain_absolute(path: str) -> bool:
    """``path`` is what ``os.path.abspath`` would return for it (absolute, no ``.``, ``..`` or empty
    segment): the common case, checked without abspath's normalisation of every segment."""
    return (
        path.startswith("/") and not path.startswith("//") and not path.endswith(("/", "/.", "/.."))
        and "/./" not in path and "/../" not in path and "//" not in path[1:]
    )  # fmt: skip


class PrepMemo:
    def __init__(self, store: Store, prep_params: dict[str, Any], entries: dict[tuple, tuple]):
        self.store = store
        self.prep = canonical_json(prep_params)
        self.entries = entries
        self.dirty = False

    @classmethod
    def load(cls, store: Store, prep_params: dict[str, Any]) -> PrepMemo:
        path = store.local_dir / MEMO_NAME
        entries: dict[tuple, tuple] = {}
        if path.exists():
            try:
                cols = pq.ParquetFile(path).read().to_pydict()  # not read_table: it imports pandas (0.4 s)
            except (OSError, pa.ArrowException):
                cols = {}  # a damaged memo is only a lost shortcut
            for i in range(len(cols.get("path", []))):
                entries[(cols["path"][i], cols["size"][i], cols["mtime_ns"][i], cols["prep"][i])] = (
                    cols["sha256"][i], cols["mime"][i], cols["width"][i], cols["height"][i],
                )
        return cls(store, prep_params, entries)

    def _stat_key(self, path: Path | str) -> tuple | None:
        # os.path on strings, not pathlib: this runs once per image on every (cached) run
        path = os.fspath(path)
        if not _plain_absolute(path):
            path = os.path.abspath(path)
        try:
            st = os.stat(path)
        except OSError:
            return None
        return (path, st.st_size, st.st_mtime_ns, self.prep)

    def lookup(self, path: Path | str) -> tuple[str, str, int, int] | None:
        key = self._stat_key(path)
        return self.entries.get(key) if key else None

    def record(self, path: Path | str, sha256: str, mime: str, width: int, height: int) -> None:
        key = self._stat_key(path)
        if key:
            self.entries[key] = (sha256, mime, width, height)
            self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        keys = list(self.entries)
        values = [self.entries[k] for k in keys]
        table = pa.Table.from_pydict(  # (pa.table would import pandas to check its argument)
            {
                "path": [k[0] for k in keys], "size": [k[1] for k in keys],
                "mtime_ns": [k[2] for k in keys], "prep": [k[3] for k in keys],
                "sha256": [v[0] for v in values], "mime": [v[1] for v in values],
                "width": [v[2] for v in values], "height": [v[3] for v in values],
            },
            schema=MEMO_SCHEMA,
        )
        buffer = io.BytesIO()
        pq.write_table(table, buffer, compression="zstd")
        self.store.local_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.store.local_dir / MEMO_NAME, buffer.getvalue())
        self.dirty = False
