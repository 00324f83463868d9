"""Values from files are untrusted: the checks every path, read and bundle member goes through.

A value read from a store, a bundle or a dataset becomes part of a file path only after it has passed
one of these checks, and every file is opened only if it is a regular file no bigger than a stated cap:

- ``is_sha256`` / ``require_sha256``: an image id is exactly 64 lower-case hex digits (``[0-9a-f]{64}``),
  so ``thumbs/<sha>.jpg`` can never climb out of ``thumbs/``.
- ``is_run_id`` / ``require_run_id``: a run id is a plain file name (letters, digits, ``._:+-``; not
  starting with a dot; at most 128 characters), so ``runs/<run_id>.json`` stays in ``runs/``.
- ``check_member``: a bundle member name is one of the bundle's own layout entries (see
  ``cache.bundle``), with the two checks above for its variable part.
- ``open_regular`` / ``read_capped``: a FIFO, socket, device or folder named like a file is refused
  at once (opened non-blocking, then checked with ``fstat``, so a FIFO cannot make a read wait), and a
  file over its cap is refused from its size before a byte is read.
- ``foreign_parts``: Parquet files under ``responses/`` that are not MedLens parts (missing the key
  columns, or unreadable), so a command can name them instead of failing or counting them.

``cache/`` imports nothing from ``ingest/``; ``ingest/`` uses these checks for datasets too.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

SHA256 = re.compile(r"[0-9a-f]{64}")
RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+-]{0,127}")
#: Top-level files of a bundle; every other member is responses/*.parquet, thumbs/<sha>.jpg or runs/<id>.json.
BUNDLE_FILES = frozenset({"manifest.json", "provenance.json", "README.txt", "demo.json"})
_PART_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}\.parquet")
#: Columns a MedLens part always has (every schema version).
#: table -> columns a part of that table must have to be a MedLens part (cache.schema.TABLES)
TABLE_PART_COLUMNS = {"responses": ("key", "status", "model"), "readings": ("key", "authority", "label"),
                      "grades": ("key", "grader")}
PART_COLUMNS = TABLE_PART_COLUMNS["responses"]
MiB = 1 << 20


class UnsafeValue(ValueError):
    """A value from a file that cannot be used in a path (names the value and what it should be)."""


class UnreadableFile(OSError):
    """A file refused before reading: ``kind`` is "not_a_file" (FIFO, socket, device, folder) or
    "too_large" (over its size cap)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def is_sha256(value: object) -> bool:
    """True for exactly 64 lower-case hex digits."""
    return isinstance(value, str) and SHA256.fullmatch(value) is not None


def require_sha256(value: object, what: str = "image_sha256") -> str:
    if not is_sha256(value):
        raise UnsafeValue(f"{what} {_show(value)} is not a sha256 (64 lower-case hex digits)")
    return value  # type: ignore[return-value]


def is_run_id(value: object) -> bool:
    """True for a run id that is a plain file name (no separator, no leading dot)."""
    return isinstance(value, str) and RUN_ID.fullmatch(value) is not None


def require_run_id(value: object) -> str:
    if not is_run_id(value):
        raise UnsafeValue(f"run id {_show(value)} is not a plain name (letters, digits, ._:+-)")
    return value  # type: ignore[return-value]


def check_member(name: object) -> str:
    """A bundle member name of the bundle layout, else UnsafeValue."""
    if isinstance(name, str):
        if name in BUNDLE_FILES:
            return name
        folder, _, leaf = name.partition("/")
        if folder in TABLE_PART_COLUMNS and _PART_NAME.fullmatch(leaf):
            return name
        if folder == "thumbs" and leaf.endswith(".jpg") and is_sha256(leaf[:-4]):
            return name
        if folder == "runs" and leaf.endswith(".json") and is_run_id(leaf[:-5]):
            return name
    raise UnsafeValue(f"unsafe member name {_show(name)}")


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def open_regular(path: str | os.PathLike[str], max_bytes: int | None = None) -> BinaryIO:
    """Open a regular file for reading, refusing FIFOs, sockets, devices, folders and (when
    ``max_bytes`` is given) files over the cap, without ever blocking on the open.

    Raises FileNotFoundError / PermissionError as ``open`` does, UnreadableFile for the rest.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO with no writer returns at once
    except OSError as exc:
        if exc.errno != errno.ENXIO:  # ENXIO: a socket (or a device with no driver)
            raise
        raise UnreadableFile(
            f"{path}: {file_kind(os.stat(path).st_mode)}, not a regular file", "not_a_file"
        ) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableFile(f"{path}: {file_kind(info.st_mode)}, not a regular file", "not_a_file")
        if max_bytes is not None and info.st_size > max_bytes:
            raise UnreadableFile(
                f"{path}: {info.st_size:,} bytes, more than the limit of {max_bytes:,}", "too_large"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_capped(path: str | os.PathLike[str], max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes`` (checked before and while reading)."""
    with open_regular(path, max_bytes) as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew after the size check
        raise UnreadableFile(f"{path}: more than the limit of {max_bytes:,} bytes", "too_large")
    return data


def file_kind(mode: int) -> str:
    """'a FIFO', 'a socket', 'a device', 'a folder' or 'a special file' for a non-regular mode."""
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):  # fmt: skip
        if test(mode):
            return name
    return "a special file"


def foreign_parts(paths: list[Any], table: str = "responses", open_input: Any = None) -> list[tuple[Any, str]]:
    """(path, reason) for each Parquet file that is not a MedLens part of ``table``: unreadable
    footer, or missing one of its TABLE_PART_COLUMNS. Reads footers only (about 0.2 ms a part).
    ``open_input`` opens each path (an object store's names); default: they are local files."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    found = []
    for path in paths:
        try:
            if open_input is None:
                names = set(pq.read_schema(path).names)
            else:
                with open_input(path) as handle:
                    names = set(pq.read_schema(handle).names)
        except (OSError, pa.ArrowException) as exc:
            found.append((path, f"not a readable Parquet file ({' '.join(str(exc).split())[:120]})"))
            continue
        missing = [c for c in TABLE_PART_COLUMNS[table] if c not in names]
        if missing:
            found.append((path, f"not a MedLens part (no column {', '.join(missing)})"))
    return found


_PARQUET_NAME = re.compile(r"""([^'"\s*\[\],]+\.parquet)""")


def describe_read_failure(exc: BaseException, parts: list[Path]) -> str:
    """One line on why a store could not be read, naming the file when one is to blame: a foreign
    Parquet file among ``parts``, else the part the error message names."""
    foreign = foreign_parts(parts)
    if foreign:
        path, reason = foreign[0]
        return f"{path} is {reason}; move it out of {path.parent}"
    lines = str(exc).strip().splitlines()
    message = " ".join(lines[0].split())[:300] if lines else type(exc).__name__
    named = _PARQUET_NAME.search(message)
    if named:
        return f"{named.group(1)} is damaged or not a MedLens part ({message}); move it out of the store's responses/"
    return message
