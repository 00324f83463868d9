"""Helpers for pipeline tests: small on-the-fly datasets and subprocess CLI calls."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def write_image(path: Path, seed: int, size: int = 96, smooth: bool = False, fmt: str = "PNG") -> None:
    """A small random image: 'real' ones noisy, 'synthetic' ones smooth (upsampled)."""
    rng = np.random.default_rng(seed)
    if smooth:
        small = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((size, size), Image.BICUBIC)
    else:
        image = Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)


def make_dataset(root: Path, per_cell: int = 6, modalities=("fundus", "chest_xray")) -> Path:
    """root/<modality>/<real|synthetic>/[<source>/]img_i.png with per_cell images per cell."""
    for m_index, modality in enumerate(modalities):
        for truth in ("real", "synthetic"):
            for i in range(per_cell):
                source = "" if truth == "real" else ("gan" if i % 2 else "diffusion")
                folder = root / modality / truth / source if source else root / modality / truth
                write_image(folder / f"img_{i}.png", seed=m_index * 1000 + i + (500 if truth == "synthetic" else 0),
                            smooth=truth == "synthetic")
    return root


def cli(*args: str, env: dict | None = None, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `python -m <args>` in the repo with the test interpreter."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    return proc


def store_rows(store: Path, where: str = "true") -> list[dict]:
    from cache.store import Store

    parts = [str(p) for p in Store(store).part_paths()]  # the parts holding rows (see cache.store)
    if not parts:
        return []
    con = duckdb.connect()
    cur = con.execute(f"SELECT * FROM read_parquet($parts, union_by_name=true) WHERE {where}", {"parts": parts})
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def png_bytes(size=(8, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buf, format="PNG")
    return buf.getvalue()
