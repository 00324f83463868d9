"""Generate a large synthetic store for the dashboard benchmark (not a test; no model is called).

Rows: 4 models x 2 modalities x (n_rows / 8) images, one prompt, ~420-character answers built from a
vocabulary of clinical and hedging phrases, 1% extra error rows. Written as parts of ``part_rows`` rows
through cache.store.Store.write_part, exactly like the runner does.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from cache.schema import ARROW_SCHEMA, SCHEMA_VERSION
from cache.store import Store

MODELS = ("openai:gpt-4o", "gemini:gemini-2.5-pro", "compat:llava-1.6@http://127.0.0.1:11434/v1",
          "baseline:stats")
MODALITIES = ("fundus", "chest_xray")
SOURCES = {"real": ("DRIVE", "KagglePneumonia", "MIMIC"), "synthetic": ("DALL-E 2", "Stable Diffusion", "StyleGAN2")}
LABELS = np.array(["real", "synthetic", "uncertain", "refused", "unparseable"])
PHRASES = (
    "The optic disc appears well defined with a normal cup-to-disc ratio.",
    "The macula shows no obvious exudates or haemorrhages.",
    "Retinal vessels are of normal calibre and course.",
    "Clear lung fields bilaterally without focal consolidation.",
    "The cardiac silhouette is within normal limits.",
    "Costophrenic angles are sharp; no pleural effusion.",
    "There may be subtle artefacts suggesting image synthesis.",
    "It is difficult to determine authenticity with certainty.",
    "This appears to be a medical image of adequate quality.",
    "The texture is unusually smooth, which might indicate generation.",
    "No pneumothorax is seen and the diaphragm is well outlined.",
    "Possibly a synthetic image given the symmetric noise pattern.",
)


def _texts(rng: np.random.Generator, n: int) -> list[str]:
    """~420-character texts: six or seven phrases drawn at random."""
    idx = rng.integers(0, len(PHRASES), size=(n, 7))
    return [" ".join(PHRASES[j] for j in row[: 6 + (row[0] % 2)]) for row in idx]


def _part(rng: np.random.Generator, start: int, count: int, n_images: int, run_id: str) -> pa.Table:
    ids = np.arange(start, start + count)
    model = ids % len(MODELS)
    image = ids // len(MODELS) % n_images
    modality = image % len(MODALITIES)
    truth_syn = (image // 2) % 2
    source = (image // 4) % 3
    status_error = rng.random(count) < 0.01
    label_idx = np.where(rng.random(count) < 0.75, truth_syn, rng.integers(0, 5, count))
    texts = _texts(rng, count)
    shas = [hashlib.sha256(f"img{i}".encode()).hexdigest() for i in image]
    keys = [hashlib.sha256(f"key{m}/{i}".encode()).hexdigest() for m, i in zip(model, image, strict=True)]
    truth = np.where(truth_syn == 1, "synthetic", "real")
    created = datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6 + ids * 1000
    ok = ~status_error
    columns = {
        "key": keys,
        "schema_version": np.full(count, SCHEMA_VERSION, dtype=np.int32),
        "run_id": [run_id] * count,
        "created_at": pa.array(created.astype("int64"), pa.timestamp("us", tz="UTC")),
        "provider": [MODELS[m].split(":")[0] for m in model],
        "model": [MODELS[m] for m in model],
        "model_version": [MODELS[m] + "-v1" for m in model],
        "params_json": ["{}"] * count,
        "prompt_id": ["paper"] * count,
        "prompt_sha256": ["0" * 64] * count,
        "prompt_text": ["Is this image real or synthetic? Then interpret it."] * count,
        "image_sha256": shas,
        "image_path": [f"{MODALITIES[m]}/{t}/{i}.png" for m, t, i in zip(modality, truth, image, strict=True)],
        "modality": [MODALITIES[m] for m in modality],
        "truth": truth.tolist(),
        "source": [SOURCES[t][s] for t, s in zip(truth, source, strict=True)],
        "repeat": np.zeros(count, dtype=np.int32),
        "status": np.where(ok, "ok", "error").tolist(),
        "error_type": np.where(ok, None, "rate_limit").tolist(),
        "error_message": np.where(ok, None, "429 Too Many Requests").tolist(),
        "attempts": np.ones(count, dtype=np.int32),
        "raw_text": [f"Answer: {LABELS[j]}. {t}" for j, t in zip(label_idx, texts, strict=True)],
        "label": np.where(ok, LABELS[label_idx], None).tolist(),
        "confidence": rng.random(count),
        "interpretation": [t if o else None for t, o in zip(texts, ok, strict=True)],
        "finish_reason": ["stop"] * count,
        "input_tokens": rng.integers(600, 1000, count),
        "output_tokens": rng.integers(80, 200, count),
        "cost_usd": rng.random(count) * 0.01,
        "latency_ms": rng.lognormal(7, 0.5, count),
        "task": ["detect"] * count,
        "label_rule": np.where(ok, "prose", None).tolist(),
        "parser_version": np.where(ok, "2", None).tolist(),
        "needs_review": np.zeros(count, dtype=bool),
    }
    # the columns a run fills; the others (reader ratings, batch ids, ...) are absent, as in a real store
    return pa.Table.from_pydict(columns, schema=pa.schema([f for f in ARROW_SCHEMA if f.name in columns]))


def generate_store(root: Path, n_rows: int = 1_000_000, part_rows: int = 50_000, seed: int = 7) -> int:
    """Write ``n_rows`` responses (1% of them errors) under ``root``; returns the number of parts."""
    rng = np.random.default_rng(seed)
    store = Store(root)
    n_images = n_rows // len(MODELS)
    parts = 0
    for start in range(0, n_rows, part_rows):
        store.write_part(_part(rng, start, min(part_rows, n_rows - start), n_images, f"bench-{parts:03d}"))
        parts += 1
    return parts
