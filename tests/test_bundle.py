"""`python -m cache export | import` and `cache.bundle.open_store`: round trip, dedup, what never leaves."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from cache.bundle import BundleError, export_bundle, import_bundle, open_store
from cache.metrics import Filters, confusion_matrix, group_metrics
from cache.redact import jpeg_metadata_segments
from cache.schema import response_key
from cache.store import Store
from tests.dashboard_fixture import MODEL_A, build_fixture_store
from tests.pipeline_helpers import cli, store_rows

SECRET = "sk-live-abcdefghijklmnop1234567890"
ENV_SECRET = "zq8-hunter2-value-from-env"


@pytest.fixture(autouse=True)
def bundle_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Opened bundles are extracted under the test's folder, never under ~/.cache."""
    monkeypatch.setenv("MEDLENS_BUNDLE_CACHE", str(tmp_path / "bundle-cache"))
    return tmp_path / "bundle-cache"


@pytest.fixture
def fixture_store(tmp_path: Path) -> Store:
    build_fixture_store(tmp_path / "source")
    return Store(tmp_path / "source")


def _rounded(value: object) -> object:
    """Floats to 9 places: DuckDB sums (cost_usd) in an order that depends on the part layout."""
    if isinstance(value, float):
        return round(value, 9)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return [_rounded(v) for v in value] if isinstance(value, list) else value


def _metrics(store: Store) -> tuple[object, dict]:
    con = store.connect()
    return _rounded(group_metrics(con)), confusion_matrix(con)


def test_round_trip_keeps_every_metric(fixture_store: Store, tmp_path: Path) -> None:
    bundle = tmp_path / "results.zip"
    out = cli("cache", "export", str(bundle), "--store", str(fixture_store.root)).stdout
    assert "55 rows, 25 thumbnails, 2 run record(s)" in out
    target = tmp_path / "empty"
    out = cli("cache", "import", str(bundle), "--store", str(target)).stdout
    # 55 rows in the bundle: the error row of a key the bundle also answered is not imported
    assert "imported 54 row(s)" in out and "(51 ok, 3 error); skipped 1" in out
    assert _metrics(Store(target)) == _metrics(fixture_store)
    assert len(list((target / "thumbs").glob("*.jpg"))) == 25
    assert sorted(p.name for p in (target / "runs").glob("*.json")) == ["run-a.json", "run-b.json"]

    again = cli("cache", "import", str(bundle), "--store", str(target)).stdout
    assert "imported 0 row(s)" in again and len(store_rows(target)) == 54
    source_json = cli("cache", "metrics", "--json", "--store", str(fixture_store.root)).stdout
    assert cli("cache", "metrics", "--json", "--store", str(bundle)).stdout == source_json


def test_bundle_layout_and_provenance(fixture_store: Store, tmp_path: Path) -> None:
    manifest = export_bundle(fixture_store, tmp_path / "b.zip", Filters(model=[MODEL_A], modality=["fundus"]))
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        names = set(archive.namelist())
        listed = {f["path"]: f["sha256"] for f in manifest["files"]}
        assert names == set(listed) | {"manifest.json"}
        for name, sha in listed.items():
            assert hashlib.sha256(archive.read(name)).hexdigest() == sha
        table = pq.read_table(io.BytesIO(archive.read("responses/bundle.parquet")))
        provenance = json.loads(archive.read("provenance.json"))
    assert set(table.column("model").to_pylist()) == {MODEL_A}
    assert set(table.column("modality").to_pylist()) == {"fundus"}
    assert sum(n.startswith("thumbs/") for n in names) == 12  # fundus r1-r6, s1-s6 (r7 has no thumbnail)
    assert {"README.txt", "provenance.json", "runs/run-a.json"} <= names and "runs/run-b.json" not in names
    assert provenance["medlens_version"] and provenance["filters"] == {"model": [MODEL_A], "modality": ["fundus"]}
    assert [m["model_versions"] for m in provenance["models"]] == [["gpt-4o-2024-08-06"]]
    assert {p["prompt_id"]: p["prompt_text"] for p in provenance["prompts"]} == {
        "brief": "Real or synthetic?", "paper": "Is this image real or synthetic? Then interpret it."}
    assert provenance["dates"]["first"].startswith("2026-01-10")


