"""Bundles are untrusted input: path values, zip bombs, damaged zips, the extraction cache.

Each case is a bundle an adversary could send. The traversal cases plant a JPEG outside the store
and check it is neither embedded (report), written over or next to (import), nor shipped (export).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cache.bundle import BundleError, export_bundle, open_store
from cache.schema import response_key
from cache.store import Store, rows_to_table
from tests.pipeline_helpers import ROOT, cli

GiB = 1 << 30


@pytest.fixture(autouse=True)
def bundle_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundle-cache"))
    return tmp_path / "bundle-cache"


def _jpeg(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 24), colour).save(out, format="JPEG", quality=95)
    return out.getvalue()


def _row(sha: str, run_id: str = "run-1", label: str = "real") -> dict:
    return {"key": response_key(provider="openai", model="openai:m", params={}, prompt_text="p",
                                image_sha256=sha, repeat=0),
            "run_id": run_id, "created_at": datetime(2026, 2, 1, tzinfo=UTC), "provider": "openai",
            "model": "openai:m", "prompt_id": "p", "prompt_text": "p", "image_sha256": sha,
            "prompt_sha256": hashlib.sha256(b"p").hexdigest(),
            "image_path": "fundus/real/x.png", "modality": "fundus", "truth": "real", "source": "S",
            "repeat": 0, "status": "ok", "attempts": 1, "label": label, "raw_text": label}  # fmt: skip


def _parquet(rows: list[dict]) -> bytes:
    out = io.BytesIO()
    pq.write_table(rows_to_table(rows), out)
    return out.getvalue()


def make_bundle(path: Path, files: dict[str, bytes], manifest: dict | None = None) -> Path:
    """A zip with a manifest that lists ``files`` with their true hashes and sizes (unless overridden)."""
    listed = [{"path": n, "sha256": hashlib.sha256(d).hexdigest(), "bytes": len(d)} for n, d in files.items()]
    manifest = {"format": "medlens-bundle", "bundle_version": 1, "files": listed} | (manifest or {})
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def _climb(target: Path) -> str:
    """An image_sha256 value that climbs from any thumbs/ folder to ``target`` (without .jpg)."""
    return "../" * 40 + str(target.with_suffix("")).lstrip("/")


def _one_line_error(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], lines[0]


# -- values used in paths ---------------------------------------------------------------------------
def _evil_files(sha: str) -> dict[str, bytes]:
    """A bundle's files: one row pointing at ``sha``, and one honest thumbnail (so thumbs/ exists and
    a climbing path resolves, as it would in any real bundle)."""
    good = hashlib.sha256(b"good").hexdigest()
    return {
        "responses/bundle.parquet": _parquet([_row(sha), _row(good)]),
        f"thumbs/{good}.jpg": _jpeg((9, 9, 9)),
    }


def test_report_never_embeds_a_file_a_bundle_points_at(tmp_path: Path) -> None:
    secret = tmp_path / "outside" / "private.jpg"
    secret.parent.mkdir()
    secret.write_bytes(_jpeg((250, 0, 250)))
    leaked = base64.b64encode(secret.read_bytes()).decode()[:200]
    bundle = make_bundle(tmp_path / "evil.zip", _evil_files(_climb(secret)))
    proc = cli("cache", "--store", str(bundle), "report", str(tmp_path / "r.html"), check=False)
    assert not (tmp_path / "r.html").exists() or leaked not in (tmp_path / "r.html").read_text()
    _one_line_error(proc, "evil.zip", "image_sha256", "refusing the bundle")
    # a store that already holds such a row (imported by an older MedLens): the report leaves it out
    store = Store(tmp_path / "store")
    store.append([_row(_climb(secret)), _row(hashlib.sha256(b"ok").hexdigest())])
    (store.root / "thumbs").mkdir()
    cli("cache", "--store", str(store.root), "report", str(tmp_path / "r2.html"))
    page = (tmp_path / "r2.html").read_text()
    assert leaked not in page and page.count("no thumbnail") == 2


def test_import_never_writes_outside_the_store(tmp_path: Path) -> None:
    # a folder bundle: <src>/thumbs/../../planted.jpg exists; the target's own thumbs/../../ is outside it
    source = tmp_path / "a" / "src"
    (source / "responses").mkdir(parents=True)
    (source / "thumbs").mkdir()
    (tmp_path / "a" / "planted.jpg").write_bytes(_jpeg((0, 250, 0)))
    (source / "responses" / "part-1.parquet").write_bytes(_parquet([_row("../../planted")]))
    target = tmp_path / "b" / "c" / "store"
    proc = cli("cache", "--store", str(target), "import", str(source), check=False)
    assert not (tmp_path / "b" / "c" / "planted.jpg").exists(), "written outside the store"
    _one_line_error(proc, "image_sha256", "refusing the bundle")
    assert not (target / "responses").exists()
    # the same row in a zip: refused when opened (the extraction's thumbs/../../ is the bundle cache)
    bundle = make_bundle(tmp_path / "evil.zip", _evil_files("../../planted"))
    (tmp_path / "bundle-cache").mkdir()
    (tmp_path / "bundle-cache" / "planted.jpg").write_bytes(_jpeg((0, 250, 0)))
    proc = cli("cache", "--store", str(target), "import", str(bundle), check=False)
    assert not (tmp_path / "b" / "c" / "planted.jpg").exists(), "written outside the store"
    _one_line_error(proc, "image_sha256")
    assert not (target / "responses").exists()


def test_run_ids_and_member_names_cannot_climb(tmp_path: Path) -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    bundle = make_bundle(
        tmp_path / "runs.zip", {"responses/bundle.parquet": _parquet([_row(sha, run_id="../../x")])}
    )
    _one_line_error(cli("cache", "--store", str(bundle), "stats", check=False), "run_id")
    runs = make_bundle(
        tmp_path / "runs2.zip",
        {"responses/bundle.parquet": _parquet([_row(sha)]), "runs/../../../../escaped.json": b"{}"},
    )
    _one_line_error(
        cli("cache", "--store", str(tmp_path / "t"), "import", str(runs), check=False), "unsafe member"
    )
    assert not list(tmp_path.rglob("escaped.json"))
    for name in (
        "runs/../../x.json",
        "thumbs/not-a-sha.jpg",
        "responses/../x.parquet",
        "other.bin",
        "/abs.txt",
    ):
        bad = make_bundle(tmp_path / "member.zip", {name: b"{}"})
        with pytest.raises(BundleError, match="unsafe member name"):
            open_store(bad)


def test_export_never_ships_a_file_a_row_points_at(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    secret = tmp_path / "private.jpg"  # thumbs/../../private.jpg from the store
    secret.write_bytes(_jpeg((0, 0, 250)))
    good = hashlib.sha256(b"good").hexdigest()
    store.append([_row("../../private", run_id="../../notes"), _row(good)])
    (store.root / "thumbs").mkdir()
    (store.root / "runs").mkdir()
    (store.root / "thumbs" / f"{good}.jpg").write_bytes(_jpeg((10, 10, 10)))
    (tmp_path / "notes.json").write_text('{"private": "never shipped"}')
    cli("cache", "--store", str(store.root), "export", str(tmp_path / "out.zip"))
    with zipfile.ZipFile(tmp_path / "out.zip") as archive:
        names = archive.namelist()
        content = b"".join(archive.read(n) for n in names)
        table = pq.read_table(io.BytesIO(archive.read("responses/bundle.parquet")))
    assert sorted(n for n in names if n.startswith(("thumbs/", "runs/"))) == [f"thumbs/{good}.jpg"]
    assert secret.read_bytes() not in content and b"never shipped" not in content
    assert sorted(map(str, table.column("image_sha256").to_pylist())) == sorted([good, "None"])
    assert set(table.column("run_id").to_pylist()) == {"run-1", None}
    cli(
        "cache", "--store", str(tmp_path / "again"), "import", str(tmp_path / "out.zip")
    )  # the receiver accepts it


# -- sizes, damage -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bomb(tmp_path_factory) -> Path:
    """A ~2.1 MB zip whose member inflates to 2 GiB (zeros, deflate level 9), with an honest manifest."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.zip"
    block, digest = bytes(1 << 20), hashlib.sha256()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        with archive.open("responses/bundle.parquet", "w", force_zip64=True) as member:
            for _ in range(2048):
                member.write(block)
                digest.update(block)
        entry = {"path": "responses/bundle.parquet", "sha256": digest.hexdigest(), "bytes": 2 * GiB}
        archive.writestr(
            "manifest.json", json.dumps({"format": "medlens-bundle", "bundle_version": 1, "files": [entry]})
        )
    return path


