"""Benchmark: `python -m cache reparse` over 10^6 stored answers (target: at most 120 s on this machine).

Builds (once, in --workdir) the dashboard benchmark's store: 10^6 responses of ~420 characters
(tests/benchmarks/dashboard_bigstore.py), whose stored labels were drawn at random, so most
re-readings differ and are written. Then runs the reparse twice in fresh processes: the first
writes the new readings, the second must write none (running it twice changes nothing). Prints
wall time, answers per second, readings written and peak RSS of each run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.benchmarks.dashboard_bigstore import generate_store  # noqa: E402

CHILD = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
from cache.reparse import reparse
from cache.store import Store
started = time.perf_counter()
result = reparse(Store({store!r}), progress=False)
print(json.dumps({{"seconds": time.perf_counter() - started, "answers": result.answers,
                  "changed": result.changed,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "children_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "medlens-bench-reparse")
    args = parser.parse_args()
    store = args.workdir / f"store-{args.rows}"
    if not (store / "responses").is_dir():
        started = time.perf_counter()
        generate_store(store, args.rows)
        print(f"built {store}: {args.rows:,} responses in {time.perf_counter() - started:.0f} s")
    shutil.rmtree(store / "readings", ignore_errors=True)
    for attempt in ("first run", "second run"):
        out = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), store=str(store))],
                             check=True, capture_output=True, text=True).stdout
        figures = json.loads(out.strip().splitlines()[-1])
        rate = figures["answers"] / figures["seconds"]
        print(f"{attempt}: {figures['answers']:,} answers re-read in {figures['seconds']:.1f} s "
              f"({rate:,.0f}/s), {figures['changed']:,} readings written, peak RSS "
              f"{figures['peak_rss_mb']:.0f} MB (parser workers {figures['children_peak_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
