"""The few storage primitives a MedLens store is built on, behind one small interface.

Everything that writes a store (parts, claims, leases, the journal, compaction) goes through a
``Storage``; nothing else in ``cache/`` calls ``os`` to create, rename or remove store files. A backend
names files by '/'-separated paths relative to the store root (``responses/part-...parquet``) and
provides:

=====================  ==========================================  ===========================================
operation              local filesystem (``LocalStorage``)          S3-compatible object store (``S3Storage``)
=====================  ==========================================  ===========================================
``put_if_absent``      temp file, fsync, ``os.link`` to the name    ``PutObject`` with ``If-None-Match: *``
                       (atomic; EEXIST means someone else won)      (412 Precondition Failed: someone else won)
``put``                temp file, fsync, ``os.replace``             ``PutObject`` of the whole body (one PUT:
                                                                    complete or absent)
``read``               read the file                                ``GetObject`` (NoSuchKey: FileNotFoundError)
``read_capped``        ``cache.untrusted.read_capped`` (regular     ``GetObject``, size checked before the body
                       files only, size checked)
``exists``             ``os.path.exists``                           ``HeadObject``
``open_input``         ``open(path, "rb")``                         ``S3FileSystem.open_input_file`` (ranged GETs)
``delete``             unlink (missing is fine)                     ``DeleteObject``
``list``               ``os.scandir`` of a folder                   ``ListObjectsV2`` with a prefix and ``/``
``entries``            ``os.walk`` + ``stat``: name, size, mtime    ``ListObjectsV2``: key, size, LastModified
``open_log``           one file, ``O_APPEND``, fsync per group,     one object per group (``<name>/<seq>``, put
                       space reserved ahead (posix_fallocate)       if absent), read back in sequence order
``delete_log``         unlink                                       ``DeleteObjects`` of its groups
``local_path``         the file's path (DuckDB reads it)            None (readers use an Arrow dataset)
``arrow_files``        local filesystem, file paths                 ``S3FileSystem``, ``bucket/key`` paths
=====================  ==========================================  ===========================================

``put_if_absent`` is the one primitive the claims, the leases and exactly-once journal folding rely
on: at most one caller ever gets True for a name that exists. Both S3 itself (since 2024) and MinIO
honour ``If-None-Match: *`` on PutObject; ``S3Storage`` refuses a service that ignores it (it checks
once per process with a probe object).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, Protocol

#: bytes, or a function that writes them to a binary file (a large part is streamed, not held)
Data = bytes | Callable[[BinaryIO], None]


def check_name(name: str) -> str:
    """A store-relative name: '/'-separated segments, none empty, '.' or '..', no backslash or NUL."""
    if not name or "\\" in name or "\x00" in name or any(p in ("", ".", "..") for p in name.split("/")):
        raise ValueError(f"unsafe store file name {name!r}")
    return name


def is_disk_full(exc: BaseException) -> bool:
    """True for 'no space left' (ENOSPC) and 'quota exceeded' (EDQUOT)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


class Entry(NamedTuple):
    """One stored file: store-relative name, size in bytes, modification time (ns since the epoch)."""

    name: str
    size: int
    mtime_ns: int


class LogWriter(Protocol):
    """An append-only log (the journal): ``append`` then ``sync`` makes the bytes durable."""

    def append(self, data: bytes) -> None: ...

    def sync(self) -> None: ...

    def close(self, trim: bool = True) -> None: ...


class Storage(Protocol):
    """What a store backend provides (see the module docstring for the local and S3 mappings)."""

    def put_if_absent(self, name: str, data: Data, durable: bool = True, mode: int = 0o644) -> bool: ...

    def put(self, name: str, data: Data, durable: bool = True, mode: int = 0o644) -> None: ...

    def read(self, name: str) -> bytes: ...

    def read_capped(self, name: str, max_bytes: int) -> bytes: ...

    def exists(self, name: str) -> bool: ...

    def open_input(self, name: str) -> BinaryIO: ...

    def delete(self, name: str) -> None: ...

    def list(self, prefix: str, recursive: bool = False) -> list[str]: ...

    def entries(self, prefix: str) -> list[Entry]: ...

    def open_log(self, name: str, reserve: int = 0) -> LogWriter: ...

    def read_log(self, name: str) -> bytes: ...

    def delete_log(self, name: str) -> None: ...

    def local_path(self, name: str) -> Path | None: ...

    def arrow_files(self, names: list[str]) -> tuple[Any, list[str]]: ...


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalLog:
    """A log file opened for appending (mode 0600: it holds answers before they reach a part).

    ``reserve`` bytes are allocated ahead (``posix_fallocate``) so that the answers of the calls in
    flight still fit when the disk fills up: ``ensure(headroom)`` extends the reservation and raises
    OSError(ENOSPC) while there is still ``headroom`` left to write into.
    """

    def __init__(self, path: Path, reserve: int = 0):
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        self.size = os.fstat(self.fd).st_size  # bytes written (the tail past it is reserved zeros)
        self.allocated = self.size
        self.chunk = reserve
        if reserve:
            self.ensure(reserve)

    def ensure(self, headroom: int) -> None:
        """Make sure ``headroom`` bytes past what is written are allocated (may raise ENOSPC)."""
        if self.allocated - self.size >= headroom:
            return
        want = self.size + max(headroom, self.chunk)
        if hasattr(os, "posix_fallocate"):
            os.posix_fallocate(self.fd, self.allocated, want - self.allocated)
        self.allocated = want

    def append(self, data: bytes) -> None:
        # at the logical end, inside the reserved zeros (O_APPEND would write past them)
        try:
            written = os.pwrite(self.fd, data, self.size)
            if written != len(data):
                raise OSError(errno.ENOSPC, "short write to the journal")
        except OSError:
            os.ftruncate(self.fd, max(self.size, self.allocated))  # drop a torn tail, keep the reserve
            raise
        self.size += len(data)
        self.allocated = max(self.allocated, self.size)

    def sync(self) -> None:
        os.fdatasync(self.fd) if hasattr(os, "fdatasync") else os.fsync(self.fd)

    def trim(self) -> None:
        """Give back the reserved space past the written bytes (a full disk needs it elsewhere)."""
        os.ftruncate(self.fd, self.size)
        self.allocated = self.size

    def close(self, trim: bool = True) -> None:
        """Close; ``trim=False`` keeps the reserved space (a full disk must not hand it to parts
        while the answers are still only here)."""
        if self.fd >= 0:
            if trim:
                self.trim()
            os.close(self.fd)
            self.fd = -1


