"""What must not leave the machine: secrets (everywhere), and on export absolute paths and image metadata.

One scrubber for the whole project (``ingest`` uses it for provider errors, ``cache.store`` for every
row before it is written, the CLIs for everything they print, exports and reports for what they ship):

- ``scrub_secrets``: values of environment variables named like keys (``*_API_KEY``, ``*_TOKEN``,
  ``*_SECRET``, ``*PASSWORD``, e.g. ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, and names
  registered with ``register_key_env``; values registered with ``register_secret``), the password of any
  ``*_URL`` environment variable (with its ``user:password`` and Basic-auth forms), and any
  16-character fragment of those values become ``[redacted]``; so do key-shaped tokens (``sk-...``,
  ``AIza...``, GitHub / Slack / Hugging Face tokens), ``Bearer`` and ``Basic`` credentials (all of
  them), ``Authorization:`` / ``api-key=`` style fields, ``?key=`` query values, and URL userinfo
  (``http://user:pw@host/v1`` -> ``http://[redacted]@host/v1``).
- ``scrub_text``: ``scrub_secrets``, then absolute local paths in free text keep their last component
  (for what leaves the machine: exports, reports; the store keeps its own paths).
- ``safe_image_path``: a relative path stays; an absolute, home-relative or ``..``-climbing one keeps
  only its file name (it would reveal folder and user names, and means nothing elsewhere).
- ``scrub_secrets_table`` / ``scrub_table``: the same over Arrow string columns, with a cheap RE2
  prefilter so only rows that could hold a secret go through Python (store appends stay ~0.01 ms a row).
- ``printable``: terminal escape sequences and control characters removed (printed tables, messages).
- ``SafeStream``: a text stream wrapper that applies ``scrub_secrets`` and ``printable`` to every line.
- ``clean_jpeg``: a thumbnail with an EXIF/XMP/ICC/comment segment is re-encoded from its pixels.
"""

from __future__ import annotations

import base64
import functools
import io
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import pyarrow as pa

REDACTED = "[redacted]"
#: Env vars whose values are keys whatever their name; any other env var named like _SECRET_ENV too.
KEY_ENVS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "MEDLENS_COMPAT_API_KEY")
HASH_COLUMNS = frozenset({"key", "prompt_sha256", "image_sha256", "created_at", "target_key", "raw_sha256"})
FRAGMENT = 16  # a secret's run of this many characters anywhere in a text is cut out
_MIN_SECRET = 6  # a shorter value would shred ordinary words
_SECRET_ENV = re.compile(r"(API_KEY|_KEY|_TOKEN|_SECRET|PASSWORD|_PASS|_PASSWD|_PWD|_CREDENTIALS?)$", re.I)
_URL_ENV = re.compile(r"(_URL|_URI|_ENDPOINT|_PROXY)$", re.I)
_EXTRA_KEY_ENVS: set[str] = set()
_EXTRA_SECRETS: set[str] = set()  # secret values read from elsewhere than the environment