def _peak_rss_mb(*args: str) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run `python -m <args>` in a child of a fresh Python; (process, peak RSS MB, seconds)."""
    code = ("import resource, subprocess, sys, time; t = time.monotonic(); "
            "p = subprocess.run([sys.executable, '-m', *sys.argv[1:]], capture_output=True, text=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.monotonic() - t); "
            "print(p.returncode); sys.stderr.write(p.stderr)")  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    peak_kb, seconds = proc.stdout.split()[:2]
    child = subprocess.CompletedProcess(args, int(proc.stdout.split()[2]), "", proc.stderr)
    return child, int(peak_kb) / 1024, float(seconds)


def test_a_zip_bomb_fails_fast_with_bounded_memory(bomb: Path, tmp_path: Path) -> None:
    assert 1.5e6 < bomb.stat().st_size < 2.5e6
    for command in (
        ("cache", "--store", str(tmp_path / "t"), "import", str(bomb)),
        ("cache", "--store", str(bomb), "stats"),
    ):
        proc, peak_mb, seconds = _peak_rss_mb(*command)
        print(f"{command[-1]}: peak RSS {peak_mb:.0f} MB, {seconds:.1f} s")
        assert peak_mb < 500 and seconds < 30, (peak_mb, seconds)
        _one_line_error(proc, "bomb.zip", "responses/bundle.parquet")
    assert not (tmp_path / "t" / "responses").exists()


def test_a_member_larger_than_declared_is_stopped_while_streaming(tmp_path: Path, monkeypatch) -> None:
    from cache import extract

    data = bytes(3 << 20)  # 3 MiB of zeros: 1000:1, so the ratio check would also refuse it
    bundle = make_bundle(tmp_path / "b.zip", {"responses/bundle.parquet": data})
    with pytest.raises(BundleError, match="zip bomb"):
        open_store(bundle)
    monkeypatch.setattr(extract, "MAX_RATIO", 10**6)
    with pytest.raises(BundleError, match="not a MedLens part|not a readable Parquet"):
        open_store(bundle)  # within every cap: extracted (streamed), then refused as no Parquet
    monkeypatch.setattr(extract, "MAX_MEMBER_BYTES", extract.MAX_MEMBER_BYTES | {".parquet": 1 << 20})
    with pytest.raises(BundleError, match="more than the limit"):
        open_store(bundle)


def test_damaged_zips_and_malformed_manifests_exit_2_with_one_line(tmp_path: Path) -> None:
    sha = hashlib.sha256(b"ok").hexdigest()
    good = make_bundle(tmp_path / "good.zip", {"responses/bundle.parquet": _parquet([_row(sha)])})
    raw = good.read_bytes()
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(raw[: len(raw) // 2])
    crc = tmp_path / "crc.zip"  # a stored member with one byte flipped: the CRC no longer matches
    with zipfile.ZipFile(crc, "w", zipfile.ZIP_STORED) as archive:
        payload = _parquet([_row(sha)])
        entry = {
            "path": "responses/bundle.parquet",
            "sha256": hashlib.sha256(payload).hexdigest(),
            "bytes": len(payload),
        }
        archive.writestr("manifest.json", json.dumps({"format": "medlens-bundle", "files": [entry]}))
        archive.writestr("responses/bundle.parquet", payload)
    blob = bytearray(crc.read_bytes())
    blob[blob.index(b"PAR1") + 40] ^= 0xFF
    crc.write_bytes(bytes(blob))
    cases = {truncated: "not a zip file", crc: "damaged"}
    for number, manifest in enumerate(
        [
            {"files": [{"path": "responses/bundle.parquet"}]},  # no sha256, no bytes
            {"files": [17]},
            {"files": "everything"},
            {"bundle_version": "one"},
            {"files": [{"path": "responses/bundle.parquet", "sha256": "abc", "bytes": 10}]},
            {"files": [{"path": "responses/bundle.parquet", "sha256": sha, "bytes": -1}]},
        ]
    ):
        cases[make_bundle(tmp_path / f"m{number}.zip", {"responses/bundle.parquet": b"x"}, manifest)] = (
            "manifest"
        )
    big = bytes(3 << 20)  # the zip header says 3 MiB, the manifest 100 bytes
    cases[
        make_bundle(
            tmp_path / "lies.zip",
            {"responses/bundle.parquet": big},
            {
                "files": [
                    {
                        "path": "responses/bundle.parquet",
                        "sha256": hashlib.sha256(big).hexdigest(),
                        "bytes": 100,
                    }
                ]
            },
        )
    ] = "manifest.json says"
    not_json = tmp_path / "notjson.zip"
    with zipfile.ZipFile(not_json, "w") as archive:
        archive.writestr("manifest.json", b"{not json")
    cases[not_json] = "manifest.json"
    for bundle, word in cases.items():
        for args in (
            ("--store", str(bundle), "stats"),
            ("--store", str(tmp_path / "t"), "import", str(bundle)),
        ):
            _one_line_error(cli("cache", *args, check=False), bundle.name, word)


# -- the extraction cache ------------------------------------------------------------------------------
def _small_bundle(tmp_path: Path, seed: int) -> Path:
    sha = hashlib.sha256(str(seed).encode()).hexdigest()
    return make_bundle(tmp_path / f"b{seed}.zip", {"responses/bundle.parquet": _parquet([_row(sha)])})


def test_extraction_cache_is_bounded_and_pruned_oldest_first(
    tmp_path: Path, bundle_cache: Path, monkeypatch
) -> None:
    from cache import extract

    monkeypatch.setattr(extract, "MAX_CACHED_BUNDLES", 3)
    opened, zips = [], [_small_bundle(tmp_path, seed) for seed in range(5)]
    for seed, bundle in enumerate(zips):
        opened.append(open_store(bundle).root)
        os.utime(opened[-1], (time.time() - 100 + seed, time.time() - 100 + seed))  # distinct ages
    kept = sorted(p.name for p in bundle_cache.iterdir())
    assert kept == sorted(p.name for p in opened[2:]), "the two oldest were pruned"
    # the same zip (rebuilding it could change its bytes: zip entries carry a 2-second timestamp)
    open_store(zips[0])  # a pruned bundle opens again (extracted anew)
    assert sorted(p.name for p in bundle_cache.iterdir()) == sorted(p.name for p in (opened[0], *opened[3:]))
    size = sum(f.stat().st_size for f in opened[0].rglob("*") if f.is_file())
    monkeypatch.setattr(extract, "MAX_CACHE_BYTES", int(size * 1.5))
    open_store(_small_bundle(tmp_path, 9))
    assert len(list(bundle_cache.iterdir())) == 1, "the byte bound keeps only the bundle just opened"


def test_an_extracted_bundle_is_checked_again_when_reopened(tmp_path: Path) -> None:
    bundle = _small_bundle(tmp_path, 1)
    root = open_store(bundle).root
    part = root / "responses" / "bundle.parquet"
    original = part.read_bytes()
    part.write_bytes(_parquet([_row(hashlib.sha256(b"forged").hexdigest(), label="synthetic")]))
    (root / "responses" / "planted.parquet").write_bytes(original)
    again = open_store(bundle).root
    assert again == root and part.read_bytes() == original
    assert sorted(p.name for p in (root / "responses").iterdir()) == ["bundle.parquet"]
    assert Store(root).connect().execute("SELECT label FROM responses").fetchall() == [("real",)]


def test_export_of_a_real_store_still_round_trips(tmp_path: Path) -> None:
    from tests.dashboard_fixture import build_fixture_store

    build_fixture_store(tmp_path / "fx")
    manifest = export_bundle(Store(tmp_path / "fx"), tmp_path / "fx.zip")
    root = open_store(tmp_path / "fx.zip").root
    assert len(manifest["files"]) == sum(1 for f in root.rglob("*") if f.is_file()) - 1
