"""A store for the reader-study tests whose images are real PNG bytes (image_sha256 = sha256 of them).

Two modalities x two truths x 3 images = 12 images with their prepared bytes in ``prepared/``, plus two
images without (never offered to a reader). Two models answered every image: the offline baseline and
a cloud model whose answers carry text a reader must never see (ANSWER_MARK). Sources and file names
are distinctive, so a test can search the page for them.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cache.prepared import write_prepared
from cache.schema import response_key
from cache.store import Store

BASELINE = "baseline:forensic"
CLOUD = "openai:gpt-4o"
PROMPT = "Is this image real or synthetic?"
ANSWER_MARK = "Zebra-stripe artefacts near the hilum"
SOURCES = {
    ("fundus", "real"): "SrcAlphaRetina",
    ("fundus", "synthetic"): "GenBetaRetinaGAN",
    ("chest_xray", "real"): "SrcGammaCXR",
    ("chest_xray", "synthetic"): "GenDeltaDiffusion",
}
BASE_TIME = datetime(2026, 2, 1, 8, 0, tzinfo=UTC)


@dataclass
class ReaderStore:
    root: Path
    images: list[dict[str, Any]] = field(default_factory=list)  # image_sha256, modality, truth, source, path
    rows: list[dict[str, Any]] = field(default_factory=list)

    def truth(self, sha: str) -> str:
        return next(i["truth"] for i in self.images if i["image_sha256"] == sha)


def png(seed: int) -> bytes:
    """A small RGB PNG with seeded noise (distinct bytes per seed, no metadata)."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=(48, 64, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


def _row(image: dict[str, Any], model: str, label: str, minutes: int) -> dict[str, Any]:
    provider = model.split(":", 1)[0]
    cloud = model == CLOUD
    return {
        "key": response_key(
            provider=provider,
            model=model,
            params={},
            prompt_text=PROMPT,
            image_sha256=image["image_sha256"],
            repeat=0,
        ),
        "run_id": f"run-{provider}",
        "created_at": BASE_TIME + timedelta(minutes=minutes),
        "provider": provider,
        "model": model,
        "params_json": "{}",
        "prompt_id": "paper",
        "prompt_text": PROMPT,
        "prompt_sha256": hashlib.sha256(PROMPT.encode()).hexdigest(),
        "image_sha256": image["image_sha256"],
        "image_path": image["image_path"],
        "modality": image["modality"],
        "truth": image["truth"],
        "source": image["source"],
        "repeat": 0,
        "status": "ok",
        "attempts": 1,
        "label": label,
        "label_rule": "labelled_line" if cloud else "provider",
        "task": "detect",
        "raw_text": f"Answer: {label}\nInterpretation: {ANSWER_MARK} ({image['image_sha256'][:6]})"
        if cloud
        else "",
        "interpretation": f"{ANSWER_MARK} ({image['image_sha256'][:6]})" if cloud else None,
        "cost_usd": 0.01 if cloud else 0.0,
        "latency_ms": 900.0 if cloud else 5.0,
    }


def build_reader_store(root: Path) -> ReaderStore:
    """Write the store (the baseline is wrong on every third image, the cloud model on every other)."""
    fx = ReaderStore(root=Path(root))
    store = Store(fx.root)
    seed = 0
    for (modality, truth), source in SOURCES.items():
        for n in range(1, 5):  # the 4th of each cell has no prepared bytes in the store
            seed += 1
            data = png(seed)
            sha = hashlib.sha256(data).hexdigest()
            image = {
                "image_sha256": sha,
                "modality": modality,
                "truth": truth,
                "source": source,
                "image_path": f"{modality}/{truth}/{source}/case_{source.lower()}_{n:02d}.png",
                "prepared": n < 4,
            }
            if n < 4:
                write_prepared(store, data, "image/png")
            fx.images.append(image)
    for index, image in enumerate(fx.images):
        other = "synthetic" if image["truth"] == "real" else "real"
        baseline = image["truth"] if index % 3 else other
        cloud = image["truth"] if index % 2 else other
        fx.rows += [_row(image, BASELINE, baseline, index), _row(image, CLOUD, cloud, 30 + index)]
    store.append(fx.rows)
    return fx


def forbidden_texts(fx: ReaderStore) -> list[str]:
    """What a blinded reader's page must never contain: sources, paths, file names, sha256s, model names
    and model answers."""
    texts = {BASELINE, CLOUD, ANSWER_MARK}
    for image in fx.images:
        path = image["image_path"]
        texts |= {image["source"], path, Path(path).name, Path(path).stem, image["image_sha256"]}
    for row in fx.rows:
        texts |= {t for t in (row["raw_text"], row["interpretation"]) if t}
    return sorted(texts)
