"""A small store with hand-chosen answers, for the dashboard tests.

Two models x two modalities x 6 real + 6 synthetic images, prompt ``paper``, plus:

- model A on fundus also answers two images under prompt ``brief`` (r1 real -> real, s1 -> uncertain);
- an error that a later run fixed (A, fundus r1), two errors that stay open (A, fundus r7, two attempts;
  B, chest s7), and an ok row superseded by a later ok row of the same key (B, fundus r1);
- thumbnails for every image but fundus r7 (the gallery shows a grey placeholder for it);
- an answer (B, chest r1) with ``<script>``, HTML and a markdown link, to test escaping.

The expected numbers in tests/test_dashboard_pages.py are computed by hand from the tables below.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from PIL import Image

from cache.schema import response_key
from cache.store import Store

MODEL_A = "openai:gpt-4o"
MODEL_B = "gemini:gemini-2.5-pro"
PROMPTS = {"paper": "Is this image real or synthetic? Then interpret it.", "brief": "Real or synthetic?"}
INJECTION = "Normal lungs. <script>alert(1)</script> [link](http://evil.example) <img src=x onerror=alert(2)>"

# image id -> (truth, source); r = real, s = synthetic
FUNDUS_IMAGES = {
    **{f"r{i}": ("real", "DRIVE") for i in range(1, 8)},
    **{f"s{i}": ("synthetic", "StyleGAN2") for i in range(1, 4)},
    **{f"s{i}": ("synthetic", "RetinaDiffusion") for i in range(4, 7)},
}
CHEST_IMAGES = {
    **{f"r{i}": ("real", "KagglePneumonia") for i in range(1, 7)},
    **{f"s{i}": ("synthetic", "DALL-E 2") for i in range(1, 4)},
    **{f"s{i}": ("synthetic", "Stable Diffusion") for i in range(4, 8)},
}

# (model, modality) -> image id -> label (prompt paper, the latest ok row)
LABELS: dict[tuple[str, str], dict[str, str]] = {
    (MODEL_A, "fundus"): {
        "r1": "real", "r2": "real", "r3": "real", "r4": "synthetic", "r5": "uncertain", "r6": "refused",
        "s1": "synthetic", "s2": "synthetic", "s3": "synthetic", "s4": "synthetic", "s5": "real",
        "s6": "unparseable",
    },
    (MODEL_B, "fundus"): {
        "r1": "real", "r2": "real", "r3": "real", "r4": "real", "r5": "real", "r6": "synthetic",
        "s1": "synthetic", "s2": "synthetic", "s3": "real", "s4": "real", "s5": "real", "s6": "uncertain",
    },
    (MODEL_A, "chest_xray"): {
        "r1": "real", "r2": "real", "r3": "real", "r4": "real", "r5": "real", "r6": "real",
        "s1": "synthetic", "s2": "synthetic", "s3": "synthetic", "s4": "synthetic", "s5": "synthetic",
        "s6": "real",
    },
    (MODEL_B, "chest_xray"): {
        "r1": "real", "r2": "real", "r3": "real", "r4": "real", "r5": "synthetic", "r6": "synthetic",
        "s1": "synthetic", "s2": "real", "s3": "real", "s4": "real", "s5": "refused", "s6": "synthetic",
    },
}
BRIEF_LABELS = {"r1": "real", "s1": "uncertain"}  # model A, fundus, prompt brief

# Interpretations: model A is generic and hedges; model B names findings. Counted by hand in the tests.
GENERIC = "This appears to be a medical image. It may show normal anatomy; the quality is adequate."
FINDINGS = {
    "fundus": "The optic disc is sharp, the macula is flat and the vessels are of normal calibre.",
    "chest_xray": "Clear lung fields, sharp costophrenic angles and a normal cardiac silhouette.",
}
SPECIFIC_IMAGES = {"r1", "r2", "s1"}  # model A names findings (without hedging) only on these
BASE_TIME = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)


@dataclass
class FixtureStore:
    root: Path
    images: dict[tuple[str, str], str] = field(default_factory=dict)  # (modality, id) -> sha256
    rows: list[dict[str, Any]] = field(default_factory=list)

    def sha(self, modality: str, image_id: str) -> str:
        return self.images[(modality, image_id)]


def image_sha(modality: str, image_id: str) -> str:
    return hashlib.sha256(f"medlens-fixture/{modality}/{image_id}".encode()).hexdigest()


def thumbnail(truth: str, index: int) -> bytes:
    colour = (170, 60 + 10 * index, 40) if truth == "real" else (40, 90 + 10 * index, 170)
    out = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(out, format="JPEG", quality=80)
    return out.getvalue()


def interpretation(model: str, modality: str, image_id: str) -> str:
    if modality == "chest_xray" and image_id == "r1" and model == MODEL_B:
        return INJECTION
    if model == MODEL_B or image_id in SPECIFIC_IMAGES:
        return FINDINGS[modality]
    return GENERIC


def _row(fx: FixtureStore, *, model: str, modality: str, image_id: str, run_id: str, minutes: int,
         prompt_id: str = "paper", label: str | None = None, error: tuple[str, str] | None = None,
         text: str | None = None) -> dict[str, Any]:
    truth, source = (FUNDUS_IMAGES if modality == "fundus" else CHEST_IMAGES)[image_id]
    sha = fx.sha(modality, image_id)
    provider = model.split(":", 1)[0]
    is_a = model == MODEL_A
    interp = text if text is not None else interpretation(model, modality, image_id)
    row: dict[str, Any] = {
        "key": response_key(provider=provider, model=model, params={}, prompt_text=PROMPTS[prompt_id],
                            image_sha256=sha, repeat=0),
        "run_id": run_id,
        "created_at": BASE_TIME + timedelta(minutes=minutes),
        "provider": provider,
        "model": model,
        "model_version": "gpt-4o-2024-08-06" if is_a else "gemini-2.5-pro-001",
        "params_json": "{}",
        "prompt_id": prompt_id,
        "prompt_sha256": hashlib.sha256(PROMPTS[prompt_id].encode()).hexdigest(),
        "prompt_text": PROMPTS[prompt_id],
        "image_sha256": sha,
        "image_path": f"{modality}/{truth}/{source}/{image_id}.png",
        "modality": modality,
        "truth": truth,
        "source": source,
        "repeat": 0,
        "attempts": 1,
    }
    if error:
        row |= {"status": "error", "error_type": error[0], "error_message": error[1], "latency_ms": 30000.0}
        return row
    row |= {
        "status": "ok",
        "label": label,
        "confidence": 0.8,
        "raw_text": f"Answer: {label}\nInterpretation: {interp}",
        "interpretation": "" if label == "refused" else interp,
        "finish_reason": "content_filter" if label == "refused" else "stop",
        "input_tokens": 800 if is_a else 700,
        "output_tokens": 100 if is_a else 150,
        "cost_usd": 0.01 if is_a else 0.005,
        "latency_ms": 1200.0 if is_a else 2000.0,
    }
    return row


def build_fixture_store(root: Path) -> FixtureStore:
    """Write the fixture store under ``root`` (three parts, thumbnails, two run records)."""
    fx = FixtureStore(root=Path(root))
    store = Store(fx.root)
    for modality, images in (("fundus", FUNDUS_IMAGES), ("chest_xray", CHEST_IMAGES)):
        for index, (image_id, (truth, _source)) in enumerate(images.items()):
            fx.images[(modality, image_id)] = image_sha(modality, image_id)
            if (modality, image_id) != ("fundus", "r7"):
                store.write_thumb(fx.sha(modality, image_id), thumbnail(truth, index))

    early = [  # run-0: an error later fixed, the first attempt of an open error, a superseded answer
        _row(fx, model=MODEL_A, modality="fundus", image_id="r1", run_id="run-0", minutes=0,
             error=("timeout", "request timed out after 60 s")),
        _row(fx, model=MODEL_A, modality="fundus", image_id="r7", run_id="run-0", minutes=1,
             error=("timeout", "request timed out after 60 s")),
        _row(fx, model=MODEL_B, modality="fundus", image_id="r1", run_id="run-0", minutes=2, label="synthetic"),
    ]
    run_a, run_b = [], []
    for (model, modality), labels in LABELS.items():
        target = run_a if model == MODEL_A else run_b
        for offset, (image_id, label) in enumerate(labels.items()):
            target.append(_row(fx, model=model, modality=modality, image_id=image_id,
                               run_id="run-a" if model == MODEL_A else "run-b",
                               minutes=60 + offset, label=label))
    for image_id, label in BRIEF_LABELS.items():
        run_a.append(_row(fx, model=MODEL_A, modality="fundus", image_id=image_id, run_id="run-a",
                          minutes=90, prompt_id="brief", label=label))
    run_a.append(_row(fx, model=MODEL_A, modality="fundus", image_id="r7", run_id="run-a", minutes=95,
                      error=("rate_limit", "429 Too Many Requests: retry after 20 s")))
    run_b.append(_row(fx, model=MODEL_B, modality="chest_xray", image_id="s7", run_id="run-b", minutes=96,
                      error=("server_error", "500 Internal Server Error")))
    for part in (early, run_a, run_b):
        store.append(part)
        fx.rows.extend(part)

    for run_id, model, start in (("run-a", MODEL_A, 60), ("run-b", MODEL_B, 60)):
        store.write_run(run_id, {
            "run_id": run_id,
            "started_at": (BASE_TIME + timedelta(minutes=start)).isoformat(),
            "finished_at": (BASE_TIME + timedelta(minutes=start + 40)).isoformat(),
            "models": [model],
            "prompt_id": "paper",
            "summary": {"ok": sum(r["status"] == "ok" for r in (run_a if run_id == "run-a" else run_b))},
        })
    return fx
