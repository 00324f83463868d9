"""Benchmark (issue 11.4): the overview metrics query over a 10^6-row store of 200 parts, on an S3
endpoint (moto, in this process, on 127.0.0.1) vs the same parts on local disk, side by side.

For each store and each repeat, on a fresh ``Store``: list the parts (``part_names``), connect
(``Store.connect``: lists every table, builds the views, finds the keys seen twice), then run
``cache.metrics.group_metrics`` once (cold: the first query of a connection, what a dashboard session
pays) and again (warm: the same connection). Medians of the repeats, local and S3 interleaved so that
load on the machine falls on both. The store is generated once (tests/benchmarks/dashboard_bigstore.py)
and its parts are copied object by object into the bucket, so both hold the same bytes.

moto keeps objects in memory and answers over loopback HTTP: no network latency, no bandwidth limit;
a real object store adds per-request latency (listing, footers, ranged GETs) on top. Not a test; it
asserts nothing.

    .venv/bin/python tests/benchmarks/bench_s3_store.py [--rows 1000000] [--parts 200] [--repeats 5]
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cache.metrics import Filters, group_metrics  # noqa: E402
from cache.store import Store  # noqa: E402
from tests.benchmarks.dashboard_bigstore import generate_store  # noqa: E402


def start_moto() -> tuple[object, str]:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def timed(fn):
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def measure(root: str) -> dict[str, float]:
    """One fresh look at the store: listing, connecting, the overview query cold and warm."""
    store = Store(root)
    out = {}
    out["list_s"], names = timed(lambda: store.part_names())
    out["parts"] = len(names)
    out["connect_s"], con = timed(lambda: Store(root).connect())
    out["query_cold_s"], groups = timed(lambda: group_metrics(con, Filters()))
    out["query_warm_s"], _ = timed(lambda: group_metrics(con, Filters()))
    out["rows"] = sum(g["n"] + g["errors"] for g in groups)
    con.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workdir", type=Path, help="where the local store goes (default: a temp folder)")
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="medlens-bench-s3-"))
    local = workdir / "local-store"
    server, endpoint = start_moto()
    os.environ.update({  # this process only: a throwaway endpoint with dummy credentials
        "AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret-key",
        "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
    })  # fmt: skip
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    import boto3

    boto3.client("s3").create_bucket(Bucket="medlens-bench")
    remote = "s3://medlens-bench/bigstore"
    try:
        gen_s, parts = timed(
            lambda: generate_store(local, n_rows=args.rows, part_rows=args.rows // args.parts)
        )
        source, target = Store(local), Store(remote)
        names = source.part_names()
        size = sum(source.part_sizes().values())
        upload_s, _ = timed(lambda: [target.storage.put(n, source.storage.read(n)) for n in names])
        print(
            f"store: {args.rows:,} rows in {parts} parts, {size / 1e6:.0f} MB (generated locally in "
            f"{gen_s:.1f} s; copied to {endpoint} in {upload_s:.1f} s, {size / 1e6 / upload_s:.0f} MB/s)"
        )
        results: dict[str, list[dict[str, float]]] = {"local": [], "s3": []}
        for _ in range(args.repeats):
            for kind, root in (("local", str(local)), ("s3", remote)):
                results[kind].append(measure(root))
        assert results["local"][0]["rows"] == results["s3"][0]["rows"], "both stores hold the same rows"
        report(results, args.repeats)
    finally:
        server.stop()


def report(results: dict[str, list[dict[str, float]]], repeats: int) -> None:
    print(
        f"median of {repeats} (min-max), seconds; {os.cpu_count()} cores, load average "
        f"{' '.join(f'{x:.1f}' for x in os.getloadavg())} (shared machine: figures are noisy)"
    )
    print(f"{'step':<34} {'local disk':>20} {'S3 (moto)':>20} {'S3 / local':>11}")
    steps = (
        ("list_s", "list the responses parts"),
        ("connect_s", "connect (list all + views + dup keys)"),
        ("query_cold_s", "overview metrics, first query"),
        ("query_warm_s", "overview metrics, again"),
    )
    for key, label in steps:
        cells = []
        for kind in ("local", "s3"):
            values = [r[key] for r in results[kind]]
            cells.append((statistics.median(values), min(values), max(values)))
        shown = [f"{m:.3f} ({lo:.3f}-{hi:.3f})" for m, lo, hi in cells]
        print(f"{label:<34} {shown[0]:>20} {shown[1]:>20} {cells[1][0] / cells[0][0]:>10.1f}x")
    total = {k: statistics.median(r["connect_s"] + r["query_cold_s"] for r in v) for k, v in results.items()}
    print(
        f"{'fresh connection + first query':<34} {total['local']:>20.3f} {total['s3']:>20.3f} "
        f"{total['s3'] / total['local']:>10.1f}x"
    )
    print(
        f"rows counted by the query: {results['s3'][0]['rows']:,.0f}; peak RSS of this process "
        f"(moto's objects included): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
