"""Benchmark: SIGKILL `ingest run` at random moments; how many answers are paid twice per kill?

Each trial starts the run, waits until calls are under way, kills it (SIGKILL) after a random
delay, and counts the answers the server gave that did not reach the store (parts or journal, as
the next command sees it): the next run pays those again. Target (issue 9): paid twice per kill
<= the calls in flight (--concurrency). Prints figures; asserts nothing.

    .venv/bin/python tests/benchmarks/bench_crash.py [--kills 10] [--concurrency 4] [--delay 0.1]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.loopback import OpenAIServer  # noqa: E402
from tests.pipeline_helpers import make_dataset  # noqa: E402


def stored_keys(store: Path) -> int:
    """Distinct ok keys as the next command sees them (it folds a dead run's journal first)."""
    code = (
        "import sys; from cache.store import Store; s = Store(sys.argv[1]); "
        "o = s.owner('bench'); o.start(); s.recover(o); o.stop(); "
        "print(len(s.done_keys()))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(store)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:  # a release without cache.leases: the parts are all there is
        code = "import sys; from cache.store import Store; print(len(Store(sys.argv[1]).done_keys()))"
        out = subprocess.run(
            [sys.executable, "-c", code, str(store)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    return int(out.stdout.strip() or 0)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.1, help="server seconds per answer")
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medlens-crash-"))
    data = make_dataset(work / "data", per_cell=args.images // 2, modalities=("fundus",))
    manifest = work / "m.csv"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run(
        [sys.executable, "-m", "ingest", "scan", str(data), "--out", str(manifest), "--no-audit"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    store = work / "store"
    rng = random.Random(args.seed)
    lost_per_kill = []
    with OpenAIServer(delay=args.delay, default=("ok", "Synthetic. Smooth texture.")) as server:
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
            str(args.concurrency),
            "--no-progress",
        ]
        gap = 0  # answers paid and not stored so far
        for _ in range(args.kills):
            before = len(server.requests)
            proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            while len(server.requests) == before and proc.poll() is None:
                time.sleep(0.01)
            time.sleep(rng.uniform(0.2, 2.0))
            if proc.poll() is not None:
                print("the run finished before the kill: use more --images")
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            now = len(server.requests) - stored_keys(store)
            lost_per_kill.append(now - gap)
            gap = now
        subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True)
        total = len(server.requests) - args.images
    print(
        f"root {ROOT}; {args.images} images, {args.concurrency} calls in flight, {args.delay * 1000:.0f} ms "
        f"per answer, {len(lost_per_kill)} SIGKILLs (machine: {os.cpu_count()} cores, shared)"
    )
    print(
        f"paid twice per kill: {', '.join(map(str, lost_per_kill))}; mean "
        f"{statistics.mean(lost_per_kill):.1f}, max {max(lost_per_kill)} (target <= {args.concurrency} "
        f"in flight); total paid twice after the final resume: {total}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