class LocalStorage:
    """A store on a local (or network) filesystem."""

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    local_path = path

    def _temp(self, final: Path, data: Data, durable: bool, mode: int) -> Path:
        tmp = final.with_name(f".{final.name}.{uuid.uuid4().hex[:12]}.tmp")  # outside every glob
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileNotFoundError:  # the folder's first file (no mkdir per write: claims are many)
            final.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            with os.fdopen(fd, "wb") as fh:
                if callable(data):
                    data(fh)
                else:
                    fh.write(data)
                fh.flush()
                if durable:
                    os.fsync(fh.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return tmp

    def put_if_absent(self, name: str, data: Data, durable: bool = True, mode: int = 0o644) -> bool:
        """Create ``name`` with ``data`` unless it exists; True when this call created it.

        The file appears complete or not at all: written under a temporary name, then hard-linked
        (link fails with EEXIST atomically, unlike rename, which would replace)."""
        final = self.path(name)
        tmp = self._temp(final, data, durable, mode)
        try:
            os.link(tmp, final)
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)
        if durable:
            _fsync_dir(final.parent)
        return True

    def put(self, name: str, data: Data, durable: bool = True, mode: int = 0o644) -> None:
        """Write ``name`` atomically (replacing it)."""
        final = self.path(name)
        tmp = self._temp(final, data, durable, mode)
        try:
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if durable:
            _fsync_dir(final.parent)

    def read(self, name: str) -> bytes:
        return self.path(name).read_bytes()

    def read_capped(self, name: str, max_bytes: int) -> bytes:
        """The bytes of a regular file of at most ``max_bytes`` (a FIFO or a huge file is refused)."""
        from cache.untrusted import read_capped

        return read_capped(self.path(name), max_bytes)

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def open_input(self, name: str) -> BinaryIO:
        """A seekable reader (a Parquet footer is read without the whole file)."""
        return open(self.path(name), "rb")

    def delete(self, name: str) -> None:
        path = self.path(name)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except (IsADirectoryError, PermissionError):
            if path.is_dir():
                with contextlib.suppress(OSError):  # not empty: something is still kept there
                    path.rmdir()

    def list(self, prefix: str, recursive: bool = False) -> list[str]:
        """Names under the folder ``prefix`` (not hidden temporaries), sorted; with ``recursive``,
        every file below it (parts may sit in sub-folders), else the entries directly in it."""
        if recursive:
            return sorted(self._walk(prefix))
        folder = self.path(prefix) if prefix else self.root
        try:
            entries = [e.name for e in os.scandir(folder) if not e.name.startswith(".")]
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(f"{prefix}/{e}" if prefix else e for e in entries)

    def entries(self, prefix: str) -> list[Entry]:
        """Every file below ``prefix`` (not hidden) with its size and modification time."""
        out = []
        for name in self._walk(prefix):
            try:
                st = os.stat(self.root / name)
            except FileNotFoundError:  # removed (compaction) while we listed
                continue
            out.append(Entry(name, st.st_size, st.st_mtime_ns))
        return sorted(out)

    def arrow_files(self, names: list[str]) -> tuple[Any, list[str]]:
        from pyarrow import fs

        return fs.LocalFileSystem(), [str(self.path(n)) for n in names]

    def open_log(self, name: str, reserve: int = 0) -> LocalLog:
        path = self.path(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        return LocalLog(path, reserve)

    def read_log(self, name: str) -> bytes:
        return self.read(name)

    def delete_log(self, name: str) -> None:
        self.delete(name)

    def _walk(self, prefix: str) -> Iterator[str]:
        base = self.path(prefix) if prefix else self.root
        for dirpath, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in files:
                if not name.startswith("."):
                    yield name if rel == "." else f"{rel}/{name}"
