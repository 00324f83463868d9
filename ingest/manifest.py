"""The manifest: one CSV row per image with its modality, truth and source.

Layout that `scan_dataset` reads: DATASET_DIR/<modality>/<real|synthetic>/[<source>/]...<image>.
- The truth folder name is matched case-insensitively (`Real/` counts as `real`).
- Hidden files and folders (name starting with ".") are skipped everywhere. Symlinked folders are
  followed (each real folder is read once, so a link loop cannot hang the scan).
- Folders that hold no images (for example LICENSES/) are ignored. An image whose truth cannot be read
  from its place (directly under DATASET_DIR or a modality folder, or inside a folder other than
  real/synthetic) is an error, not a silent skip: leaving images out would bias the study.

`read_manifest` requires the columns image_path, modality and truth; `source` may be absent (empty).
Cells are written spreadsheet-safe (`cache.textsafe.csv_cell`: a text starting with = + - @ gets a
leading quote) and read back exactly (`csv_uncell`: one leading quote is dropped). The manifest is
read only if it is a regular file of at most MANIFEST_MAX_BYTES.
"""

from __future__ import annotations

import csv
import io
import os
import posixpath
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cache.textsafe import csv_cell, csv_uncell
from cache.untrusted import MiB, UnreadableFile, read_capped
from ingest.images import is_dicom

MANIFEST_COLUMNS = ("image_path", "modality", "truth", "source")
REQUIRED_COLUMNS = ("image_path", "modality", "truth")
TRUTH_VALUES = ("real", "synthetic")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom"})
LAYOUT = "DATASET_DIR/<modality>/<real|synthetic>/[<source>/]...<image>"
MANIFEST_MAX_BYTES = 512 * MiB  # about 4 million rows


class ManifestError(Exception):
    """A bad dataset folder or manifest file. `str()` names the file, line, column and the fix."""


@dataclass(frozen=True)
class ManifestRow:
    """One image of the study."""

    image_path: str  # relative to the manifest's folder (forward slashes), or absolute
    modality: str  # e.g. fundus, chest_xray
    truth: str  # real | synthetic
    source: str = ""  # dataset or generator name; may be empty
    extra: dict[str, str] = field(default_factory=dict)  # further manifest columns, kept as metadata
    line: int = 0  # line in the manifest file (header = 1); 0 for rows from a scan
    # Folder a relative image_path is relative to, when known: the scanned folder or the manifest's
    # folder. write_manifest uses it to rewrite paths for a manifest written elsewhere.
    base_dir: Path | None = field(default=None, compare=False, repr=False)

    def resolve(self, manifest_dir: Path) -> Path:
        """The image file: `image_path` taken relative to `manifest_dir` unless it is absolute."""
        path = Path(self.image_path)
        return path if path.is_absolute() else Path(manifest_dir) / path


def is_image_file(path: Path) -> bool:
    """A known image extension (any case), or any other file that carries the DICOM magic."""
    return path.suffix.lower() in IMAGE_EXTENSIONS or is_dicom(path)


def scan_dataset(root: Path) -> list[ManifestRow]:
    """Rows for every image under `root` (see the module notes), sorted by image_path."""
    root = Path(root)
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder; expected the layout {LAYOUT}")
    rows: list[ManifestRow] = []
    for image in _walk_images(root):
        parts = image.relative_to(root).parts
        truth = parts[1].lower() if len(parts) >= 3 else ""
        if truth not in TRUTH_VALUES:
            raise ManifestError(_misplaced_message(root, parts))
        source = parts[2] if len(parts) >= 4 else ""
        rows.append(ManifestRow("/".join(parts), parts[0], truth, source, base_dir=root.absolute()))
    if not rows:
        raise ManifestError(f"{root}: no images found; expected the layout {LAYOUT}")
    return sorted(rows, key=lambda row: row.image_path)


def _walk_images(root: Path) -> Iterable[Path]:
    """Image files under root in sorted order; symlinked folders are followed, each real folder once."""
    visited: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:  # a symlink loop, or a second link to the same folder
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(name for name in dirs if not name.startswith("."))
        for name in sorted(files):
            if not name.startswith(".") and is_image_file(Path(folder, name)):
                yield Path(folder, name)


def _misplaced_message(root: Path, parts: tuple[str, ...]) -> str:
    where = root.joinpath(*parts)
    if len(parts) <= 2:
        return f"{where}: image is not inside a real/ or synthetic/ folder; expected the layout {LAYOUT}"
    return (
        f"{root.joinpath(*parts[:2])}: folder '{parts[1]}' under modality '{parts[0]}' holds images "
        f"but is not a truth folder; rename it to one of: {', '.join(TRUTH_VALUES)} (layout {LAYOUT})"
    )


