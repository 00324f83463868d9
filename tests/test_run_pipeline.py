"""End-to-end pipeline: scan -> run -> store -> metrics, cache hits, dry run, import, bad input."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest

from tests.pipeline_helpers import cli, make_dataset, store_rows, write_image


@pytest.fixture
def dataset(tmp_path: Path) -> tuple[Path, Path]:
    data = make_dataset(tmp_path / "data", per_cell=6)
    manifest = tmp_path / "manifest.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest))
    return manifest, tmp_path / "store"


def test_run_baseline_then_fully_cached(dataset: tuple[Path, Path]) -> None:
    manifest, store = dataset
    first = cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic",
                "--store", str(store), "--no-progress")
    rows = store_rows(store)
    assert len(rows) == 24 and {r["status"] for r in rows} == {"ok"}
    assert {r["label"] for r in rows} <= {"real", "synthetic", "uncertain"}
    assert all(r["interpretation"] for r in rows)
    assert "baseline:forensic" in first.stdout
    # the store has a thumbnail for every image, and a run record with the audit
    assert len(list((store / "thumbs").glob("*.jpg"))) == 24
    run = json.loads(next((store / "runs").glob("*.json")).read_text())
    assert "audit" in run and run["models"]["baseline:forensic"]["ok"] == 24

    again = cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic",
                "--store", str(store), "--no-progress")
    assert len(store_rows(store)) == 24, "a cached re-run must not add rows"
    assert " 24 " in again.stdout.splitlines()[2] or "24" in again.stdout

    metrics = json.loads(cli("cache", "metrics", "--json", "--store", str(store)).stdout)
    assert {(m["model"], m["modality"]) for m in metrics} == {
        ("baseline:forensic", "fundus"), ("baseline:forensic", "chest_xray")}
    for m in metrics:
        assert m["n"] == 12 and m["tp"] + m["fn"] + m["fp"] + m["tn"] == m["answered"]


def test_dry_run_lists_calls_and_writes_nothing(dataset: tuple[Path, Path]) -> None:
    manifest, store = dataset
    out = cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic",
              "--repeats", "2", "--store", str(store), "--dry-run", "--no-progress").stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("baseline:forensic"))
    assert line.split()[1:3] == ["48", "0"]
    assert store_rows(store) == []


def test_limit_and_repeats(dataset: tuple[Path, Path]) -> None:
    manifest, store = dataset
    cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic", "--limit", "20",
        "--repeats", "2", "--store", str(store), "--no-progress")
    rows = store_rows(store)
    assert len(rows) == 40 and sorted({r["repeat"] for r in rows}) == [0, 1]
    assert len({r["key"] for r in rows}) == 40


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def _png_claiming(width: int, height: int) -> bytes:
    """A small file whose header claims width x height pixels (a decompression bomb's shape)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * width) * 4)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def test_bad_input_one_run(tmp_path: Path) -> None:
    """Bad files become error rows naming the file and reason; odd-but-valid ones are answered."""
    import numpy as np
    import pydicom
    from PIL import Image
    from pydicom.dataset import FileMetaDataset

    data = make_dataset(tmp_path / "data", per_cell=5, modalities=("fundus",))
    bad = data / "fundus" / "real"
    (bad / "zero.png").write_bytes(b"")
    good = (data / "fundus" / "real" / "img_0.png").read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    (bad / "text.png").write_text("this is not an image\n")
    (bad / "huge.png").write_bytes(_png_claiming(30000, 30000))
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.PatientName = "Nobody"
    ds.Modality = "OT"
    ds.save_as(bad / "nopixels.dcm", enforce_file_format=True)
    odd = data / "fundus" / "synthetic" / "odd"
    odd.mkdir(parents=True)
    Image.fromarray(np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).save(odd / "grey16.png")
    Image.new("CMYK", (40, 30), (10, 200, 30, 0)).save(odd / "cmyk.jpg", format="JPEG")
    write_image(odd / "png_as.jpg", seed=7)
    Image.new("RGB", (1, 1), (200, 0, 0)).save(odd / "one.png")
    write_image(odd / "fundus ü 1.png", seed=8)
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    info.add_text("Comment", "x" * 1_000_000)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(odd / "bigtext.png", pnginfo=info)

    manifest = tmp_path / "manifest.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest))
    with manifest.open("a") as fh:
        fh.write("fundus/real/missing.png,fundus,real,\n")
    store = tmp_path / "store"
    out = cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic",
              "--store", str(store), "--no-progress")
    rows = store_rows(store)
    errors = {Path(r["image_path"]).name: r for r in rows if r["status"] == "error"}
    assert set(errors) == {"zero.png", "truncated.png", "text.png", "huge.png", "nopixels.dcm", "missing.png"}
    for name, row in errors.items():
        assert name in row["error_message"], row["error_message"]
        assert row["error_type"].startswith("image_")
    assert errors["huge.png"]["error_type"] == "image_too_large"
    assert errors["missing.png"]["error_type"] == "image_missing_file"
    ok = {Path(r["image_path"]).name for r in rows if r["status"] == "ok"}
    assert {"grey16.png", "cmyk.jpg", "png_as.jpg", "one.png", "fundus ü 1.png", "bigtext.png"} <= ok
    assert sum(r["status"] == "ok" for r in rows) == 16  # 10 generated + 6 odd ones
    assert "6 image(s) could not be read" in out.stdout


