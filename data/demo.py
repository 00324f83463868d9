"""``python -m data demo``: a populated store minutes after cloning, built only from public images.

Steps: (1) fetch the registry's samples into the samples folder (mirror, else origin URLs, else
nothing: see ``data.samples``); (2) lay out the demo folder as ``<modality>/<real|synthetic>/<source>/``
with links (or copies) of the verified samples plus the two real images that installed packages ship
(scikit-image's CC0 retina, decoded exactly as ``skimage.data.retina()`` and saved as PNG;
pydicom-data's ``RG1_UNCR.dcm`` byte for byte); (3) ``ingest scan`` it; (4) ``ingest run --model
baseline:forensic`` into a fresh store, which then replaces the demo store, with ``demo.json`` at its
root saying what it holds.

The demo never contains or imitates an answer from a cloud model, and never fabricates images: with
only the two package images (offline, no mirror) the baseline has nothing to train on and says so:
every image is an error row ``baseline_untrained``. The demo store is rebuilt from scratch each time (the baseline's answers depend
on the whole image set); a folder or store that the demo did not make is never deleted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data import DATA_DIR
from data.samples import (
    DEFAULT_DEST,
    REGISTRY,
    Downloader,
    FetchReport,
    Sample,
    atomic_write,
    copy_licenses,
    fetch_samples,
    load_registry,
    summary_lines,
    write_attribution,
)  # fmt: skip

DEMO_MODEL = "baseline:forensic"
DEMO_DIR = DATA_DIR / "demo"
DEMO_STORE = DATA_DIR / "demo_store"
MARKER = "demo.json"  # at the store root; the dashboard reads it to say what the demo holds
LAYOUT_MARKER = ".medlens-demo"  # in the demo folder: only a folder carrying it is ever cleared

Log = Callable[[str], None]


class DemoError(Exception):
    """The demo cannot be built as asked (exit code 2); the message says why and what to do."""


@dataclass
class DemoResult:
    store: Path
    marker: dict[str, Any]
    fetch: FetchReport


def build_demo(
    *,
    store: Path = DEMO_STORE,
    demo_dir: Path = DEMO_DIR,
    samples_dir: Path = DEFAULT_DEST,
    mirror: Path | None = None,
    offline: bool = False,
    timeout: float = 5.0,
    registry: Path = REGISTRY,
    progress: bool = False,
    log: Log = print,
) -> DemoResult:
    """Fetch, lay out, scan and answer; see the module docstring. Raises DemoError."""
    store, demo_dir = Path(store), Path(demo_dir)
    _check_replaceable_store(store)
    samples = load_registry(registry)
    fetch = fetch_samples(samples, samples_dir, mirror=mirror,
                          downloader=Downloader(not offline, timeout), progress=progress)
    for line in summary_lines(fetch, Path(samples_dir)):
        log(line)
    if fetch.problems:
        raise DemoError("\n".join(fetch.problems))
    fetched = [s for s in samples if s.file in set(fetch.available)]
    placed = layout_demo(demo_dir, Path(samples_dir), fetched, [s for s in samples if s.packaged], log)
    if not placed:
        raise DemoError("no image is available for the demo: fetch the samples with network access "
                        "or --mirror DIR, and install the requirements (scikit-image, pydicom-data)")
    manifest = demo_dir / "manifest.csv"
    _ingest(["scan", str(demo_dir), "--out", str(manifest)])
    staging = store.parent / f".{store.name}.building-{uuid.uuid4().hex[:8]}"
    try:
        _ingest(["run", "--manifest", str(manifest), "--model", DEMO_MODEL, "--store", str(staging),
                 *([] if progress else ["--no-progress"])])
        marker = demo_marker(staging, placed, fetch, offline=offline)
        atomic_write(staging / MARKER, json.dumps(marker, indent=2).encode("utf-8"))
        _swap_in(staging, store)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return DemoResult(store=store, marker=marker, fetch=fetch)


def stale_reason(store: Path, registry: Path = REGISTRY) -> str | None:
    """Why the demo store at ``store`` should be rebuilt, or None when it is complete and current."""
    from cache import __version__

    try:
        marker = json.loads((Path(store) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "no demo store yet"
    expected = len(load_registry(registry))
    if marker.get("images") != expected:
        return f"it holds {marker.get('images')} of the {expected} registered images"
    if marker.get("medlens_version") != __version__:
        return f"it was built by MedLens {marker.get('medlens_version')}, this is {__version__}"
    return None


def _check_replaceable_store(store: Path) -> None:
    if store.exists() and any(store.iterdir()) and not (store / MARKER).is_file():
        raise DemoError(f"{store} holds a store the demo did not build (no {MARKER}); refusing to replace "
                        "it: pass another --store")


def _swap_in(staging: Path, store: Path) -> None:
    """Put the freshly built store in place of the old demo store (two renames)."""
    _check_replaceable_store(store)
    old = store.parent / f".{store.name}.old-{uuid.uuid4().hex[:8]}"
    if store.exists():
        os.rename(store, old)
    os.rename(staging, store)
    shutil.rmtree(old, ignore_errors=True)


def _ingest(argv: list[str]) -> None:
    from ingest.cli import main as ingest_main

    code = ingest_main(argv)
    if code != 0:
        raise DemoError(f"`python -m ingest {' '.join(argv)}` failed (exit {code}); see the message above")


def reset_folder(folder: Path) -> None:
    """Empty ``folder`` for a fresh layout, refusing a folder the demo did not make."""
    if folder.exists():
        if any(folder.iterdir()) and not (folder / LAYOUT_MARKER).is_file():
            raise DemoError(f"{folder} exists and was not made by the demo (no {LAYOUT_MARKER}); refusing "
                            "to clear it: pass another --demo-dir")
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    (folder / LAYOUT_MARKER).write_text("made by `python -m data demo`; rebuilt (deleted) on every run\n")


def layout_demo(demo_dir: Path, samples_dir: Path, fetched: list[Sample], packaged: list[Sample],
                log: Log = print) -> list[Sample]:
    """Fill ``demo_dir`` with the fetched samples and the packaged images; returns what was placed."""
    reset_folder(demo_dir)
    placed = []
    for sample in fetched:
        _link_or_copy(samples_dir / sample.file, demo_dir / sample.demo_path)
        placed.append(sample)
    for sample in packaged:
        if write_packaged(sample, demo_dir / sample.demo_path, log):
            placed.append(sample)
    copy_licenses(samples_dir, demo_dir)
    write_attribution(placed, demo_dir / "ATTRIBUTION.md", where=lambda s: s.demo_path)
    return placed


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copyfile(source, target)


def write_packaged(sample: Sample, target: Path, log: Log = print) -> bool:
    """Write a package-shipped image after checking its sha256; False (with a notice) when unusable."""
    import hashlib

    try:
        data = sample.package_bytes()
    except (OSError, ModuleNotFoundError) as exc:
        log(f"notice: {sample.file} left out: {sample.package} does not provide {sample.package_file} ({exc})")
        return False
    got = hashlib.sha256(data).hexdigest()
    if got != sample.sha256:
        log(f"notice: {sample.file} left out: {sample.package_file} has sha256 {got}, the registry says "
            f"{sample.sha256} (another {sample.package} version?)")
        return False
    if Path(sample.package_file).suffix.lower() == target.suffix.lower():
        atomic_write(target, data)
        return True
    from PIL import Image  # e.g. the retina JPEG -> PNG: the same pixels skimage.data.retina() returns

    out = io.BytesIO()
    Image.open(io.BytesIO(data)).convert("RGB").save(out, format=target.suffix.lstrip(".").upper())
    atomic_write(target, out.getvalue())
    return True


def demo_marker(store: Path, placed: list[Sample], fetch: FetchReport, *, offline: bool) -> dict[str, Any]:
    """The content of ``demo.json``: what the demo store holds, in plain words and counts."""
    from cache import __version__
    from cache.store import Store, utcnow

    con = Store(store).connect()
    labels = dict(con.execute("SELECT label, count(*) FROM results GROUP BY ALL ORDER BY ALL").fetchall())
    images = len(placed)  # every image placed, answered or not (an untrained baseline answers none)
    cells = Counter((s.modality, s.truth, s.source_id) for s in placed)
    packaged = sum(s.packaged for s in placed)
    return {
        "demo": True,
        "contents": describe(images, len(placed) - packaged, packaged, labels),
        "answered": sum(labels.values()),
        "images": images,
        "models": [DEMO_MODEL],
        "cloud_model_answers": 0,
        "labels": labels,
        "cells": [{"modality": m, "truth": t, "source": s, "images": n} for (m, t, s), n in sorted(cells.items())],
        "samples": {"already_present": len(fetch.present), "from_mirror": len(fetch.copied),
                    "downloaded": len(fetch.downloaded), "package_images": packaged,
                    "unavailable": len(fetch.unavailable)},
        "network": "offline" if offline else fetch.network_error,
        "registry": "data/samples.csv",
        "attribution": "ATTRIBUTION.md in the demo folder (data/demo/)",
        "created_at": utcnow().isoformat(),
        "medlens_version": __version__,
    }


def describe(images: int, fetched: int, packaged: int, labels: dict[str, int]) -> str:
    """One paragraph for the dashboard: what the demo holds and what it does not."""
    where = (f"{fetched} public sample images (see data/samples.csv for sources and licences) and "
             f"{packaged} real image(s) shipped by installed packages (scikit-image, pydicom-data)"
             if fetched else f"only {packaged} real image(s) shipped by installed packages (scikit-image, "
             "pydicom-data): the public samples could not be fetched (offline or no network, and no sample mirror)")
    text = (f"Demo store built by `python -m data demo`: {images} image(s), {where}, each answered once by "
            f"MedLens's offline reference detector {DEMO_MODEL} (a logistic regression on 12 image "
            "statistics, scored out-of-fold). No cloud model or multimodal LLM was called: nothing here is, "
            "or imitates, an answer from GPT, Gemini or any other LLM.")
    if not labels:
        text += (" With too few real and synthetic images per modality the baseline cannot train, so every "
                 "image is an error row 'baseline_untrained' (retried once more images are added): this "
                 "demo shows the pipeline, not a result.")
    return text + " Add real model answers with `python -m ingest run --model ...` on your own manifest."
