"""A small hand-made reader study: 12 fundus images, three readers under two conditions, two models.

Images: s1..s6 synthetic, r1..r6 real. Readers answer every image under prompt ``unaided`` and
again under ``aided`` (the classic MRMC: two conditions). ``openai:gpt-4o`` (prompt ``json``)
answers 11 images (not r6) twice (repeats 0 and 1) with a stated confidence; ``baseline:px``
(prompt ``paper``) answers all 12 with labels only.
"""

from __future__ import annotations

import pandas as pd

SYNTHETIC = [f"s{i}" for i in range(1, 7)]
REAL = [f"r{i}" for i in range(1, 7)]
IMAGES = SYNTHETIC + REAL
TRUTH = {img: "synthetic" if img.startswith("s") else "real" for img in IMAGES}
GENERIC = "Fundus photograph with optic disc, macula and vessels, no abnormality."

#: unaided ratings, images in IMAGES order; a reader's button is "synthetic" when rating >= 3
UNAIDED = {
    "reader:ann": [5, 5, 4, 4, 2, 3, 1, 1, 2, 2, 4, 2],
    "reader:bob": [5, 4, 4, 3, 2, 2, 1, 2, 2, 2, 4, 5],
    "reader:cat": [4, 4, 4, 4, 4, 4, 2, 2, 2, 4, 4, 4],
}
# hand counts (unaided): ann right on 5/6 synthetic (s5 said real) and 5/6 real (r5 said
# synthetic): 10/12; bob 4/6 and 4/6: 8/12; cat 6/6 and 3/6: 9/12
HAND = {"reader:ann": (10, 5, 5), "reader:bob": (8, 4, 4), "reader:cat": (9, 6, 3)}

#: gpt-4o, repeat 0: (label, confidence) per image (r6 not answered)
GPT_REPEAT0 = {
    "s1": ("synthetic", 0.9),
    "s2": ("synthetic", 0.8),
    "s3": ("synthetic", 0.7),
    "s4": ("real", 0.6),
    "s5": ("synthetic", 0.95),
    "s6": ("uncertain", None),
    "r1": ("real", 0.9),
    "r2": ("real", 0.8),
    "r3": ("synthetic", 0.7),
    "r4": ("real", 0.6),
    "r5": ("real", 0.55),
}
#: repeat 1 changes two labels: s4 -> synthetic 0.6, r3 -> real 0.6
GPT_REPEAT1 = GPT_REPEAT0 | {"s4": ("synthetic", 0.6), "r3": ("real", 0.6)}
#: P(synthetic) of repeat 0 (cache.roc.answer_score), written out by hand
GPT_SCORES = {
    "s1": 0.9,
    "s2": 0.8,
    "s3": 0.7,
    "s4": 0.4,
    "s5": 0.95,
    "s6": 0.5,
    "r1": 0.1,
    "r2": 0.2,
    "r3": 0.7,
    "r4": 0.4,
    "r5": 0.45,
}
BASELINE = {img: ("synthetic" if img in ("s1", "s2", "s3", "r1") else "real") for img in IMAGES}


def aided(rating: int, truth: str) -> int:
    """The aided condition: one step nearer the truth (bounded to 1-5)."""
    return min(5, rating + 1) if truth == "synthetic" else max(1, rating - 1)


def reader_label(rating: int) -> str:
    return "synthetic" if rating >= 3 else "real"


def study_rows() -> list[dict]:
    """Rows with the columns the results relation needs (plus provider/prompt/task)."""
    rows = []
    for reader, ratings in UNAIDED.items():
        for img, rating in zip(IMAGES, ratings, strict=True):
            for prompt, value in (("unaided", rating), ("aided", aided(rating, TRUTH[img]))):
                rows.append(
                    {
                        "model": reader,
                        "provider": "reader",
                        "prompt_id": prompt,
                        "image_sha256": img,
                        "label": reader_label(value),
                        "confidence": None,
                        "rating": value,
                        "interpretation": None,
                        "repeat": 0,
                    }
                )
    for repeat, answers in ((0, GPT_REPEAT0), (1, GPT_REPEAT1)):
        for img, (label, conf) in answers.items():
            rows.append(
                {
                    "model": "openai:gpt-4o",
                    "provider": "openai",
                    "prompt_id": "json",
                    "image_sha256": img,
                    "label": label,
                    "confidence": conf,
                    "rating": None,
                    "interpretation": GENERIC,
                    "repeat": repeat,
                }
            )
    for img, label in BASELINE.items():
        rows.append(
            {
                "model": "baseline:px",
                "provider": "baseline",
                "prompt_id": "paper",
                "image_sha256": img,
                "label": label,
                "confidence": None,
                "rating": None,
                "interpretation": None,
                "repeat": 0,
            }
        )
    for row in rows:
        row |= {"modality": "fundus", "truth": TRUTH[row["image_sha256"]]}
    return rows


def study_frame() -> pd.DataFrame:
    frame = pd.DataFrame(study_rows())
    frame["rating"] = frame["rating"].astype("Int32")
    return frame
