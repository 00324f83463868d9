"""A store on a disk that fills up mid-run (a small tmpfs mounted by the test, as root).

Failed before the journal: 40 of 169 paid answers reached the store, the rest went to a
world-readable rescue file in the system temp folder that nothing read back, no run record was
written, and the resume paid them again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from tests.loopback import OpenAIServer
from tests.pipeline_helpers import ROOT, cli, make_dataset, store_rows


@pytest.fixture
def small_disk(tmp_path: Path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root: the full-disk test runs as root (CI does)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(folder: Path) -> Path:
    """Take every free byte of the disk (big blocks, then ever smaller ones)."""
    ballast = folder / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for size in (1 << 20, 64 << 10, 4 << 10, 512, 1):
            try:
                while os.write(fd, b"\0" * size):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return ballast


def _keep_full(folder: Path, stop: threading.Event) -> None:
    while not stop.wait(0.002):
        _fill(folder)


def test_full_disk_stops_keeps_answers_in_the_store_and_the_next_run_folds_them(
    small_disk: Path, tmp_path: Path
) -> None:
    data = make_dataset(tmp_path / "data", per_cell=20, modalities=("fundus",))  # 40 images
    manifest = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest), "--no-audit")
    store = small_disk / "store"
    temp_before = set(os.listdir(tempfile.gettempdir()))
    with OpenAIServer(delay=0.2, default=("ok", "Real. A fundus photograph.")) as server:
        cmd = [
            sys.executable,
            "-m",
            "ingest",
            "run",
            "--manifest",
            str(manifest),
            "--model",
            f"compat:llava@{server.base_url}",
            "--store",
            str(store),
            "--concurrency",
            "2",
            "--no-progress",
        ]
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + 120
        while len(server.requests) < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        ballast = _fill(small_disk)
        stop = threading.Event()
        greedy = threading.Thread(target=_keep_full, args=(small_disk, stop))  # others take freed space
        greedy.start()
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            stop.set()
            greedy.join()
        paid_first = len(server.requests)
        assert proc.returncode == 1, (out, err)
        assert 8 <= paid_first < 40, "the run stopped scheduling calls"
        run_id = out.split("run ", 1)[1].split()[0]
        journal = store / "journal" / run_id
        assert "disk full: could not write" in out and f"are kept in {journal} (journal, mode 0600)" in out
        kept = int(out.split("; ", 1)[1].split(" are kept in")[0]) if "; " in out else 0
        in_parts = len(store_rows(store, "status = 'ok'"))
        assert kept + in_parts == paid_first, "every paid answer is in a part or in the journal"
        assert kept >= 1
        segments = list(journal.glob("*.log"))
        assert segments and all(p.stat().st_mode & 0o777 == 0o600 for p in segments)
        record = json.loads((store / "runs" / f"{run_id}.json").read_text())
        assert "kept in" in record["disk_full"], "the run record was written on the full disk"
        assert not {n for n in set(os.listdir(tempfile.gettempdir())) - temp_before if "rescue" in n}
        ballast.unlink()
        again = cli(*cmd[2:])
        assert "disk full" not in again.stdout
        assert len(server.requests) == 40, f"{len(server.requests) - 40} kept answer(s) paid again"
    ok = store_rows(store, "status = 'ok'")
    assert len(ok) == 40 and len({r["key"] for r in ok}) == 40
    assert not journal.exists()
