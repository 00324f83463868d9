"""No input can hang a command: FIFOs, sockets and huge files named like images or manifests.

Each command runs as a subprocess with a timeout; before the fix a FIFO named `.png` made `ingest
scan` and `ingest run` wait forever (opening a FIFO blocks until a writer appears).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

from tests.loopback import OpenAIServer
from tests.pipeline_helpers import cli, store_rows, write_image

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo (POSIX)")
TIMEOUT = 90


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for i in range(2):
        write_image(root / "fundus" / "real" / f"r{i}.png", seed=i)
        write_image(root / "fundus" / "synthetic" / f"s{i}.png", seed=10 + i, smooth=True)
    os.mkfifo(root / "fundus" / "real" / "pipe.png")
    os.mkfifo(root / "fundus" / "synthetic" / "pipe-without-extension")  # sniffed for DICOM by scan
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(root / "fundus" / "synthetic" / "sock.dcm"))
    except OSError:  # a path too long for AF_UNIX: the FIFOs still cover the case
        pass
    finally:
        sock.close()
    with open(root / "fundus" / "real" / "huge.png", "wb") as sparse:  # 3 GiB, no disk used
        sparse.truncate(3 << 30)
    return root


def test_scan_and_run_turn_special_files_into_error_rows_at_once(dataset: Path, tmp_path: Path) -> None:
    manifest, store = tmp_path / "m.csv", tmp_path / "store"
    started = time.monotonic()
    scan = cli("ingest", "scan", str(dataset), "--out", str(manifest), timeout=TIMEOUT)
    audit = json.loads(manifest.with_suffix(".audit.json").read_text())
    assert {"fundus/real/pipe.png", "fundus/real/huge.png"} <= set(audit["unreadable"])  # dataset-relative
    assert "FIFO" in audit["unreadable_errors"]["fundus/real/pipe.png"]
    pipe, huge = "data/fundus/real/pipe.png", "data/fundus/real/huge.png"  # manifest-relative
    assert "wrote" in scan.stdout
    with OpenAIServer(default=("ok", "Real.")) as server:
        run = cli(
            "ingest",
            "run",
            "--manifest",
            str(manifest),
            "--model",
            f"compat:m@{server.base_url}",
            "--store",
            str(store),
            "--no-progress",
            timeout=TIMEOUT,
        )
    elapsed = time.monotonic() - started
    errors = {
        r["image_path"]: (r["error_type"], r["error_message"])
        for r in store_rows(store)
        if r["status"] == "error"
    }
    assert errors[pipe][0] == "image_not_a_file"
    assert "FIFO" in errors[pipe][1] and "pipe.png" in errors[pipe][1]
    assert errors[huge][0] == "image_too_large" and "3,221,225,472 bytes" in errors[huge][1]
    assert len([r for r in store_rows(store) if r["status"] == "ok"]) == 4
    assert "could not be read" in run.stdout and elapsed < TIMEOUT


def test_a_fifo_given_as_manifest_prompt_or_answers_file_is_refused_at_once(
    dataset: Path, tmp_path: Path
) -> None:
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    prompt = tmp_path / "prompt.txt"
    os.mkfifo(prompt)
    manifest = tmp_path / "m.csv"
    cli("ingest", "scan", str(dataset), "--out", str(manifest), "--no-audit", timeout=TIMEOUT)
    for args in (
        ("run", "--manifest", str(fifo), "--model", "baseline:forensic"),
        ("run", "--manifest", str(manifest), "--model", "baseline:forensic", "--prompt", str(prompt)),
        ("import", str(fifo), "--manifest", str(manifest), "--model", "web"),
    ):
        proc = cli("ingest", *args, "--store", str(tmp_path / "store"), check=False, timeout=TIMEOUT)
        assert proc.returncode == 2, proc.stderr
        assert "FIFO" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_size_caps_are_checked_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ingest import images, manifest

    big = tmp_path / "big.csv"
    with open(big, "wb") as sparse:
        sparse.truncate(600 << 20)  # over the 512 MiB manifest cap: refused from its size
    started = time.monotonic()
    with pytest.raises(manifest.ManifestError, match="more than the limit"):
        manifest.read_manifest(big)
    png = tmp_path / "a.png"
    write_image(png, seed=3)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", png.stat().st_size - 1)
    with pytest.raises(images.ImageError, match="more than the limit") as caught:
        images.prepare_image(png)
    assert caught.value.reason == "too_large" and time.monotonic() - started < 5
