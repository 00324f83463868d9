"""Text that reaches another program stays text: terminals, spreadsheets and Markdown renderers.

- ``printable``: terminal escape sequences (CSI/OSC/...), other control characters and the Unicode
  bidi overrides are removed, so a folder or model name cannot recolour, retitle or rewrite a terminal.
- ``SafeStream``: wraps ``sys.stdout`` / ``sys.stderr`` of the CLIs; every line goes through
  ``cache.redact.scrub_secrets`` and ``printable`` (``\\r`` kept, for progress bars).
- ``csv_cell`` / ``csv_uncell``: CSV injection, as OWASP recommends
  (https://owasp.org/www-community/attacks/CSV_Injection): a text cell starting with ``=``, ``+``,
  ``-``, ``@``, tab or CR gets a leading single quote, so a spreadsheet shows it as text instead of
  running it. Our choice for numbers: a cell that is a plain decimal number (``-0.25``, ``+3``,
  ``1e-5``) is left alone, and numeric columns are never touched, so a negative number stays a
  number. A cell that already starts with a quote gets one more, so ``csv_uncell`` (used when MedLens
  reads its own CSV back) restores every value exactly.
- ``md_escape``: a Markdown (GFM) table cell that stays text. A cell holding HTML (``<``, ``>``), link
  or image syntax (``](``, ``][``, ``]:``, ``![``) or an autolink trigger (``://``, ``www.``, ``@``) is
  written as a code span, where Markdown renders nothing: no tag, no link, no autolink (entities
  or backslashes would not do: renderers decode them before linking bare URLs). Other cells are
  left readable; pipes and backslashes are escaped in every cell.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from cache.redact import scrub_secrets

# ESC sequences (CSI ... final byte, OSC ... BEL/ST, two-byte escapes), C1 CSI, then lone controls.
_ESCAPES = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|\x9b[0-?]*[ -/]*[@-~]"
)
_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_CONTROLS_TABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
CSV_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_MD_RISKY = re.compile(r"(?i)[<>`]|\]\s*[(\[:]|!\[|://|www\.|@|&#?\w+;")


def printable(text: str, *, keep_newlines: bool = True) -> str:
    """``text`` without escape sequences and control characters (newline, CR and tab kept unless
    ``keep_newlines`` is False, for one-line table cells, where they become a space)."""
    text = _ESCAPES.sub("", text)
    if keep_newlines:
        return _CONTROLS.sub("", text)
    return _CONTROLS_TABLE.sub(lambda m: " " if m.group(0) in "\t\n\r" else "", text)


class SafeStream:
    """A text stream that scrubs secrets and control characters from every line written to it.

    Lines are buffered until a newline or CR (a secret printed in two pieces is still seen whole);
    ``flush`` writes what is pending. Everything else (``fileno``, ``isatty``...) is the wrapped stream's.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        cut = max(self._pending.rfind("\n"), self._pending.rfind("\r"))
        if cut >= 0:
            ready, self._pending = self._pending[: cut + 1], self._pending[cut + 1 :]
            self._stream.write(printable(scrub_secrets(ready)))
        return len(text)

    def flush(self) -> None:
        if self._pending:
            ready, self._pending = self._pending, ""
            self._stream.write(printable(scrub_secrets(ready)))
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def csv_cell(value: Any) -> Any:
    """A text cell made inert for spreadsheets (see the module notes); other values unchanged."""
    if not isinstance(value, str) or not value:
        return value
    if value.startswith("'") or (value.startswith(CSV_TRIGGERS) and not _NUMBER.fullmatch(value)):
        return "'" + value
    return value


def csv_uncell(value: str) -> str:
    """The value ``csv_cell`` was given (for MedLens reading its own CSV back)."""
    return value[1:] if value.startswith("'") else value


def md_escape(text: str) -> str:
    """A GFM table cell that renders as the text itself (see the module notes); one line."""
    text = printable(text, keep_newlines=False)
    if _MD_RISKY.search(text):
        fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
        cell = text.replace("|", "\\|")  # GFM splits a row into cells before it reads code spans
        return f"{fence} {cell} {fence}"
    return text.replace("\\", "\\\\").replace("|", "\\|")


@contextlib.contextmanager
def safe_output() -> Iterator[None]:
    """Within: sys.stdout and sys.stderr are SafeStreams (what a CLI prints is scrubbed and printable)."""
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = SafeStream(saved[0]), SafeStream(saved[1])
    try:
        yield
    finally:
        wrapped, (sys.stdout, sys.stderr) = (sys.stdout, sys.stderr), saved
        for stream in wrapped:
            with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing more to say
                stream.flush()
