"""Exports (pure; no Streamlit): tables as CSV, LaTeX and Markdown; figures as PNG/SVG via kaleido.

Static figure export needs a Chromium that kaleido can drive. Without one, kaleido tries to download
a browser and fails (or hangs offline), so we look for Chromium first and raise
:class:`StaticExportUnavailable` with a message a person can act on.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from cache.redact import scrub_secrets
from cache.textsafe import csv_cell, md_escape

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = ("PNG/SVG export needs Chromium for kaleido: install Debian's `chromium` "
                "(apt-get install -y chromium) or set BROWSER_PATH to a Chrome/Chromium binary.")
_KALEIDO_LOCK = threading.Lock()


class StaticExportUnavailable(RuntimeError):
    """No Chromium for kaleido: static (PNG/SVG) figure export is not possible here."""


def chromium_path() -> str | None:
    """The browser kaleido will use: $BROWSER_PATH if executable, else the first Chromium on PATH."""
    override = os.environ.get("BROWSER_PATH")
    if override:
        return override if os.access(override, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def figure_bytes(fig: go.Figure, fmt: str = "png", *, width: int = 1000, height: int = 600,
                 scale: float = 2.0) -> bytes:
    """The figure as PNG or SVG bytes, rendered by one shared kaleido server (started on first use).

    Raises StaticExportUnavailable when no Chromium is present (checked before kaleido starts, so an
    offline machine never hangs on a browser download).
    """
    if fmt not in ("png", "svg"):
        raise ValueError(f"unsupported figure format {fmt!r} (png or svg)")
    if chromium_path() is None:
        raise StaticExportUnavailable(INSTALL_HINT)
    import kaleido  # imported late: only needed when someone exports

    with _KALEIDO_LOCK, warnings.catch_warnings():  # one request/reply queue pair: one caller at a time
        # plotly passes its bundled plotly.js path, which a running server already has
        warnings.filterwarnings("ignore", message="The kopts argument is ignored")
        kaleido.start_sync_server(silence_warnings=True)
        return fig.to_image(format=fmt, width=width, height=height, scale=scale if fmt == "png" else 1)


def to_csv(df: pd.DataFrame) -> bytes:
    """UTF-8 CSV without the index, safe to open in a spreadsheet: text cells starting with = + - @
    tab or CR get a leading quote (cache.textsafe.csv_cell, as OWASP recommends); numeric columns
    and plain numbers are left alone, so a negative number stays a number. A CR inside a text cell
    becomes a newline (pandas quotes newlines, not a lone CR). Secrets are scrubbed."""

    def text(value: Any) -> Any:
        if not isinstance(value, str):
            return value
        return csv_cell(scrub_secrets(value)).replace("\r\n", "\n").replace("\r", "\n")

    safe = df.rename(columns=lambda c: text(str(c)))
    for column in safe.columns:
        if safe[column].dtype == object or pd.api.types.is_string_dtype(safe[column]):
            safe[column] = safe[column].map(text)
    return safe.to_csv(index=False).encode("utf-8")


def _cell(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#",
                  "_": r"\_", "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, *, caption: str = "", label: str = "", digits: int = 3) -> str:
    """A booktabs ``table`` environment; text columns left-aligned, numbers right-aligned."""
    align = "".join("r" if _numeric(df[c]) else "l" for c in df.columns)
    lines = [r"\begin{table}[t]", r"\centering"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        lines.append(rf"\label{{{label}}}")
    lines += [rf"\begin{{tabular}}{{{align}}}", r"\toprule",
              " & ".join(latex_escape(str(c)) for c in df.columns) + r" \\", r"\midrule"]
    for row in df.itertuples(index=False):
        lines.append(" & ".join(latex_escape(_cell(v, digits)) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


_NUMBER_TEXT = re.compile(r"–|\$?-?\d[\d,]*(\.\d+)?")


def _numeric(column: pd.Series) -> bool:
    """Numbers, or numbers already formatted as text ('0.750', '$0.0120', '–'): right-aligned."""
    if pd.api.types.is_numeric_dtype(column):
        return True
    values = [v for v in column if v is not None]
    return bool(values) and all(isinstance(v, str) and _NUMBER_TEXT.fullmatch(v) for v in values)


def _md_escape(text: str) -> str:
    return md_escape(scrub_secrets(text))


def to_markdown(df: pd.DataFrame, *, digits: int = 3) -> str:
    """A GitHub-flavoured Markdown table whose cells render as text: pipes escaped; a cell with HTML,
    link syntax or a URL becomes a code span (cache.textsafe.md_escape). Secrets are scrubbed."""
    header = "| " + " | ".join(_md_escape(str(c)) for c in df.columns) + " |"
    rule = "| " + " | ".join("---:" if _numeric(df[c]) else "---" for c in df.columns) + " |"
    rows = ["| " + " | ".join(_md_escape(_cell(v, digits)) for v in row) + " |"
            for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def fmt_interval(value: float | None, low: float | None, high: float | None, digits: int = 3) -> str:
    """'0.583 [0.320, 0.807]' (or '–' when undefined)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if low is None or high is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


#: The overview as a paper's table: what the screen shows and what LaTeX / Markdown export (the CSV
#: keeps every field of cache.metrics.group_metrics). Header -> group key it is read from.
PAPER_COLUMNS: Sequence[tuple[str, str]] = (
    ("Model", "model"), ("Modality", "modality"), ("Prompt", "prompt_id"), ("n", "n"), ("Coverage", "coverage"),
    ("Accuracy [95% CI]", "accuracy"), ("Sensitivity", "sensitivity"), ("Specificity", "specificity"),
    ("Abstained", "abstained"), ("Errors", "errors"), ("Cost", "cost_usd"),
)
PAPER_HEADERS = tuple(header for header, _key in PAPER_COLUMNS)
ABSTENTIONS = ("uncertain", "refused", "unparseable")
RATE_HEADERS = ("Coverage", "Sensitivity", "Specificity", "Cost")


def paper_table(groups: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per group with the paper headers: accuracy with its 95% Wilson interval (the one
    interval on screen), abstentions (uncertain + refused + unparseable) summed, cost in USD."""
    rows = []
    for g in groups:
        row = {header: g.get(key) for header, key in PAPER_COLUMNS}
        row["Accuracy [95% CI]"] = fmt_interval(g.get("accuracy"), g.get("accuracy_ci_low"), g.get("accuracy_ci_high"))
        row["Abstained"] = sum(int(g.get(name) or 0) for name in ABSTENTIONS)
        row["Errors"] = int(g.get("errors") or 0)
        rows.append(row)
    df = pd.DataFrame(rows, columns=list(PAPER_HEADERS))
    for header in RATE_HEADERS:  # numbers even when every value is undefined (right-aligned, shown as –)
        df[header] = pd.to_numeric(df[header]).astype("float64")
    return df


def paper_text_table(groups: Sequence[dict[str, Any]], digits: int = 3) -> pd.DataFrame:
    """:func:`paper_table` as it is shown and exported to LaTeX / Markdown: rates to ``digits`` places,
    cost as '$0.1200' (three digits would round it away), undefined values as '–'."""
    df = paper_table(groups)
    for header in RATE_HEADERS:
        pattern = "${:.4f}" if header == "Cost" else f"{{:.{digits}f}}"
        df[header] = ["–" if math.isnan(v) else pattern.format(v) for v in df[header]]
    return df


def safe_filename(*parts: str) -> str:
    """A file name from free text (model names contain ':' and '/')."""
    text = "-".join(p for p in parts if p)
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:120] or "medlens"