def _row(key_seed: str, *, status: str = "ok", label: str | None = "real", minutes: int = 0, **extra) -> dict:
    sha = hashlib.sha256(key_seed.encode()).hexdigest()
    row = {
        "key": response_key(provider="openai", model="openai:m", params={}, prompt_text="p", image_sha256=sha, repeat=0),
        "run_id": f"run-{key_seed}-{status}-{minutes}", "created_at": datetime(2026, 2, 1, tzinfo=UTC) + timedelta(minutes=minutes),
        "provider": "openai", "model": "openai:m", "prompt_id": "p", "prompt_text": "p", "image_sha256": sha,
        "image_path": f"fundus/real/{key_seed}.png", "modality": "fundus", "truth": "real", "source": "S",
        "repeat": 0, "status": status, "attempts": 1,
    }  # fmt: skip
    if status == "ok":
        row |= {"label": label, "raw_text": label, "interpretation": "ok"}
    else:
        row |= {"error_type": "timeout", "error_message": "timed out"}
    return row | extra


def test_import_deduplicates_by_key(tmp_path: Path) -> None:
    source, target = Store(tmp_path / "source"), Store(tmp_path / "target")
    source.append([
        _row("a", label="synthetic", minutes=5),  # key already ok in the target: skipped
        _row("b", status="error", minutes=1),  # error for a key the target answered: skipped
        _row("c", status="error", minutes=1), _row("c", label="real", minutes=2),  # error fixed in the bundle
        _row("d", status="error", minutes=3),  # open error: imported
        _row("e", label="real", minutes=4),  # new answer: imported
    ])
    target.append([_row("a", label="real"), _row("b", label="real")])
    export_bundle(source, tmp_path / "b.zip")
    counts = import_bundle(tmp_path / "b.zip", target)
    assert counts == {"rows": 6, "added_ok": 2, "added_error": 1, "skipped": 3, "thumbs": 0, "runs": 0,
                      "readings": 0, "grades": 0}
    rows = store_rows(target.root)
    labels = {(r["image_path"], r["status"]): r["label"] for r in rows}
    assert labels[("fundus/real/a.png", "ok")] == "real", "the target's own answer is kept"
    assert sorted(k for k in labels if k[1] == "error") == [("fundus/real/d.png", "error")]
    assert import_bundle(tmp_path / "b.zip", target)["added_ok"] == 0


def _exif_jpeg() -> bytes:
    image = Image.new("RGB", (32, 32), (200, 10, 10))
    exif = Image.Exif()
    exif[0x013B] = "Dr Alice Example"  # Artist
    out = io.BytesIO()
    image.save(out, format="JPEG", exif=exif.tobytes(), comment=b"patient 12345")
    return out.getvalue()


