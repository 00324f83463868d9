"""SIGKILL `ingest run` at random moments, then resume: nothing journaled is lost, nothing doubles, and
no answer is paid twice beyond the calls in flight at each kill (failed before the journal: 8.8 per
kill at 4 in flight)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.loopback import OpenAIServer
from tests.pipeline_helpers import ROOT, cli, make_dataset, store_rows

pytestmark = pytest.mark.slow


def _ok_rows(store: Path) -> dict[str, tuple]:
    rows = store_rows(store, "status = 'ok'")
    counts = Counter(r["key"] for r in rows)
    doubled = [k for k, n in counts.items() if n > 1]
    assert not doubled, f"{len(doubled)} key(s) have two ok rows"
    return {r["key"]: (r["created_at"], r["raw_text"], r["image_sha256"]) for r in rows}


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", per_cell=150, modalities=("fundus",))  # 300 images
    manifest = tmp_path / "manifest.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest), "--no-audit")
    store = tmp_path / "store"
    rng = random.Random(20261128)
    with OpenAIServer(delay=0.1, default=("ok", "Synthetic. Smooth texture.")) as server:
        spec = f"compat:llava@{server.base_url}"
        command = [sys.executable, "-m", "ingest", "run", "--manifest", str(manifest), "--model", spec,
                   "--model", "baseline:forensic", "--store", str(store), "--concurrency", "2",
                   "--no-progress"]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        seen: dict[str, tuple] = {}
        kills = 0
        for _trial in range(6):
            before = len(server.requests)
            proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            while len(server.requests) == before and proc.poll() is None:  # calls under way
                time.sleep(0.01)
            time.sleep(rng.uniform(0.3, 2.0))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait()
            now = _ok_rows(store)  # the store opens and no key is doubled
            lost = set(seen) - set(now)
            assert not lost, f"{len(lost)} stored row(s) lost after a kill"
            assert all(now[k] == v for k, v in seen.items()), "a flushed row changed"
            seen = now
        assert kills >= 5, "the run finished before most kills: make it longer"
        final = cli(*command[2:], timeout=600)
        assert final.returncode == 0
        paid_twice = len(server.requests) - 300
    assert paid_twice <= 2 * kills, f"{paid_twice} answers paid twice in {kills} kills at 2 calls in flight"
    rows = _ok_rows(store)
    assert set(seen) <= set(rows)
    all_ok = store_rows(store, "status = 'ok'")
    by_model = Counter(r["model"] for r in all_ok)
    assert by_model == {spec: 300, "baseline:forensic": 300}
    assert len({(r["model"], r["image_sha256"]) for r in all_ok}) == 600, "each image answered once per model"
