"""Stores outlive versions: a store and a bundle written by the first release (schema v1), frozen in
tests/data/frozen_v1, read by this version with the same metrics; re-running the same study calls
only what was never answered; the README's schema table says what cache/schema.py declares."""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cache.bundle import open_store
from cache.metrics import group_metrics
from cache.schema import SCHEMA_HISTORY, SCHEMA_VERSION, TABLES
from cache.store import Store
from tests.loopback import OpenAIServer
from tests.pipeline_helpers import ROOT, cli

FROZEN = ROOT / "tests" / "data" / "frozen_v1"
EXPECTED = json.loads((FROZEN / "expected_metrics.json").read_text())


@pytest.fixture
def frozen(tmp_path: Path) -> Path:
    """A copy of the frozen study (images, manifest, answers, store): tests never write the fixture."""
    copy = tmp_path / "frozen"
    shutil.copytree(FROZEN, copy)
    return copy


def _same_metrics(got: list[dict], expected: list[dict]) -> None:
    assert [(g["model"], g["modality"], g["prompt_id"]) for g in got] == \
        [(e["model"], e["modality"], e["prompt_id"]) for e in expected]
    for g, e in zip(got, expected, strict=True):
        for key, value in e.items():
            if isinstance(value, float):
                assert math.isclose(g[key], value, rel_tol=1e-12), (g["model"], key)
            else:
                assert g[key] == value, (g["model"], key)


def test_the_frozen_parts_really_are_schema_v1() -> None:
    part = next((FROZEN / "store" / "responses").glob("*.parquet"))
    table = pq.read_table(part)
    assert set(table.column("schema_version").to_pylist()) == {1}
    assert "task" not in table.column_names and "label_rule" not in table.column_names


def test_a_v1_store_reads_with_the_same_metrics(frozen: Path) -> None:
    con = Store(frozen / "store").connect()
    _same_metrics(group_metrics(con), EXPECTED)
    # columns a v1 part lacks read as NULL, in every table, instead of failing the query
    assert con.execute("SELECT count(*), count(task), count(rating), count(label_rule) FROM responses"
                       ).fetchone() == (30, 0, 0, 0)
    assert con.execute("SELECT count(*) FROM readings").fetchone() == (0,)
    sources = dict(con.execute("SELECT label_source, count(*) FROM results GROUP BY ALL").fetchall())
    assert sources == {"provider": 12, "parser": 17}, "v1 baseline rows are known as the detector's own labels"
    printed = json.loads(cli("cache", "--store", str(frozen / "store"), "metrics", "--json").stdout)
    _same_metrics(printed, EXPECTED)


def test_a_v1_bundle_opens_with_the_same_metrics(frozen: Path, monkeypatch: pytest.MonkeyPatch,
                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundles"))
    store = open_store(frozen / "bundle.zip")
    _same_metrics(group_metrics(store.connect()), EXPECTED)
    target = tmp_path / "merged"
    out = cli("cache", "--store", str(target), "import", str(frozen / "bundle.zip"),
              env={"MEDLENS_BUNDLE_CACHE": str(tmp_path / "bundles")}).stdout
    assert "imported 30 row(s)" in out
    _same_metrics(group_metrics(Store(target).connect()), EXPECTED)


def test_rerunning_the_frozen_study_calls_only_the_open_error(frozen: Path) -> None:
    """Every answered key of the v1 store is recognised by this version's keys: a re-run of the same
    study pays for nothing already answered; only the one call that failed in v1 is tried again."""
    manifest, store = frozen / "manifest.csv", frozen / "store"
    open_errors = Store(store).connect().execute("SELECT image_path FROM failures").fetchall()
    assert open_errors == [("images/fundus/synthetic/img_11.png",)]
    with OpenAIServer(default=("ok", "Synthetic.")) as server:
        env = {"OPENAI_API_KEY": "sk-frozen-test-key-0000000000000000", "OPENAI_BASE_URL": server.base_url}
        out = cli("ingest", "run", "--manifest", str(manifest), "--model", "openai:gpt-4o-mini",
                  "--model", "baseline:forensic", "--store", str(store), "--no-progress", "--concurrency", "1",
                  env=env).stdout
        assert len(server.requests) == 1, out
    assert re.search(r"openai:gpt-4o-mini\s+1\s+1\s+0\s+11\b", out), out  # called 1, ok 1, cached 11
    assert re.search(r"baseline:forensic\s+0\s+0\s+0\s+12\b", out), out
    again = cli("ingest", "import", str(frozen / "answers.csv"), "--manifest", str(manifest),
                "--model", "chatgpt-web", "--store", str(store)).stdout
    assert "imported 0 answer(s)" in again and "6 already present" in again


README_TABLE = re.compile(r"^\| `(?P<name>[a-z_0-9]+)` \| (?P<type>[^|]+) \| (?P<doc>[^|]+) \|$", re.M)


def _readme_tables() -> dict[str, dict[str, str]]:
    """Each '#### <table>' schema table of the README: column -> type text."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    out: dict[str, dict[str, str]] = {}
    for table in TABLES:
        match = re.search(rf"^#### `{table}`\n(?P<body>(?:.*\n)+?)\n(?!\|)", text, re.M)
        assert match, f"README.md has no '#### `{table}`' schema table"
        out[table] = {m["name"]: m["type"].strip() for m in README_TABLE.finditer(match["body"])}
    return out


def test_readme_schema_tables_match_cache_schema() -> None:
    tables = _readme_tables()
    names = {"string": "string", "int32": "int", "int64": "int", "double": "float", "bool": "bool",
             "timestamp[us, tz=UTC]": "timestamp (UTC)"}
    for table, columns in TABLES.items():
        assert list(tables[table]) == list(columns), f"README's {table} columns differ from cache/schema.py"
        for name, (arrow_type, _doc) in columns.items():
            assert tables[table][name] == names[str(arrow_type)], (table, name)
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"schema version {SCHEMA_VERSION}" in text.lower()
    for version in SCHEMA_HISTORY:
        assert re.search(rf"^\| {version} \|", text, re.M), f"README's schema history lacks version {version}"