def test_import_answers_csv_and_jsonl(dataset: tuple[Path, Path], tmp_path: Path) -> None:
    manifest, store = dataset
    lines = manifest.read_text().splitlines()[1:4]
    paths = [ln.split(",")[0] for ln in lines]
    answers = tmp_path / "answers.csv"
    answers.write_text(
        "image_path,response,model_version,created_at\n"
        f'{paths[0]},"Real. The fundus shows a normal optic disc.",gpt-4v-web,2024-05-01T10:00:00Z\n'
        f'{paths[1]},"**Synthetic** — vessel pattern looks generated.",gpt-4v-web,\n'
    )
    out = cli("ingest", "import", str(answers), "--manifest", str(manifest), "--model", "chatgpt-web",
              "--store", str(store))
    assert "imported 2" in out.stdout
    rows = sorted(store_rows(store), key=lambda r: r["image_path"])
    assert [r["label"] for r in rows] == ["real", "synthetic"]
    assert {r["provider"] for r in rows} == {"import"} and rows[0]["model"] == "import:chatgpt-web"
    again = cli("ingest", "import", str(answers), "--manifest", str(manifest), "--model", "chatgpt-web",
                "--store", str(store))
    assert "imported 0" in again.stdout and len(store_rows(store)) == 2

    jsonl = tmp_path / "answers.jsonl"
    jsonl.write_text(json.dumps({"image_path": paths[2], "response": "I cannot determine this."}) + "\n")
    cli("ingest", "import", str(jsonl), "--manifest", str(manifest), "--model", "chatgpt-web",
        "--store", str(store))
    assert sorted(r["label"] for r in store_rows(store)) == ["real", "synthetic", "uncertain"]

    broken = tmp_path / "broken.csv"
    broken.write_text(f"image_path,response\n{paths[0]},ok\nnot/in/manifest.png,Real\n")
    proc = cli("ingest", "import", str(broken), "--manifest", str(manifest), "--model", "x",
               "--store", str(store), check=False)
    assert proc.returncode == 2
    assert "broken.csv, line 3" in proc.stderr and "not/in/manifest.png" in proc.stderr
    assert len(store_rows(store)) == 3, "a bad file writes nothing"


def test_bad_manifest_exits_2(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("image_path,modality,truth,source\na.png,fundus,fake,\n")
    proc = cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic",
               "--store", str(tmp_path / "s"), check=False)
    assert proc.returncode == 2
    assert "m.csv" in proc.stderr and "line 2" in proc.stderr and "truth" in proc.stderr


def test_unknown_model_spec_exits_2(dataset: tuple[Path, Path]) -> None:
    manifest, store = dataset
    proc = cli("ingest", "run", "--manifest", str(manifest), "--model", "claude:opus", "--store",
               str(store), check=False)
    assert proc.returncode == 2 and "openai:<model>" in proc.stderr


def test_missing_key_stops_before_any_call(dataset: tuple[Path, Path]) -> None:
    manifest, store = dataset
    proc = cli("ingest", "run", "--manifest", str(manifest), "--model", "openai:gpt-4o", "--store",
               str(store), check=False, env={"OPENAI_API_KEY": ""})
    assert proc.returncode == 2 and "OPENAI_API_KEY" in proc.stderr
    assert not (store / "responses").exists()


def test_prompts_listing() -> None:
    out = cli("ingest", "prompts").stdout
    assert out.startswith("json ") or "\njson " in out
    assert "paper" in out and len(out.split()[2]) == 64


def test_samples_end_to_end(samples_dir: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "samples.csv"
    scan = cli("ingest", "scan", str(samples_dir), "--out", str(manifest)).stdout
    assert "69 images" in scan and "CONFOUND" in scan.upper()
    store = tmp_path / "store"
    cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic", "--store",
        str(store), "--no-progress")
    metrics = {m["modality"]: m for m in json.loads(cli("cache", "metrics", "--json", "--store", str(store)).stdout)}
    assert metrics["fundus"]["n"] == 36 and metrics["chest_xray"]["n"] == 33
    assert all(0 <= m["accuracy"] <= 1 and m["errors"] == 0 for m in metrics.values())