def _keep_prefix(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED


def _userinfo(match: re.Match[str]) -> str:
    return match.group(1) + REDACTED + "@"


def _basic(match: re.Match[str]) -> str:
    """A Basic credential is base64 of 'user:password': redacted whole; 'Basic anatomy' is prose."""
    try:
        decoded = base64.b64decode(match.group(2) + "=" * (-len(match.group(2)) % 4), validate=True)
    except ValueError:
        return match.group(0)
    return match.group(1) + REDACTED if b":" in decoded else match.group(0)


#: (pattern, substrings of the lower-cased text without which it cannot match, replacement). The
#: substrings are a prefilter: Python's re has none for patterns opening with a look-behind (~40x).
_KEY_PATTERNS: tuple[tuple[re.Pattern[str], tuple[str, ...], Any], ...] = (
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{16,}"), ("sk-",), REDACTED),  # OpenAI and compatible
    (re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{20,}"), ("aiza",), REDACTED),  # Google
    (
        re.compile(r"(?<![A-Za-z0-9])(?:ghp|gho|ghs|github_pat|xox[abp]|hf)_[A-Za-z0-9_\-]{16,}"),
        ("ghp_", "gho_", "ghs_", "github_pat_", "xox", "hf_"),
        REDACTED,
    ),
    # URL userinfo: everything between '://' and '@' in the authority (no '/' in between)
    (re.compile(r"(?i)(\b[a-z][a-z0-9+.\-]*://)[^\s/@'\"<>\\]+@"), ("://",), _userinfo),
    (re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=\-]{6,}"), ("bearer",), _keep_prefix),
    (re.compile(r"(?i)(\bbasic\s+)([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])"), ("basic",), _basic),
    (
        re.compile(r"(?i)([?&](?:key|api_key|apikey|token|access_token|password)=)[^&\s'\"]+"),
        ("=",),
        _keep_prefix,
    ),
    (
        re.compile(
            r"(?i)((?:x-goog-api-key|api[_-]?key|authorization|proxy-authorization|access[_-]?token|secret|"
            r"password)['\"]?\s*[:=]\s*['\"]?)(?:(?:bearer|basic|digest|token)\s+)?[^\s'\",}]+"
        ),
        ("api", "authorization", "access", "secret", "password"),
        _keep_prefix,
    ),
)
# An absolute path in free text: not preceded by a word, ':' or '/', so URLs and relative paths stay.
_ABS_PATH = re.compile(r"(?<![\w:/.~\\-])(?:~|[A-Za-z]:)?(?:[/\\][^\s/\\'\":,;()<>\[\]{}|]+){2,}")
#: RE2 prefilter: a text without any of these cannot hold a key shape (secret values are added per call)
_SHAPES = (
    r"(?i:sk-|aiza|bearer|basic|key|token|authori|access|secret|passw|_pat_|gh[pos]_|xox|hf_|://[^/\s]*@)"
)
_PATHS = r"[/\\~]"


def register_key_env(name: str) -> None:
    """Scrub the value of env var ``name`` too (a key env chosen by the user, e.g. for compat)."""
    _EXTRA_KEY_ENVS.add(name)


def register_secret(value: str) -> None:
    """Scrub ``value`` too: a secret this process read from a file (e.g. an AWS credentials file)."""
    if value:
        _EXTRA_SECRETS.add(value)


def secret_values() -> tuple[str, ...]:
    """Every secret value known from the environment, longest first."""
    # the raw mapping is a cheap cache key (no decoding); the environment can change at any time
    raw = getattr(os.environ, "_data", None)
    snapshot = tuple(raw.items()) if isinstance(raw, dict) else tuple(os.environ.items())
    return _secret_values(snapshot, frozenset(_EXTRA_KEY_ENVS), frozenset(_EXTRA_SECRETS))


@functools.lru_cache(maxsize=8)
def _secret_values(
    snapshot: tuple[tuple[Any, Any], ...], extra: frozenset[str], values: frozenset[str] = frozenset()
) -> tuple[str, ...]:
    found: set[str] = set(values)
    for name, value in os.environ.items():
        if name in KEY_ENVS or name in extra or _SECRET_ENV.search(name):
            found.add(value)
        elif _URL_ENV.search(name) and "@" in value:
            found.update(_userinfo_secrets(value))
    return tuple(sorted((v for v in found if len(v) >= _MIN_SECRET), key=len, reverse=True))


def _userinfo_secrets(url: str) -> set[str]:
    """The password of a URL's userinfo, as written, decoded, and as a Basic credential."""
    try:
        parts = urlsplit(url)
        user, password = parts.username or "", parts.password or ""
    except ValueError:
        return set()
    if not password:
        return set()
    plain = f"{unquote(user)}:{unquote(password)}"
    return {
        password,
        unquote(password),
        f"{user}:{password}",
        plain,
        base64.b64encode(plain.encode()).decode(),
    }


@functools.lru_cache(maxsize=8)
def _anchors(values: tuple[str, ...]) -> tuple[str, ...]:
    """Aligned 8-character pieces of each long value: any 16-character fragment contains one."""
    pieces = {
        v[i : i + FRAGMENT // 2]
        for v in values
        if len(v) >= FRAGMENT
        for i in range(0, len(v) - FRAGMENT // 2 + 1, FRAGMENT // 2)
    }
    return tuple(sorted(pieces))


def scrub_secrets(text: str, values: tuple[str, ...] | None = None) -> str:
    """Secrets in ``text`` become [redacted] (see the module notes); everything else is kept.

    ``values``: the secret values (``secret_values()`` unless given, for a caller scrubbing many texts)."""
    values = secret_values() if values is None else values
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    if any(piece in text for piece in _anchors(values)):
        for value in values:
            text = _cut_fragments(text, value)
    low = text.lower()
    for pattern, triggers, replacement in _KEY_PATTERNS:
        if any(trigger in low for trigger in triggers):
            text = pattern.sub(replacement, text)
    return text


def _cut_fragments(text: str, secret: str) -> str:
    """Replace every run of at least FRAGMENT characters of ``secret`` found in ``text``."""
    if len(secret) < FRAGMENT:
        return text
    for offset in range(len(secret) - FRAGMENT + 1):
        window = secret[offset : offset + FRAGMENT]
        start = text.find(window)
        while start >= 0:
            end, tail = start + FRAGMENT, offset + FRAGMENT
            while end < len(text) and tail < len(secret) and text[end] == secret[tail]:
                end, tail = end + 1, tail + 1
            head = offset
            while start > 0 and head > 0 and text[start - 1] == secret[head - 1]:
                start, head = start - 1, head - 1
            text = text[:start] + REDACTED + text[end:]
            start = text.find(window, start + len(REDACTED))
    return text


def _local_prefixes() -> list[str]:
    prefixes = {str(Path.home()), os.getcwd(), tempfile.gettempdir()}
    return sorted((p.rstrip("/\\") for p in prefixes if len(p) > 1), key=len, reverse=True)


def scrub_text(text: str, values: tuple[str, ...] | None = None) -> str:
    """For text that leaves the machine: secrets out, absolute local paths reduced to their last part."""
    text = scrub_secrets(text, values)
    for prefix in _local_prefixes():  # handles folders with spaces, which the pattern cannot
        text = re.sub(re.escape(prefix) + r"[/\\]", "", text)
    return _ABS_PATH.sub(lambda m: re.split(r"[/\\]", m.group(0))[-1], text)


def safe_image_path(path: str | None) -> str | None:
    """A relative path as is; an absolute, home-relative or '..'-climbing path: its file name only."""
    if path is None:
        return None
    pure = PurePosixPath(path.replace("\\", "/"))
    if path.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", path) or ".." in pure.parts:
        return scrub_secrets(pure.name)
    return scrub_secrets(path)


def scrub_json(value: Any, scrub: Callable[[str], str] = scrub_text) -> Any:
    """``scrub`` (scrub_text unless given) applied to every string (and key) of a JSON-like value."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {scrub(str(k)): scrub_json(v, scrub) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub_json(v, scrub) for v in value]
    return value


def _re2_literal(text: str) -> str:
    return "".join(ch if ch.isalnum() and ch.isascii() else f"\\x{{{ord(ch):x}}}" for ch in text)


@functools.lru_cache(maxsize=8)
def _prefilter(values: tuple[str, ...], paths: bool) -> str:
    literals = [_re2_literal(v) for v in values if len(v) < FRAGMENT] + [
        _re2_literal(p) for p in _anchors(values)
    ]
    return "|".join([_SHAPES, *([_PATHS] if paths else []), *literals])


def _text_columns(table: pa.Table | pa.Schema, skip: frozenset[str]) -> list[str]:
    schema = table if isinstance(table, pa.Schema) else table.schema
    return [
        f.name
        for f in schema
        if f.name not in skip and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
    ]


def _scrub_columns(table: pa.Table, fn: Callable[[str], str], pattern: str, skip: frozenset[str]) -> pa.Table:
    """``fn`` applied to the text cells that the RE2 ``pattern`` matches.

    One regex pass over each row's text columns joined (one compile, one scan) finds the candidate
    rows; only their cells are looked at again. The store's append benchmark pays this on every row."""
    names = _text_columns(table, skip)
    if not names or table.num_rows == 0:
        return table
    if table.num_rows <= SMALL_TABLE:
        return _scrub_small(table, fn, names)
    import pyarrow.compute as pc  # here: 0.1 s to import, and a cached re-run scrubs no table

    joined = pc.binary_join_element_wise(*[pc.fill_null(table.column(n), "") for n in names], "\n")
    rows = pc.indices_nonzero(pc.fill_null(pc.match_substring_regex(joined, pattern), False))
    if len(rows) == 0:
        return table
    for name in names:
        subset = pc.take(table.column(name), rows)
        hits = pc.fill_null(pc.match_substring_regex(subset, pattern), False)
        where, values = pc.filter(rows, hits).to_pylist(), pc.filter(subset, hits).to_pylist()
        fixed = [fn(v) for v in values]
        if fixed != values:
            cells = table.column(name).to_pylist()
            for index, value in zip(where, fixed, strict=True):
                cells[index] = value
            field = table.schema.field(name)
            table = table.set_column(table.column_names.index(name), field, pa.array(cells, field.type))
    return table


#: up to this many rows (a journal group: often one row), cells are scrubbed in Python, each one:
#: the vectorised pass costs ~70 compute calls per candidate row (2.7 ms for one row, measured),
#: since nearly every row is a candidate ("max_tokens" in params_json matches "token")
SMALL_TABLE = 64


def _scrub_small(table: pa.Table, fn: Callable[[str], str], names: list[str]) -> pa.Table:
    """``fn`` applied to every text cell of ``names`` (no prefilter: ``fn`` leaves a cell without a
    secret unchanged, so this scrubs exactly what the vectorised pass does, or more)."""
    for name in names:
        cells = table.column(name).to_pylist()
        fixed = [fn(v) if v else v for v in cells]
        if fixed != cells:
            field = table.schema.field(name)
            table = table.set_column(table.column_names.index(name), field, pa.array(fixed, field.type))
    return table


@functools.lru_cache(maxsize=1024)
def _scrub_cell(text: str, values: tuple[str, ...]) -> str:
    return scrub_secrets(text, values)


def scrub_secrets_rows(rows: list[dict[str, Any]], schema: pa.Schema) -> list[dict[str, Any]]:
    """``scrub_secrets_table``'s work on rows still in Python (a journal group of a few rows): the
    same cells (text columns but the hashes) scrubbed the same way, without the Arrow round trip.
    Most cells of a run repeat row after row (prompt, model, params), so results are memoised."""
    values = secret_values()
    names = _text_columns(schema, HASH_COLUMNS)
    out = []
    for row in rows:
        fixed = None
        for name in names:
            text = row.get(name)
            if not text or not isinstance(text, str):
                continue
            clean = _scrub_cell(text, values) if len(text) <= 8192 else scrub_secrets(text, values)
            if clean != text:
                fixed = fixed or dict(row)
                fixed[name] = clean
        out.append(fixed or row)
    return out


def scrub_secrets_table(table: pa.Table) -> pa.Table:
    """The table with scrub_secrets applied to every text column but the hashes (store writes)."""
    values = secret_values()
    return _scrub_columns(
        table, functools.partial(scrub_secrets, values=values), _prefilter(values, False), HASH_COLUMNS
    )


def scrub_table(table: pa.Table) -> pa.Table:
    """The table with image_path made safe and every other text column scrubbed (exports)."""
    if "image_path" in table.column_names:
        paths = table.column("image_path").to_pylist()
        index = table.column_names.index("image_path")
        table = table.set_column(
            index,
            table.schema.field("image_path"),
            pa.array([safe_image_path(p) for p in paths], table.schema.field("image_path").type),
        )
    values = secret_values()
    return _scrub_columns(
        table,
        functools.partial(scrub_text, values=values),
        _prefilter(values, True),
        HASH_COLUMNS | {"image_path"},
    )


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
