"""Build and pack a 50,000-request batch of realistic images (issue 11.4, first half).

    .venv/bin/python tests/benchmarks/bench_batch.py [--images 500] [--repeats 100] [--side 512]
        [--provider openai|gemini|both] [--keep]

Writes ``--images`` distinct ``--side`` px PNGs (a fundus-like disc with vessels, vignetting and
sensor noise: about 250-350 KB each, as real colour fundus PNGs are), scans them into a manifest
and plans ``images x repeats`` calls through the real runner (identify with the memo, plan, cache
keys), then runs the batch hook's own ``ingest.batch.build``: each call's prepared image goes
through the provider's ``line()`` (the online request body, base64 image) into payload files
packed by count and bytes, each recorded in the ledger. Nothing is uploaded: each payload file is
measured and then removed, as a submission removes it, so the disk holds one batch at a time.

Prints: time to identify (prepare each distinct image once), time to build and pack, calls per
second, peak resident memory of the process (and its growth during the build), files and bytes
per batch file.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cache.store import Store, StoreWriter  # noqa: E402
from ingest import batch  # noqa: E402
from ingest.images import PrepOptions  # noqa: E402
from ingest.manifest import read_manifest, scan_dataset, write_manifest  # noqa: E402
from ingest.prompts import load_prompt  # noqa: E402
from ingest.providers.base import ProviderOptions  # noqa: E402
from ingest.providers.batch_api import batch_client  # noqa: E402
from ingest.providers.registry import create_provider, parse_spec  # noqa: E402
from ingest.runner import Runner  # noqa: E402


def fundus_like(side: int, seed: int) -> Image.Image:
    """A colour fundus-like picture: orange disc on black, brighter optic disc, dark vessels, noise."""
    rng = np.random.default_rng(seed)
    y, x = (np.mgrid[0:side, 0:side] / side - 0.5).astype(np.float32)
    r = np.hypot(x, y)
    disc = np.clip(1.0 - (r / 0.47) ** 6, 0, 1)
    base = np.stack([0.85 - 0.6 * r, 0.35 - 0.3 * r, 0.12 - 0.1 * r], axis=-1) * disc[..., None]
    ox, oy = rng.uniform(-0.2, 0.2, 2)
    base += 0.5 * np.exp(-((x - ox) ** 2 + (y - oy) ** 2) / 0.004)[..., None] * disc[..., None]
    angle = np.arctan2(y - oy, x - ox)
    for k in range(8):  # vessels: dark bands winding out of the optic disc
        theta = rng.uniform(-np.pi, np.pi)
        wiggle = np.sin(angle * 3 + k) * 0.05 + np.hypot(x - ox, y - oy) * rng.uniform(0.5, 2)
        band = np.exp(-(((angle - theta + wiggle + np.pi) % (2 * np.pi) - np.pi) ** 2) / 0.0008)
        base *= 1 - 0.45 * band[..., None]
    noise = rng.normal(0, 0.035, base.shape).astype(
        np.float32
    )  # sensor noise keeps the PNG near real-world sizes
    pixels = np.clip((base + noise) * disc[..., None] * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def write_images(root: Path, count: int, side: int) -> list[int]:
    sizes = []
    for i in range(count):
        truth = "real" if i % 2 else "synthetic"
        path = root / "fundus" / truth / f"img_{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        fundus_like(side, i).save(path, format="PNG")
        sizes.append(path.stat().st_size)
    return sizes


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def bench(model: str, manifest: Path, store_root: Path, repeats: int, keep: bool) -> dict:
    provider = create_provider(parse_spec(model), ProviderOptions())
    rows = read_manifest(manifest)
    runner = Runner(store=Store(store_root), rows=rows, manifest_dir=manifest.parent, providers=[provider],
                    prompt=load_prompt("paper"), prep=PrepOptions(), repeats=repeats, progress=False)  # fmt: skip
    started = time.perf_counter()
    items = asyncio.run(runner.identify())
    identify_s = time.perf_counter() - started
    tasks = runner.plan(items, set())
    client = batch_client(provider)
    rss_before = peak_rss_mb()
    sizes, counts = [], []
    started = time.perf_counter()
    with StoreWriter(runner.store) as writer:
        for entry in batch.build(runner, provider, client, tasks, writer):
            payload = batch.ledger.payload_path(store_root, entry.ledger_id)
            sizes.append(payload.stat().st_size)
            counts.append(entry.requests)
            if not keep:
                payload.unlink()  # as a submission does: the disk holds one batch at a time
    build_s = time.perf_counter() - started
    return {"model": model, "calls": len(tasks), "identify_s": identify_s, "build_s": build_s,
            "rss_before": rss_before, "rss_peak": peak_rss_mb(), "sizes": sizes, "counts": counts,
            "mode": client.mode(sizes[0]) if sizes else "-"}  # fmt: skip


def report(result: dict) -> None:
    sizes, counts = result["sizes"], result["counts"]
    print(f"\n{result['model']}: {result['calls']:,} calls in {len(sizes)} batch file(s) ({result['mode']})")
    print(f"  identify (prepare each distinct image once): {result['identify_s']:.1f} s")
    print(f"  build + pack: {result['build_s']:.1f} s = {result['calls'] / result['build_s']:,.0f} calls/s "
          f"({1000 * result['build_s'] / result['calls']:.2f} ms per call)")  # fmt: skip
    print(f"  peak RSS: {result['rss_peak']:.0f} MB (before the build {result['rss_before']:.0f} MB, "
          f"growth {result['rss_peak'] - result['rss_before']:.0f} MB)")  # fmt: skip
    print(f"  bytes per batch file: max {max(sizes) / 1e6:.1f} MB, median {statistics.median(sizes) / 1e6:.1f} MB, "
          f"min {min(sizes) / 1e6:.1f} MB; total {sum(sizes) / 1e9:.2f} GB")  # fmt: skip
    print(f"  calls per batch file: max {max(counts):,}, min {min(counts):,}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--side", type=int, default=512)
    parser.add_argument("--provider", choices=("openai", "gemini", "both"), default="both")
    parser.add_argument("--keep", action="store_true", help="keep the payload files (needs the disk)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="medlens-bench-batch-"))
    try:
        started = time.perf_counter()
        png = write_images(work / "data", args.images, args.side)
        print(
            f"{args.images} images of {args.side} px written in {time.perf_counter() - started:.1f} s: PNG "
            f"median {statistics.median(png) / 1e3:.0f} KB (min {min(png) / 1e3:.0f}, max {max(png) / 1e3:.0f})"
        )
        manifest = work / "m.csv"
        write_manifest(scan_dataset(work / "data"), manifest)
        models = {"openai": ["openai:gpt-4o"], "gemini": ["gemini:gemini-2.5-flash"]}.get(
            args.provider, ["openai:gpt-4o", "gemini:gemini-2.5-flash"]
        )
        for model in models:
            report(bench(model, manifest, work / f"store-{model.split(':')[0]}", args.repeats, args.keep))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