def test_no_paths_no_secrets_no_metadata_leave(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLENS_TEST_API_KEY", ENV_SECRET)
    home = "/home/alice/study"
    store = Store(tmp_path / "store")
    store.append([
        _row("abs", image_path=f"{home}/fundus/real/abs.png", raw_text=f"Real. key={ENV_SECRET}",
             params_json='{"api_key": "plain-text-key-123", "temperature": 0}'),
        _row("err", status="error", image_path="../../alice/x/err.png",
             error_message=f"{home}/fundus/real/err.png: file not found; Authorization: Bearer {SECRET}"),
    ])
    store.write_thumb(_row("abs")["image_sha256"], _exif_jpeg())
    store.write_run("run-abs-ok-0", {"run_id": "run-abs-ok-0", "manifest": f"{home}/manifest.csv",
                                     "audit": {"unreadable_errors": {f"{home}/x.png": f"{home}/x.png: bad"}},
                                     "note": f"token {SECRET}"})
    export_bundle(store, tmp_path / "b.zip")
    with zipfile.ZipFile(tmp_path / "b.zip") as archive:
        texts = {n: archive.read(n) for n in archive.namelist()}
    table = pq.read_table(io.BytesIO(texts.pop("responses/bundle.parquet")))
    everything = json.dumps(table.to_pylist(), default=str) + "".join(
        v.decode("utf-8") for n, v in texts.items() if not n.endswith(".jpg"))
    for leak in ("alice", ENV_SECRET, SECRET, "plain-text-key-123", "/home/"):
        assert leak not in everything, leak
    assert sorted(table.column("image_path").to_pylist()) == ["abs.png", "err.png"]
    run = json.loads(texts["runs/run-abs-ok-0.json"])
    assert run["manifest"] == "manifest.csv" and run["audit"]["unreadable_errors"] == {"x.png": "x.png: bad"}
    thumb = next(v for n, v in texts.items() if n.startswith("thumbs/"))
    assert jpeg_metadata_segments(_exif_jpeg()) == ["APP1", "COM"]
    assert jpeg_metadata_segments(thumb) == [] and b"Exif" not in thumb and b"12345" not in thumb
    assert Image.open(io.BytesIO(thumb)).size == (32, 32)


def test_open_store_extracts_once_and_checks_hashes(fixture_store: Store, tmp_path: Path, bundle_cache: Path) -> None:
    bundle = tmp_path / "results.zip"
    export_bundle(fixture_store, bundle)
    opened = open_store(bundle)
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest()
    assert opened.root == bundle_cache / digest and _metrics(opened) == _metrics(fixture_store)
    stamp = (opened.root / "manifest.json").stat().st_mtime_ns
    assert open_store(str(bundle)).root == opened.root
    assert (opened.root / "manifest.json").stat().st_mtime_ns == stamp, "extracted once"
    assert open_store(fixture_store.root).root == fixture_store.root

    tampered = tmp_path / "tampered.zip"
    with zipfile.ZipFile(bundle) as src, zipfile.ZipFile(tampered, "w") as dst:
        for name in src.namelist():
            data = src.read(name)
            dst.writestr(name, data.replace(b"Real or synthetic?", b"Fake or synthetic?") if name == "provenance.json" else data)
    with pytest.raises(BundleError, match="provenance.json has sha256 .* manifest.json says"):
        open_store(tampered)
    proc = cli("cache", "import", str(tampered), "--store", str(tmp_path / "t"), check=False,
               env={"MEDLENS_BUNDLE_CACHE": str(bundle_cache)})
    assert proc.returncode == 2 and "altered" in proc.stderr and not (tmp_path / "t" / "responses").exists()


def test_unsafe_member_names_are_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.zip"
    data = b"x"
    manifest = {"format": "medlens-bundle", "bundle_version": 1,
                "files": [{"path": "../escape.txt", "sha256": hashlib.sha256(data).hexdigest(), "bytes": 1}]}
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("manifest.json", json.dumps(manifest))
        archive.writestr("../escape.txt", data)
    with pytest.raises(BundleError, match="unsafe member name"):
        open_store(evil)
    assert not (tmp_path / "escape.txt").exists()
    with pytest.raises(BundleError, match="file not found"):
        open_store(tmp_path / "missing.zip")


def test_export_of_nothing_exits_2(fixture_store: Store, tmp_path: Path) -> None:
    proc = cli("cache", "export", str(tmp_path / "x.zip"), "--model", "nobody", "--store", str(fixture_store.root),
               check=False)
    assert proc.returncode == 2 and "no rows match" in proc.stderr and not (tmp_path / "x.zip").exists()


def test_bundles_carry_readings_judge_answers_and_grades(fixture_store: Store, tmp_path: Path) -> None:
    """A reviewer's label, a judge's answer and a grader's rating travel with the answers they are
    about (the judge row although its own model is not in the --model selection), and importing the
    bundle twice adds them once."""
    con = fixture_store.connect()
    (key, image, truth), (key2, image2, _truth2) = con.execute(
        "SELECT key, image_sha256, truth FROM results WHERE model = ? AND modality = 'fundus' ORDER BY key "
        "LIMIT 2", [MODEL_A]).fetchall()
    flipped = "real" if truth == "synthetic" else "synthetic"
    now = datetime(2026, 2, 1, tzinfo=UTC)
    fixture_store.append([{"reading_id": "rev-1", "key": key, "created_at": now, "authority": "reviewer",
                           "label": flipped, "made_by": "dr-ada", "note": "checked"}], "readings")
    fixture_store.append([{"grade_id": "g-1", "key": key, "created_at": now, "grader": "dr-bo", "correctness": 4,
                           "specificity": 2, "hallucinated": False, "hallucination_count": 0}], "grades")
    fixture_store.append([{"key": "judge-key-1", "run_id": "judge-run", "created_at": now, "provider": "openai",
                           "model": "openai:gpt-4o-mini", "prompt_id": "judge", "image_sha256": image2,
                           "modality": "fundus", "truth": truth, "repeat": 0, "status": "ok", "task": "judge",
                           "target_key": key2, "label": "uncertain", "raw_text": '{"label": "uncertain"}'}])
    before = Store(fixture_store.root).connect().execute(
        "SELECT key, label, label_source FROM results ORDER BY key").fetchall()
    manifest = export_bundle(fixture_store, tmp_path / "b.zip", Filters(model=[MODEL_A]))
    assert manifest["side_rows"] == {"readings": 1, "grades": 1}
    target = Store(tmp_path / "target")
    first = import_bundle(tmp_path / "b.zip", target)
    assert (first["readings"], first["grades"]) == (1, 1)
    again = import_bundle(tmp_path / "b.zip", target)
    assert (again["readings"], again["grades"], again["added_ok"]) == (0, 0, 0)
    after = target.connect()
    labels = dict((k, (label, source)) for k, label, source in after.execute(
        "SELECT key, label, label_source FROM results").fetchall())
    assert labels[key] == (flipped, "reviewer") and labels[key2] == ("uncertain", "judge")
    assert {k: v for k, v in labels.items()} == {k: (label, source) for k, label, source in before if k in labels}
    assert after.execute("SELECT grader, correctness FROM grades").fetchall() == [("dr-bo", 4)]
