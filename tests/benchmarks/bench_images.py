"""Realistic images for bench_run.py --realistic: chest X-rays and fundus photographs at full size.

1024x1024 greyscale PNG chest X-rays and 3000x2900 RGB JPEG fundus photographs, drawn (not real
patients): a radiograph-like field (lungs darker than the mediastinum, ribs, film grain) and a
fundus-like disc (orange-red retina, bright optic disc, darker vessels, black surround). Every copy
differs (its own grain), so each is a distinct image with its own key, as in a real data set.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image


def xray_base(side: int = 1024) -> np.ndarray:
    y, x = np.mgrid[0:side, 0:side] / side
    body = np.exp(-((((x - 0.5) / 0.42) ** 2 + ((y - 0.55) / 0.5) ** 2) ** 2))
    lungs = np.exp(-(((np.abs(x - 0.5) - 0.2) / 0.13) ** 2 + ((y - 0.5) / 0.3) ** 2))
    ribs = 0.08 * np.sin(y * 60 + np.abs(x - 0.5) * 14) * lungs
    return np.clip(255 * (0.15 + 0.7 * body - 0.45 * lungs + ribs), 0, 255)


def fundus_base(width: int = 3000, height: int = 2900) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy, radius = width / 2, height / 2, 0.46 * min(width, height)
    r = np.hypot(x - cx, y - cy) / radius
    disc = np.exp(-(((x - cx * 1.35) ** 2 + (y - cy) ** 2) / (0.012 * radius**2)))
    vessels = np.abs(np.sin((np.arctan2(y - cy, x - cx * 1.35) * 9) + r * 3)) < 0.06
    rgb = np.stack([200 - 60 * r, 90 - 40 * r, 40 - 20 * r], axis=-1)
    rgb += disc[..., None] * np.array([55, 120, 90])
    rgb[vessels] *= 0.6
    rgb[r > 1] = 0
    return np.clip(rgb, 0, 255)


def make_images(folder: Path, xrays: int, fundus: int) -> None:
    marker = folder / f"done-{xrays}-{fundus}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(11)
    base = xray_base()
    for i in range(xrays):
        truth = "real" if i % 2 else "synthetic"
        grain = rng.normal(0, 6, base.shape)
        path = folder / "chest_xray" / truth / f"cxr_{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "L").save(path)
    base = fundus_base()
    for i in range(fundus):
        truth = "real" if i % 2 else "synthetic"
        grain = rng.normal(0, 4, base.shape[:2])[..., None]
        path = folder / "fundus" / truth / f"fundus_{i:04d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.clip(base + grain, 0, 255).astype(np.uint8), "RGB").save(path, quality=92)
    marker.write_text("ok")


def realistic(work: Path, args: argparse.Namespace, env: dict, port: int) -> int:
    """One cold `ingest run` over realistic images: preparation rate, call rate, share preparing."""
    from tests.benchmarks.bench_run import ingest, last_run, rate, server_stats

    data, manifest = work / "realistic", work / "realistic.csv"
    started = time.perf_counter()
    make_images(data, args.xrays, args.fundus)
    print(
        f"images: {args.xrays} chest X-rays (1024x1024 grey PNG), {args.fundus} fundus (3000x2900 RGB JPEG) "
        f"in {data} (made in {time.perf_counter() - started:.0f} s)"
    )
    ingest(["scan", str(data), "--out", str(manifest), "--no-audit"], env)
    walls, prep_rates, call_rates, shares = [], [], [], []
    for index in range(args.rounds):
        store = work / f"realistic-store-{index}"
        shutil.rmtree(store, ignore_errors=True)
        wall = ingest(
            [
                "run",
                "--manifest",
                str(manifest),
                "--model",
                "openai:gpt-4o",
                "--store",
                str(store),
                "--concurrency",
                str(args.concurrency),
                "--no-progress",
            ],
            env,
        )
        calls = rate(server_stats(port))
        timings = last_run(store)["timings"]
        prepared = timings["images_prepared"]
        walls.append(wall)
        prep_rates.append(prepared / timings["identify_s"])
        call_rates.append(calls)
        shares.append(timings["identify_s"] / wall)
        print(
            f"round {index + 1}: {wall:.1f} s wall; {prepared} images prepared in {timings['identify_s']:.1f} s "
            f"({prep_rates[-1]:.1f} images/s); calls {calls:.0f} calls/s over {timings['calls_s']:.1f} s; "
            f"preparing {100 * shares[-1]:.0f}% of wall time"
        )
    print(
        f"median: {statistics.median(prep_rates):.1f} images prepared/s, {statistics.median(call_rates):.0f} "
        f"calls/s, preparing {100 * statistics.median(shares):.0f}% of {statistics.median(walls):.1f} s wall "
        "(2 cores shared with other work: busy)"
    )
    return 0
