"""What must not leave the machine in an export: absolute paths, secrets and image metadata.

- ``safe_image_path``: a relative path stays; an absolute, home-relative or ``..``-climbing one keeps
  only its file name (it would reveal folder and user names, and means nothing elsewhere).
- ``scrub_text``: values of environment variables named like keys (``*_API_KEY``, ``*_TOKEN``,
  ``*_SECRET``...) and anything shaped like an API key or an Authorization header become
  ``[redacted]``; absolute paths in free text (messages, run records) keep their last component.
- ``clean_jpeg``: a thumbnail with an EXIF/XMP/ICC/comment segment is re-encoded from its pixels.

``cache/`` imports nothing from ``ingest/``, so these rules are stated here for the store's exports
(the providers scrub their own error messages before they reach the store).
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

REDACTED = "[redacted]"
HASH_COLUMNS = frozenset({"key", "prompt_sha256", "image_sha256", "created_at"})
_SECRET_ENV = re.compile(r"(API_KEY|_KEY|_TOKEN|_SECRET|PASSWORD)$", re.IGNORECASE)
_KEY_PATTERNS = (
    re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{16,}"),  # OpenAI and compatible servers
    re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{20,}"),  # Google
    re.compile(r"(?<![A-Za-z0-9])(?:ghp|gho|ghs|github_pat|xox[abp]|hf)_[A-Za-z0-9_\-]{16,}"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._\-]{6,}"),
    re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token)=)[^&\s'\"]+"),
    re.compile(r"(?i)((?:x-goog-api-key|api[_-]?key|authorization|access[_-]?token|secret)['\"]?\s*[:=]\s*['\"]?)"
               r"[^\s'\",}]+"),
)
# An absolute path in free text: not preceded by a word, ':' or '/', so URLs and relative paths stay.
_ABS_PATH = re.compile(r"(?<![\w:/.~\\-])(?:~|[A-Za-z]:)?(?:[/\\][^\s/\\'\":,;()<>\[\]{}|]+){2,}")
_CANDIDATE = r"(?i)(sk-|aiza|bearer|key|token|authori|secret|/|\\|~|_pat_|xox)"  # cheap RE2 prefilter


def _secret_values() -> list[str]:
    values = {v for n, v in os.environ.items() if _SECRET_ENV.search(n) and len(v) >= 8}
    return sorted(values, key=len, reverse=True)


def _local_prefixes() -> list[str]:
    prefixes = {str(Path.home()), os.getcwd(), tempfile.gettempdir()}
    return sorted((p.rstrip("/\\") for p in prefixes if len(p) > 1), key=len, reverse=True)


def scrub_text(text: str) -> str:
    """Secrets become [redacted]; absolute local paths keep only their last component."""
    for value in _secret_values():
        text = text.replace(value, REDACTED)
    for pattern in _KEY_PATTERNS:
        text = pattern.sub((lambda m: m.group(1) + REDACTED) if pattern.groups else (lambda m: REDACTED), text)
    for prefix in _local_prefixes():  # handles folders with spaces, which the pattern cannot
        text = re.sub(re.escape(prefix) + r"[/\\]", "", text)
    return _ABS_PATH.sub(lambda m: re.split(r"[/\\]", m.group(0))[-1], text)


def safe_image_path(path: str | None) -> str | None:
    """A relative path as is; an absolute, home-relative or '..'-climbing path: its file name only."""
    if path is None:
        return None
    pure = PurePosixPath(path.replace("\\", "/"))
    if path.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", path) or ".." in pure.parts:
        return pure.name
    return path


def scrub_json(value: Any) -> Any:
    """scrub_text applied to every string (and key) of a JSON-like value."""
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub_text(str(k)): scrub_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(v) for v in value]
    return value


def _map_strings(column: pa.ChunkedArray, fn: Callable[[str], str | None], everything: bool) -> pa.Array:
    array = column.combine_chunks()
    mask = pc.is_valid(array) if everything else pc.fill_null(pc.match_substring_regex(array, _CANDIDATE), False)
    for value in _secret_values():
        mask = pc.or_(mask, pc.fill_null(pc.match_substring(array, value), False))
    chosen = pc.filter(array, mask).to_pylist()
    return pc.replace_with_mask(array, mask, pa.array([fn(v) for v in chosen], array.type)) if chosen else array


def scrub_table(table: pa.Table) -> pa.Table:
    """The table with image_path made safe and every other text column scrubbed."""
    for index, name in enumerate(table.column_names):
        kind = table.schema.field(name).type
        if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)) or name in HASH_COLUMNS:
            continue
        if name == "image_path":
            fixed = _map_strings(table.column(name), safe_image_path, everything=True)
        else:
            fixed = _map_strings(table.column(name), scrub_text, everything=False)
        table = table.set_column(index, name, fixed)
    return table


def clean_jpeg(data: bytes) -> bytes:
    """The JPEG unchanged when it has no metadata segment (APP1-15, COM, non-JFIF APP0); else re-encoded."""
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("not a JPEG")
    if not jpeg_metadata_segments(data):
        return data
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    pixels = image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode)
    clean = Image.frombytes(pixels.mode, pixels.size, pixels.tobytes())
    out = io.BytesIO()
    clean.save(out, format="JPEG", quality=85)
    return out.getvalue()


def jpeg_metadata_segments(data: bytes) -> list[str]:
    """Names of the metadata segments before the image data (empty for a clean JPEG)."""
    found, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xDA:  # start of scan: the entropy-coded image follows
            break
        if 0xE1 <= marker <= 0xEF or marker == 0xFE or (marker == 0xE0 and data[i + 4 : i + 9] != b"JFIF\0"):
            found.append("COM" if marker == 0xFE else f"APP{marker - 0xE0}")
        i += 2 + length
    return found
