"""`python -m cache` at its boundary: store errors are one line naming the store, a closed pipe is quiet."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cache.store import Store
from tests.pipeline_helpers import ROOT, cli
from tests.test_store import row


def test_unreadable_part_is_one_line_naming_the_file(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.append([row(1)])
    junk = store.responses_dir / "part-zzz.parquet"
    junk.write_bytes(b"junk")
    for command in (("metrics",), ("stats",), ("metrics", "--json")):
        proc = cli("cache", "--store", str(store.root), *command, check=False)
        assert proc.returncode == 1, proc
        assert "Traceback" not in proc.stderr and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ")
        assert "part-zzz.parquet" in lines[0] and str(store.root) in lines[0]
        assert f"move it out of {store.responses_dir}" in lines[0]
    junk.unlink()
    assert cli("cache", "--store", str(store.root), "metrics").returncode == 0


def test_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    # ~400 groups: the --json output is far larger than a pipe buffer, so the writer hits EPIPE
    store.append([row(i, model=f"baseline:m{i:04d}") for i in range(400)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cache", "--store", str(store.root), "metrics", "--json"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.readline().strip() == b"["  # like `| head -1`: read a line, then leave
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    code = proc.wait(timeout=60)
    assert code in (0, 141), stderr
    assert stderr == "", "no traceback, no 'Exception ignored' line"
