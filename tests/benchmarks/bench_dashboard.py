"""Benchmark: the dashboard over a generated store of 1,000,000 responses.

Targets (dashboard issue): overview metrics query <= 0.5 s; first render of each page in the browser
<= 5 s; Streamlit process RSS <= 1.5 GB. Prints figures; asserts nothing (not a test).

    .venv/bin/python tests/benchmarks/bench_dashboard.py [--rows 1000000] [--workdir DIR] [--skip-browser]

Phases: generate (reused if present) -> queries (median of 5, cold caches: the uncached query
functions on a fresh connection) -> browser (streamlit run + headless chromium; each page visited
once with warm shared caches, then once more after Refresh, which drops every cache and the
connection; RSS of the Streamlit process sampled from /proc every 50 ms).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cache import metrics as cm  # noqa: E402
from cache.metrics import Filters  # noqa: E402
from cache.store import Store  # noqa: E402
from tests.benchmarks.dashboard_bigstore import MODELS, generate_store  # noqa: E402


def median_time(fn: Callable[[], Any], repeats: int = 5) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), times


def ensure_store(workdir: Path, rows: int) -> Path:
    store = workdir / f"store-{rows}"
    marker = store / "GENERATED"
    if not marker.exists():
        started = time.perf_counter()
        parts = generate_store(store, rows)
        marker.write_text(json.dumps({"rows": rows, "parts": parts}))
        print(f"generated {rows:,} rows in {parts} parts in {time.perf_counter() - started:.1f} s")
    size = sum(p.stat().st_size for p in Store(store).part_paths())
    print(f"store {store}: {len(Store(store).part_paths())} parts, {size / 1e6:.0f} MB")
    return store


def bench_queries(store: Path) -> dict[str, float]:
    """Each dashboard query, uncached (the st.cache_data wrappers bypassed), median of 5."""
    import logging

    logging.getLogger("streamlit").setLevel(logging.ERROR)
    from dashboard import queries

    root = str(store)
    signature = queries.store_signature(root)
    con = queries.open_store(root)
    results: dict[str, float] = {}

    def timed(name: str, fn: Callable[[], Any], repeats: int = 5) -> None:
        med, times = median_time(fn, repeats)
        results[name] = med
        print(f"  {name:38s} median {med:6.3f} s   ({', '.join(f'{t:.3f}' for t in times)})", flush=True)

    f = Filters()
    print("queries (1 connection, cold query caches):")
    timed("overview: cache.metrics.group_metrics", lambda: cm.group_metrics(con))
    timed("overview: by source (4 group columns)", lambda: cm.group_metrics(con, by=("model", "modality", "truth",
                                                                                       "source")))
    timed("confusion_matrix", lambda: cm.confusion_matrix(con))
    w = {name: getattr(queries, name).__wrapped__ for name in (
        "store_totals", "filter_options", "compare", "gallery_page", "error_types", "run_costs",
        "latency_stats", "latency_histogram", "quality")}
    timed("sidebar: store_totals + filter_options", lambda: (w["store_totals"](root, signature),
                                                            w["filter_options"](root, signature)))
    timed("compare (2 models, 250k pairs)", lambda: w["compare"](root, signature, MODELS[0], MODELS[1], f), 3)
    timed("gallery page (count + 12 images)", lambda: w["gallery_page"](root, signature, f, False, False, 0, 12))
    timed("runs: errors + costs + latency", lambda: (w["error_types"](root, signature, f),
                                                    w["run_costs"](root, signature, f),
                                                    w["latency_stats"](root, signature, f),
                                                    w["latency_histogram"](root, signature, f)))
    timed("quality (regex over 1M texts)", lambda: w["quality"](root, signature, f, ("fundus", "chest_xray")), 3)
    return results


class RssSampler(threading.Thread):
    """Peak VmRSS of a process, sampled from /proc every 50 ms."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid, self.peak_kb, self._stop_event = pid, 0, threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.peak_kb = max(self.peak_kb, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.05)

    def stop(self) -> float:
        self._stop_event.set()
        self.join()
        return self.peak_kb / 1024


def bench_browser(store: Path, shots: Path | None = None) -> dict[str, Any]:
    from tests.dashboard_server import PAGES, browser_missing, chromium, streamlit_server, wait_idle

    reason = browser_missing()
    if reason:
        print(f"browser phase skipped: {reason}")
        return {}
    out: dict[str, Any] = {"warm": {}, "cold": {}}
    with streamlit_server(store, timeout=120) as server, chromium() as page:
        sampler = RssSampler(server.process.pid)
        sampler.start()
        print("browser: first render of each page (shared caches warm from earlier pages)")
        for url, title in PAGES.items():
            started = time.perf_counter()
            page.goto(f"{server.url}/{url}")
            page.wait_for_selector('[data-testid="stApp"]', timeout=120_000)
            app_at = time.perf_counter() - started  # Streamlit's JS bundle loaded and running
            page.locator('[data-testid="stMain"]').get_by_text(title, exact=True).first.wait_for(timeout=120_000)
            title_at = time.perf_counter() - started  # the page script has started sending elements
            wait_idle(page, title, timeout_ms=120_000)
            out["warm"][url or "overview"] = elapsed = time.perf_counter() - started
            print(f"  {url or 'overview':10s} {elapsed:5.2f} s   (app shell {app_at:.2f} s, title {title_at:.2f} s)",
                  flush=True)
            if shots:
                page.screenshot(path=str(shots / f"1m-{url or 'overview'}.png"), full_page=True)
        print("browser: each page after Refresh (every cache and the connection dropped)")
        for url, title in PAGES.items():
            page.goto(server.url)  # the overview has the sidebar's Refresh (blinded pages have no sidebar)
            wait_idle(page, PAGES[""], timeout_ms=120_000)
            page.get_by_role("button", name="Refresh").click()
            wait_idle(page, timeout_ms=120_000)
            started = time.perf_counter()
            page.goto(f"{server.url}/{url}")
            wait_idle(page, title, timeout_ms=120_000)
            out["cold"][url or "overview"] = elapsed = time.perf_counter() - started
            print(f"  {url or 'overview':10s} {elapsed:5.2f} s", flush=True)
        out["peak_rss_mb"] = sampler.stop()
        print(f"Streamlit process peak RSS: {out['peak_rss_mb']:.0f} MB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "medlens-bench-dashboard")
    parser.add_argument("--skip-browser", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--screenshots", type=Path, help="save a screenshot of each page here")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    store = ensure_store(args.workdir, args.rows)
    figures = {"rows": args.rows, "queries": bench_queries(store)}
    if not args.skip_browser:
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
        figures["browser"] = bench_browser(store, args.screenshots)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
