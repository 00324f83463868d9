"""The dashboard fails politely: a damaged part, a foreign Parquet file or a damaged bundle shows one line
naming the file on every page, never a traceback (AppTest)."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest

from cache.bundle import export_bundle
from cache.store import Store
from tests.dashboard_fixture import build_fixture_store
from tests.pipeline_helpers import cli

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
PAGES = ("overview", "confusion", "gallery", "compare", "runs", "quality")


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory) -> Path:
    return build_fixture_store(tmp_path_factory.mktemp("hostile") / "store").root


@pytest.fixture
def store(fixture_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(fixture_root, copy)
    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundle-cache"))
    return copy


def _run(monkeypatch: pytest.MonkeyPatch, target: Path, page: str) -> AppTest:
    monkeypatch.setenv("MEDLENS_STORE", str(target))
    at = AppTest.from_file(str(APP), default_timeout=60)
    if page != "overview":
        at.switch_page(f"tabs/{page}.py")
    at.run()
    return at


def _messages(at: AppTest) -> list[str]:
    return [e.value for e in at.error] + [w.value for w in at.warning]


def _assert_polite(at: AppTest, name: str) -> None:
    assert not at.exception, [e.value for e in at.exception][:1]
    named = [m for m in _messages(at) if name in m]
    assert len(named) == 1, _messages(at)
    assert "Traceback" not in named[0] and "\n" not in named[0].strip()


def test_a_damaged_part_is_named_on_every_page(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (store / "responses" / "part-zz-damaged.parquet").write_bytes(b"PAR1" + b"\0" * 64 + b"PAR1")
    for page in PAGES:
        _assert_polite(_run(monkeypatch, store, page), "part-zz-damaged.parquet")


def test_a_foreign_parquet_file_is_named_not_a_traceback(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), store / "responses" / "notes.parquet")
    for page in PAGES:
        at = _run(monkeypatch, store, page)
        _assert_polite(at, "notes.parquet")
    # a foreign file whose column types clash with the store's: the query fails, the page says why
    (store / "responses" / "notes.parquet").unlink()
    pq.write_table(pa.table({"status": [1], "label": [2.5]}), store / "responses" / "clash.parquet")
    for page in ("overview", "runs"):
        _assert_polite(_run(monkeypatch, store, page), "clash.parquet")
    proc = cli("cache", "--store", str(store), "stats", check=False)
    assert "clash.parquet" in proc.stderr and "Traceback" not in proc.stderr


def test_a_damaged_bundle_is_named_on_the_page(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = tmp_path / "results.zip"
    export_bundle(Store(store), bundle)
    raw = bytearray(bundle.read_bytes())  # one byte of the stored Parquet flipped: a CRC error
    with zipfile.ZipFile(bundle) as archive:
        info = archive.getinfo("responses/bundle.parquet")
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + 100] ^= 0xFF
    damaged = tmp_path / "damaged.zip"
    damaged.write_bytes(bytes(raw))
    _assert_polite(_run(monkeypatch, damaged, "overview"), "damaged.zip")
    # a member whose bytes match a re-written manifest but are no Parquet at all
    forged = tmp_path / "forged.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(forged, "w") as dst:
        manifest = json.loads(src.read("manifest.json"))
        junk = b"not parquet" * 10
        for entry in manifest["files"]:
            data = junk if entry["path"] == "responses/bundle.parquet" else src.read(entry["path"])
            entry |= {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
            dst.writestr(entry["path"], data)
        dst.writestr("manifest.json", json.dumps(manifest))
    at = _run(monkeypatch, forged, "gallery")
    _assert_polite(at, "forged.zip")
    assert "bundle.parquet" in _messages(at)[0]
