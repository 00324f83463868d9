"""Opening a bundle .zip: untrusted input, checked before, while and after it is extracted.

- The manifest is read with a size cap and checked field by field (format, version, and for every
  file: a layout name (``cache.untrusted.check_member``), a sha256, a size within its cap).
- Caps are checked on the declared sizes first (manifest and zip header must agree; the total and
  the member count are bounded), so a zip bomb fails before a byte is inflated; members are then
  streamed in 1 MiB blocks, hashed while written, and stopped the moment they outgrow their size.
- A damaged zip, a CRC error, a truncated or encrypted member, a malformed manifest: one
  ``BundleError`` line (exit 2 at the CLI).
- The responses' path-bearing values (image_sha256, run_id) must be valid before the bundle is used.
- Extractions are cached under ``bundle_cache_dir()`` by the zip's sha256, bounded in count and size
  and pruned oldest-first (by last use); a cached extraction is checked again against the zip's
  manifest each time it is reopened (same files, no others, same sizes and hashes), else extracted anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
import zipfile
import zlib
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from cache.location import is_s3
from cache.store import Store
from cache.untrusted import RUN_ID, SHA256, TABLE_PART_COLUMNS, MiB, UnsafeValue, check_member

BUNDLE_FORMAT = "medlens-bundle"
BUNDLE_VERSION = 1
MANIFEST = "manifest.json"
GiB = 1 << 30
MAX_MANIFEST_BYTES = 64 * MiB
#: the largest member of each kind (by name suffix); a 10^6-row part is about 180 MB
MAX_MEMBER_BYTES = {".parquet": 2 * GiB - 1, ".jpg": 16 * MiB, ".json": 64 * MiB, ".txt": 1 * MiB}
MAX_TOTAL_BYTES = 4 * GiB
MAX_MEMBERS = 400_000
#: Parquet and JPEG members are stored, JSON deflates ~10:1; a member over 1 MiB inflating more than
#: this is a bomb (deflate tops out near 1032:1)
MAX_RATIO = 200
#: at most this many extracted bundles, and this many bytes, are kept; the least recently used go first
MAX_CACHED_BUNDLES = 8
MAX_CACHE_BYTES = 8 * GiB
_BLOCK = 1 * MiB
_DAMAGED = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError, ValueError)


class BundleError(ValueError):
    """A bundle that cannot be written, read or trusted (exit code 2); names the file and the fix."""


def bundle_cache_dir() -> Path:
    """Where opened bundles are extracted: $MEDLENS_BUNDLE_CACHE, else ~/.cache/medlens/bundles."""
    if os.environ.get("MEDLENS_BUNDLE_CACHE"):
        return Path(os.environ["MEDLENS_BUNDLE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "medlens" / "bundles"


def open_store(path: str | os.PathLike[str]) -> Store:
    """A Store for a store folder, or for a bundle .zip extracted once (keyed by the zip's sha256).

    A path that is not a zip file is taken as a store folder (which may not exist yet), an
    ``s3://`` location as that S3 store. Raises BundleError for a missing, damaged, oversized or
    tampered .zip.
    """
    if is_s3(path):
        return Store(path)
    path = Path(path)
    if path.is_file() and zipfile.is_zipfile(path):
        digest = _sha256_stream(path.open("rb"))
        fallback = Path(tempfile.gettempdir()) / f"medlens-{os.getuid() if hasattr(os, 'getuid') else 'user'}"
        for base in (bundle_cache_dir(), fallback / "bundles"):
            try:
                base.mkdir(parents=True, exist_ok=True, mode=0o700)
                final = _open_extracted(path, base / digest)
            except PermissionError:
                continue
            prune_cache(base, keep=final)
            return Store(final)
        raise BundleError(f"{path}: no writable folder to extract it into (set MEDLENS_BUNDLE_CACHE)")
    if path.suffix.lower() == ".zip":
        raise BundleError(
            f"{path}: {'not a zip file (damaged or truncated?)' if path.exists() else 'file not found'}"
        )
    return Store(path)


def _sha256_stream(handle: BinaryIO, limit: int | None = None) -> str:
    digest, seen = hashlib.sha256(), 0
    with handle:
        for block in iter(lambda: handle.read(_BLOCK), b""):
            seen += len(block)
            if limit is not None and seen > limit:
                raise BundleError(f"more than {limit:,} bytes")
            digest.update(block)
    return digest.hexdigest()


def _open_extracted(zip_path: Path, final: Path) -> Path:
    try:
        with zipfile.ZipFile(zip_path) as archive:
            manifest_bytes, manifest = read_manifest(zip_path, archive)
            if final.exists():
                if _still_intact(final, manifest_bytes, manifest):
                    os.utime(final)  # last use, for pruning
                    return final
                _remove(final)  # altered since it was extracted: extract again from the zip
            _extract(zip_path, archive, manifest_bytes, manifest, final)
    except _DAMAGED as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"{zip_path}: damaged zip ({' '.join(str(exc).split())[:160]})") from None
    return final


def read_manifest(zip_path: Path, archive: zipfile.ZipFile) -> tuple[bytes, dict[str, Any]]:
    """The manifest's bytes and content, checked for format, version and every file entry."""
    try:
        info = archive.getinfo(MANIFEST)
    except KeyError:
        raise BundleError(f"{zip_path}: no {MANIFEST}; not a MedLens bundle") from None
    data = _read_member(zip_path, archive, info, MAX_MANIFEST_BYTES)
    try:
        manifest = json.loads(data)
    except ValueError:
        raise BundleError(f"{zip_path}: {MANIFEST} is not valid JSON; not a MedLens bundle") from None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT \
            or not isinstance(manifest.get("files"), list):  # fmt: skip
        raise BundleError(f"{zip_path}: {MANIFEST} is not a {BUNDLE_FORMAT} manifest")
    version = manifest.get("bundle_version", 0)
    if not isinstance(version, int) or isinstance(version, bool):
        raise BundleError(f"{zip_path}: {MANIFEST}: bundle_version {version!r} is not a number")
    if version > BUNDLE_VERSION:
        raise BundleError(
            f"{zip_path}: bundle version {version} is newer than this MedLens reads "
            f"({BUNDLE_VERSION}); upgrade MedLens"
        )
    _check_entries(zip_path, archive, manifest["files"])
    return data, manifest


def _check_entries(zip_path: Path, archive: zipfile.ZipFile, files: list[Any]) -> None:
    """Every entry well-formed and within its cap, agreeing with the zip's header: before extracting."""
    if len(files) > MAX_MEMBERS:
        raise BundleError(f"{zip_path}: {MANIFEST} lists {len(files):,} files, more than {MAX_MEMBERS:,}")
    seen: set[str] = set()
    total = 0
    for number, entry in enumerate(files, start=1):
        where = f"{zip_path}: {MANIFEST}, file {number}"
        if not isinstance(entry, dict) or not all(k in entry for k in ("path", "sha256", "bytes")):
            raise BundleError(f"{where}: expected an object with path, sha256 and bytes")
        try:
            name = check_member(entry["path"])
        except UnsafeValue as exc:
            raise BundleError(f"{zip_path}: {exc}; refusing the bundle") from None
        size, sha = entry["bytes"], entry["sha256"]
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleError(f"{where} ({name}): bytes {size!r} is not a size")
        if not isinstance(sha, str) or not SHA256.fullmatch(sha):
            raise BundleError(f"{where} ({name}): sha256 {str(sha)[:80]!r} is not a sha256")
        if name in seen or name == MANIFEST:
            raise BundleError(f"{where}: {name} is listed twice")
        seen.add(name)
        cap = MAX_MEMBER_BYTES[Path(name).suffix]
        try:
            info = archive.getinfo(name)
        except KeyError:
            raise BundleError(f"{zip_path}: {name} is listed in {MANIFEST} but missing") from None
        if size > cap or info.file_size > cap:
            raise BundleError(
                f"{zip_path}: {name} declares {max(size, info.file_size):,} bytes, more than "
                f"the limit of {cap:,} for a {Path(name).suffix} member; refusing the bundle"
            )
        if info.file_size != size:
            raise BundleError(
                f"{zip_path}: {name} is {info.file_size:,} bytes in the zip, {MANIFEST} says "
                f"{size:,}; the bundle is damaged or was altered"
            )
        if info.file_size > MiB and info.file_size > MAX_RATIO * max(info.compress_size, 1):
            raise BundleError(
                f"{zip_path}: {name} inflates {info.file_size / max(info.compress_size, 1):,.0f}:1 "
                f"(more than {MAX_RATIO}:1): a zip bomb, not a MedLens bundle; refusing it"
            )
        total += size
    if total > MAX_TOTAL_BYTES:
        raise BundleError(
            f"{zip_path}: its files add up to {total:,} bytes, more than the limit of "
            f"{MAX_TOTAL_BYTES:,}; refusing the bundle"
        )


def _read_member(zip_path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, cap: int) -> bytes:
    if info.file_size > cap:
        raise BundleError(f"{zip_path}: {info.filename} declares {info.file_size:,} bytes, more than {cap:,}")
    with archive.open(info) as member:
        data = member.read(cap + 1)
    if len(data) > cap:
        raise BundleError(f"{zip_path}: {info.filename} is larger than {cap:,} bytes")
    return data


def _copy_member(zip_path: Path, archive: zipfile.ZipFile, entry: dict[str, Any], target: Path) -> None:
    """Stream one member to ``target``, hashing as it goes; stop as soon as it outgrows its size."""
    name, size = entry["path"], entry["bytes"]
    digest, written = hashlib.sha256(), 0
    target.parent.mkdir(parents=True, exist_ok=True)
    with archive.open(name) as member, open(target, "xb") as out:
        for block in iter(lambda: member.read(_BLOCK), b""):
            written += len(block)
            if written > size:
                raise BundleError(
                    f"{zip_path}: {name} inflates past the {size:,} bytes {MANIFEST} declares; "
                    "the bundle is damaged or was altered"
                )
            digest.update(block)
            out.write(block)
    if written != size or digest.hexdigest() != entry["sha256"]:
        raise BundleError(
            f"{zip_path}: {name} has sha256 {digest.hexdigest()} ({written:,} bytes), {MANIFEST} "
            f"says {entry['sha256']} ({size:,} bytes); the bundle is damaged or was altered"
        )


def _extract(
    zip_path: Path, archive: zipfile.ZipFile, manifest_bytes: bytes, manifest: dict[str, Any], final: Path
) -> None:
    staging = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        staging.mkdir(mode=0o700)
        for entry in manifest["files"]:
            _copy_member(zip_path, archive, entry, staging / entry["path"])
        (staging / MANIFEST).write_bytes(manifest_bytes)
        for table in TABLE_PART_COLUMNS:
            check_part_values(zip_path, sorted((staging / table).glob("*.parquet")), table)
        try:
            os.rename(staging, final)
        except OSError:  # another process extracted the same bundle first
            if not (final / MANIFEST).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_part_values(source: Path, parts: list[Path], table: str = "responses") -> None:
    """Refuse parts that are not MedLens parts of ``table``, or whose image_sha256 / run_id could not
    be file names."""
    for part in parts:
        try:
            schema = pq.read_schema(part)
            missing = [c for c in TABLE_PART_COLUMNS[table] if c not in schema.names]
            if missing:
                raise BundleError(
                    f"{source}: {part.name} is not a MedLens part (no column {', '.join(missing)})"
                )
            columns = [c for c in ("image_sha256", "run_id") if c in schema.names]
            table = pq.read_table(part, columns=columns)
        except (OSError, pa.ArrowException) as exc:
            raise BundleError(
                f"{source}: {part.name} is not a readable Parquet file ({str(exc)[:120]})"
            ) from None
        for column, pattern in (("image_sha256", SHA256), ("run_id", RUN_ID)):
            if column not in table.column_names:
                continue
            values = table.column(column).drop_null()
            bad = pc.invert(pc.match_substring_regex(values, f"^(?:{pattern.pattern})$"))
            if pc.any(bad).as_py():
                example = pc.filter(values, bad)[0].as_py()
                raise BundleError(
                    f"{source}: {part.name}: {pc.sum(bad).as_py()} row(s) hold a {column} that "
                    f"cannot be a file name (e.g. {example[:60]!r}); refusing the bundle"
                )


def _still_intact(final: Path, manifest_bytes: bytes, manifest: dict[str, Any]) -> bool:
    """The extraction holds exactly the manifest's files, unaltered (no symlink, nothing added)."""
    try:
        return _same_files(final, manifest_bytes, manifest)
    except OSError:  # a file vanished or cannot be read: extract again
        return False


def _same_files(final: Path, manifest_bytes: bytes, manifest: dict[str, Any]) -> bool:
    expected = {e["path"]: e for e in manifest["files"]} | {MANIFEST: None}
    found: list[str] = []
    for folder, dirs, files in os.walk(final):
        for name in dirs + files:
            if os.path.islink(os.path.join(folder, name)):
                return False
        found += [Path(folder, n).relative_to(final).as_posix() for n in files]
    if set(found) != set(expected) or (final / MANIFEST).read_bytes() != manifest_bytes:
        return False
    for name, entry in expected.items():
        if entry is None:
            continue
        path = final / name
        if path.stat().st_size != entry["bytes"] or _sha256_stream(path.open("rb")) != entry["sha256"]:
            return False
    return True


def _remove(folder: Path) -> None:
    """Move aside, then delete: a concurrent reader never sees half a folder under the final name."""
    aside = folder.parent / f".{folder.name}.{uuid.uuid4().hex[:8]}.old.tmp"
    try:
        os.rename(folder, aside)
    except FileNotFoundError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def _folder_bytes(folder: Path) -> int:
    return sum(os.lstat(os.path.join(d, f)).st_size for d, _dirs, files in os.walk(folder) for f in files)


def prune_cache(
    base: Path, keep: Path | None = None, max_bundles: int | None = None, max_bytes: int | None = None
) -> list[Path]:
    """Remove the least recently used extractions until at most ``max_bundles`` (MAX_CACHED_BUNDLES)
    and ``max_bytes`` (MAX_CACHE_BYTES) remain; ``keep`` is never removed. Returns what was removed."""
    max_bundles = MAX_CACHED_BUNDLES if max_bundles is None else max_bundles
    max_bytes = MAX_CACHE_BYTES if max_bytes is None else max_bytes
    entries = []
    for child in base.iterdir() if base.is_dir() else []:
        if child.is_dir() and not child.is_symlink() and SHA256.fullmatch(child.name):
            entries.append((child.stat().st_mtime, child, _folder_bytes(child)))
        elif child.name.endswith(".tmp") and time.time() - child.lstat().st_mtime > 3600:
            shutil.rmtree(child, ignore_errors=True)  # left by a killed extraction
    entries.sort()
    count, total = len(entries), sum(size for _t, _p, size in entries)
    removed = []
    for _mtime, path, size in entries:
        if count <= max_bundles and total <= max_bytes:
            break
        if keep is not None and path == keep:
            continue
        _remove(path)
        removed.append(path)
        count, total = count - 1, total - size
    return removed