def write_manifest(rows: Iterable[ManifestRow], path: Path) -> None:
    """Write rows as CSV: the four manifest columns, then extra columns in order of first appearance.

    A relative image_path is taken relative to the row's `base_dir` (the scanned folder, or the folder
    of the manifest it was read from; rows built by hand: the new manifest's folder) and rewritten
    relative to the new manifest's folder; it becomes absolute when the two share nothing but the
    filesystem root or drive. Absolute paths are written unchanged. The file is written under a
    temporary name and renamed into place.
    """
    path = Path(path)
    manifest_dir = path.parent.absolute()
    rows = list(rows)
    extra_columns = list(dict.fromkeys(k for row in rows for k in row.extra if k not in MANIFEST_COLUMNS))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in (*MANIFEST_COLUMNS, *extra_columns)])
    for row in rows:
        image_path = _rebase(row.image_path, row.base_dir or manifest_dir, manifest_dir)
        cells = [image_path, row.modality, row.truth, row.source, *(row.extra.get(k, "") for k in extra_columns)]
        writer.writerow([csv_cell(c) for c in cells])  # a folder named '=HYPERLINK(...)' stays text
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(buffer.getvalue(), encoding="utf-8", newline="")
    os.replace(temporary, path)


def _rebase(image_path: str, base: Path, manifest_dir: Path) -> str:
    if Path(image_path).is_absolute():
        return image_path
    target = os.path.normpath(base / image_path)
    try:
        shared = os.path.commonpath([target, manifest_dir])
    except ValueError:  # Windows: another drive, no relative path exists
        return Path(target).as_posix()
    if shared == Path(target).anchor:  # nothing in common but the root: "../../../x" helps nobody
        return Path(target).as_posix()
    return Path(os.path.relpath(target, manifest_dir)).as_posix()


def read_manifest(path: Path) -> list[ManifestRow]:
    """Read and validate a manifest; the first problem raises ManifestError naming line and column."""
    path = Path(path)
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ManifestError(
            f"{path}: the file is empty; line 1 must be the header {','.join(MANIFEST_COLUMNS)}"
        )
    columns = _check_header(path, [csv_uncell(name) for name in header])
    base_dir = path.parent.absolute()  # once, not per row: 10,000-row manifests must read fast
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    line = reader.line_num + 1
    for record in reader:
        if any(value.strip() for value in record):
            row = _parse_record(path, line, columns, record, base_dir)
            key = posixpath.normpath(row.image_path)
            if key in seen:
                raise ManifestError(
                    f"{_where(path, line, 'image_path')}: {row.image_path!r} is already listed on line "
                    f"{seen[key]}; each image may appear once (remove one of lines {seen[key]} and {line})"
                )
            seen[key] = line
            rows.append(row)
        line = reader.line_num + 1
    if not rows:
        raise ManifestError(f"{path}: the header is there but no image rows follow")
    return rows


def _read_text(path: Path) -> str:
    try:
        data = read_capped(path, MANIFEST_MAX_BYTES)  # a FIFO or a huge file is refused at once
    except FileNotFoundError:
        raise ManifestError(
            f"{path}: file not found; create it with: python -m ingest scan DATASET_DIR --out {path}"
        ) from None
    except UnreadableFile as exc:
        raise ManifestError(f"{exc}; a manifest is a CSV file (python -m ingest scan writes one)") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8 CSV"
        ) from None


def _check_header(path: Path, header: list[str]) -> list[str]:
    columns = [name.strip() for name in header]
    duplicates = sorted(name for name, count in Counter(columns).items() if count > 1)
    if duplicates:
        raise ManifestError(
            f"{path}, line 1: column(s) {', '.join(duplicates)} appear more than once in the header"
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise ManifestError(
            f"{path}, line 1: missing required column(s): {', '.join(missing)}; the header must include "
            f"{', '.join(REQUIRED_COLUMNS)} (and optionally source), found: {', '.join(columns) or 'nothing'}"
        )
    return columns


def _where(path: Path, line: int, column: str) -> str:
    return f"{path}, line {line}, column '{column}'"


def _parse_record(
    path: Path, line: int, columns: list[str], record: list[str], base_dir: Path
) -> ManifestRow:
    if len(record) != len(columns):
        raise ManifestError(
            f"{path}, line {line}: {len(record)} fields but the header has {len(columns)}; "
            "quote values that contain commas"
        )
    values = dict(zip(columns, map(csv_uncell, record), strict=True))
    image_path, modality = values["image_path"].strip(), values["modality"].strip()
    truth = values["truth"].strip().lower()
    if not image_path:
        raise ManifestError(
            f"{_where(path, line, 'image_path')}: empty; give the image's path relative to the manifest's folder, or absolute"
        )
    if not modality:
        raise ManifestError(
            f"{_where(path, line, 'modality')}: empty; give the modality, e.g. fundus or chest_xray"
        )
    if truth not in TRUTH_VALUES:
        raise ManifestError(
            f"{_where(path, line, 'truth')}: {values['truth']!r} is not allowed; use one of: {', '.join(TRUTH_VALUES)}"
        )
    extra = {name: value for name, value in values.items() if name not in MANIFEST_COLUMNS}
    source = values.get("source", "").strip()
    return ManifestRow(image_path, modality, truth, source, extra, line, base_dir)


def count_table(rows: Iterable[ManifestRow]) -> list[tuple[str, str, str, int]]:
    """(modality, truth, source, count) for every combination present, sorted."""
    counts = Counter((row.modality, row.truth, row.source) for row in rows)
    return sorted((*key, count) for key, count in counts.items())
