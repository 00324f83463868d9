"""Prepared image bytes kept on disk, content-addressed, so each image is prepared once.

Phase 1 of a run prepares every new image to learn its sha256 (the key needs it); the bytes go
here, named by that sha256, and phase 4 reads them back instead of decoding, resizing and encoding
the image again. The folder is ``<store>/prepared/`` (the store owns it) unless
``MEDLENS_PREP_CACHE`` names another (a folder the user owns, shared by several stores); its size is
bounded by ``MEDLENS_PREP_CACHE_MB`` (default 2048): past it, the least recently used files go.
Entries are reused across runs and models. Every read is checked against its name (sha256), so a
damaged entry is prepared again, never sent. A cache that cannot be written (full disk, read-only)
only costs time.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import uuid
from pathlib import Path

from cache.prepared import prepared_folder, prepared_path


def cache_limit_bytes() -> int:
    try:
        return max(1, int(float(os.environ.get("MEDLENS_PREP_CACHE_MB", "2048")) * (1 << 20)))
    except ValueError:
        return 2048 << 20


def cache_folder(store_root: Path) -> Path:
    """The folder of prepared images (the layout is cache.prepared's: readers of the store use it too)."""
    return prepared_folder(store_root)


class PreparedCache:
    """``put(sha, mime, data)`` / ``get(sha) -> (mime, data) | None`` over a bounded folder."""

    def __init__(self, folder: Path, max_bytes: int | None = None):
        self.folder, self.max_bytes = Path(folder), max_bytes or cache_limit_bytes()
        self._size: int | None = None  # bytes in the folder, counted on the first put
        self._lock = threading.Lock()

    def _path(self, sha256: str, mime: str) -> Path:
        return prepared_path(self.folder, sha256, mime)

    def get(self, sha256: str, mime: str) -> bytes | None:
        """The bytes prepared earlier, or None (absent, or damaged: removed)."""
        path = self._path(sha256, mime)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        with contextlib.suppress(OSError):
            os.utime(path)  # recently used: pruned last
        return data

    def put(self, sha256: str, mime: str, data: bytes) -> None:
        """Keep the bytes (atomically; no fsync: a lost entry is only prepared again)."""
        path = self._path(sha256, mime)
        if path.exists():
            return
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        with self._lock:
            if self._size is None:
                self._size = sum(size for _, size, _ in self._entries())
            else:
                self._size += len(data)
            over = self._size > self.max_bytes
        if over:
            self.prune()

    def _entries(self) -> list[tuple[float, int, Path]]:
        out = []
        with contextlib.suppress(OSError):
            for sub in os.scandir(self.folder):
                if not sub.is_dir():
                    continue
                for entry in os.scandir(sub.path):
                    if entry.name.startswith("."):
                        continue
                    with contextlib.suppress(OSError):
                        st = entry.stat()
                        out.append((st.st_mtime, st.st_size, Path(entry.path)))
        return out

    def prune(self) -> int:
        """Remove the least recently used entries down to 90% of the bound; returns bytes freed."""
        entries = sorted(self._entries())
        total = sum(size for _, size, _ in entries)
        freed = 0
        for _, size, path in entries:
            if total - freed <= 0.9 * self.max_bytes:
                break
            with contextlib.suppress(OSError):
                path.unlink()
                freed += size
        with self._lock:
            self._size = total - freed
        return freed
