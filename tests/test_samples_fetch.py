"""The sample registry and `python -m data fetch-samples`: mirror, loopback downloads, resume, refusals.

No test reaches the internet: downloads go to a server on 127.0.0.1, and "network down" is a closed
loopback port or a server that never answers.
"""

from __future__ import annotations

import csv
import hashlib
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.samples import REGISTRY, load_registry
from tests.pipeline_helpers import cli


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_registry(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def _registry_rows(files: list[str]) -> list[dict[str, str]]:
    with REGISTRY.open(encoding="utf-8", newline="") as handle:
        rows = {row["file"]: row for row in csv.DictReader(handle)}
    return [rows[f] for f in files]


PICK = ["fundus/real/hrf_01_h.jpg", "fundus/synthetic/retinagan_image_class_0_batch_0_sample_0.png",
        "chest_xray/synthetic/medigan_00019.png"]
DERIVED = "chest_xray/synthetic/monai_cxr_ldm_figure_1_tile1.png"


def test_committed_samples_match_the_registry_and_two_package_images(samples_dir: Path) -> None:
    samples = load_registry()
    fetched = [s for s in samples if not s.packaged]
    assert len(samples) == 71 and len(fetched) == 69
    on_disk = sorted(str(p.relative_to(samples_dir)) for p in samples_dir.rglob("*")
                     if p.is_file() and p.parent.name in ("real", "synthetic"))
    assert on_disk == sorted(s.file for s in fetched), "every committed image is registered, and only those"
    for sample in fetched:
        assert _sha(samples_dir / sample.file) == sample.sha256, sample.file
        assert sample.origin_url.startswith("https://raw.githubusercontent.com/") or sample.derived
        assert sample.license_files, sample.file
        for text in sample.license_files:
            assert (samples_dir / text).is_file(), text
    assert (samples_dir / "PROVENANCE.md").is_file() and (samples_dir / "ATTRIBUTION.md").is_file()
    packaged = {s.source_id: s for s in samples if s.packaged}
    assert set(packaged) == {"scikit-image", "pydicom-data"}
    for sample in packaged.values():  # the installed packages ship exactly the registered bytes
        assert hashlib.sha256(sample.package_bytes()).hexdigest() == sample.sha256
    assert packaged["scikit-image"].license == "CC0-1.0"


def test_fetch_samples_is_a_hash_check_of_the_committed_files(samples_dir: Path) -> None:
    proc = cli("data", "fetch-samples", "--offline")
    assert "69 of 69 available (69 already present, 0 copied from the mirror, 0 downloaded)" in proc.stdout


def test_retina_png_holds_exactly_skimage_retina_pixels(tmp_path: Path) -> None:
    import skimage.data

    from data.demo import write_packaged

    sample = next(s for s in load_registry() if s.source_id == "scikit-image")
    target = tmp_path / sample.demo_path
    assert write_packaged(sample, target) and target.suffix == ".png"
    assert np.array_equal(np.asarray(Image.open(target)), skimage.data.retina())


def test_fetch_from_mirror_then_resume(samples_dir: Path, tmp_path: Path) -> None:
    dest = tmp_path / "samples"
    first = cli("data", "fetch-samples", "--mirror", str(samples_dir), "--dest", str(dest), "--offline")
    assert "69 of 69 available (0 already present, 69 copied from the mirror, 0 downloaded)" in first.stdout
    for sample in load_registry():
        if not sample.packaged:
            assert _sha(dest / sample.file) == sample.sha256
    assert sorted(p.name for p in (dest / "LICENSES").iterdir()) == sorted(
        p.name for p in (samples_dir / "LICENSES").iterdir())
    attribution = (dest / "ATTRIBUTION.md").read_text()
    assert "`fundus/real/hrf_01_h.jpg`" in attribution and "CC-BY-4.0" in attribution
    assert "derived by the mirror's curator (no download URL: only a mirror has it)" in attribution
    stamp = (dest / PICK[0]).stat().st_mtime_ns
    again = cli("data", "fetch-samples", "--mirror", str(samples_dir), "--dest", str(dest), "--offline")
    assert "69 of 69 available (69 already present, 0 copied" in again.stdout
    assert (dest / PICK[0]).stat().st_mtime_ns == stamp, "a good file is never rewritten"


@pytest.fixture
def small_mirror(samples_dir: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A registry of four rows (one derived) and a writable mirror holding their files."""
    mirror = tmp_path / "mirror"
    for name in [*PICK, DERIVED]:
        (mirror / name).parent.mkdir(parents=True, exist_ok=True)
        (mirror / name).write_bytes((samples_dir / name).read_bytes())
    return _write_registry(tmp_path / "registry.csv", _registry_rows([*PICK, DERIVED])), mirror


def test_tampered_mirror_file_is_refused_with_both_hashes(small_mirror: tuple[Path, Path], tmp_path: Path) -> None:
    registry, mirror = small_mirror
    tampered = mirror / PICK[1]
    expected = _sha(tampered)
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    dest = tmp_path / "dest"
    proc = cli("data", "fetch-samples", "--registry", str(registry), "--mirror", str(mirror), "--dest", str(dest),
               "--offline", check=False)
    assert proc.returncode == 2, proc.stderr
    line = next(ln for ln in proc.stderr.splitlines() if PICK[1] in ln)
    assert expected in line and _sha(tampered) in line and "mismatch" in line
    assert not (dest / PICK[1]).exists(), "a file with the wrong hash is never written"
    assert (dest / PICK[0]).is_file() and (dest / PICK[2]).is_file(), "the good files are still fetched"


def test_wrong_file_in_dest_is_replaced_or_refused(small_mirror: tuple[Path, Path], tmp_path: Path) -> None:
    registry, mirror = small_mirror
    dest = tmp_path / "dest"
    (dest / PICK[0]).parent.mkdir(parents=True)
    (dest / PICK[0]).write_bytes(b"half a download")
    bad = hashlib.sha256(b"half a download").hexdigest()
    proc = cli("data", "fetch-samples", "--registry", str(registry), "--mirror", str(mirror), "--dest", str(dest),
               "--offline")
    assert f"{PICK[0]} (its sha256 was {bad})" in proc.stdout
    assert _sha(dest / PICK[0]) == _sha(mirror / PICK[0])
    (dest / PICK[0]).write_bytes(b"half a download")  # now with no source to repair it from
    proc = cli("data", "fetch-samples", "--registry", str(registry), "--dest", str(dest), "--offline", check=False)
    assert proc.returncode == 2 and bad in proc.stderr and _sha(mirror / PICK[0]) in proc.stderr
    assert str(dest / PICK[0]) in proc.stderr


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def file_server(small_mirror: tuple[Path, Path]) -> Iterator[str]:
    _registry, mirror = small_mirror
    handler = lambda *a, **k: _Quiet(*a, directory=str(mirror), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_from_loopback_urls(file_server: str, small_mirror: tuple[Path, Path], tmp_path: Path) -> None:
    rows = _registry_rows([*PICK, DERIVED])
    for row in rows[:3]:
        row["origin_url"] = f"{file_server}/{row['file']}"
    rows[2]["origin_url"] = f"{file_server}/no/such/file.png"
    registry = _write_registry(tmp_path / "loopback.csv", rows)
    dest = tmp_path / "dest"
    out = cli("data", "fetch-samples", "--registry", str(registry), "--dest", str(dest), "--no-progress").stdout
    assert "2 of 4 available (0 already present, 0 copied from the mirror, 2 downloaded)" in out
    assert "1 derived file(s) have no download URL: they can only come from a mirror" in out
    assert f"unavailable: {PICK[2]}: HTTP 404" in out
    assert _sha(dest / PICK[0]) == rows[0]["sha256"]

    served = small_mirror[1] / PICK[1]  # the server now sends other bytes than the registry pins
    served.write_bytes(served.read_bytes()[:-1])
    proc = cli("data", "fetch-samples", "--registry", str(registry), "--dest", str(tmp_path / "fresh"), check=False)
    assert proc.returncode == 2 and rows[1]["origin_url"] in proc.stderr
    assert rows[1]["sha256"] in proc.stderr and _sha(served) in proc.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_network_down_is_one_line_and_the_fetch_continues(small_mirror: tuple[Path, Path], tmp_path: Path) -> None:
    registry, mirror = small_mirror
    rows = _registry_rows([*PICK, DERIVED])
    port = _closed_port()
    for row in rows[:3]:
        row["origin_url"] = f"http://127.0.0.1:{port}/{row['file']}"
    (mirror / PICK[0]).unlink()  # the mirror lacks one file: it must be downloaded, and cannot be
    registry = _write_registry(tmp_path / "down.csv", rows)
    proc = cli("data", "fetch-samples", "--registry", str(registry), "--mirror", str(mirror),
               "--dest", str(tmp_path / "dest"))
    lines = [ln for ln in proc.stdout.splitlines() if "network unavailable" in ln]
    assert len(lines) == 1 and "1 sample(s) not downloaded; continuing with the 3 available" in lines[0]
    assert proc.returncode == 0


def test_silent_server_times_out_once(small_mirror: tuple[Path, Path], tmp_path: Path) -> None:
    """A server that accepts but never answers costs one short timeout, not one per file."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    rows = _registry_rows(PICK)
    for row in rows:
        row["origin_url"] = f"http://127.0.0.1:{listener.getsockname()[1]}/{row['file']}"
    registry = _write_registry(tmp_path / "silent.csv", rows)
    started = time.monotonic()
    try:
        proc = cli("data", "fetch-samples", "--registry", str(registry), "--dest", str(tmp_path / "dest"),
                   "--timeout", "0.5")
    finally:
        listener.close()
    assert time.monotonic() - started < 10
    assert "network unavailable" in proc.stdout and "3 sample(s) not downloaded" in proc.stdout


def test_malformed_registry_exits_2(tmp_path: Path) -> None:
    rows = _registry_rows(PICK[:1])
    rows[0]["sha256"] = "not-a-hash"
    registry = _write_registry(tmp_path / "bad.csv", rows)
    proc = cli("data", "fetch-samples", "--registry", str(registry), "--dest", str(tmp_path / "d"), check=False)
    assert proc.returncode == 2 and "bad.csv, line 2, column 'sha256'" in proc.stderr

