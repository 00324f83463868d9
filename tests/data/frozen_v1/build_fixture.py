"""Builds the frozen schema-v1 store and bundle in this folder. Run ONCE, with the first release.

It was run at commit b37889b (the first release, store schema version 1) with
``.venv/bin/python tests/data/frozen_v1/build_fixture.py``; its output (``images/``,
``manifest.csv``, ``answers.csv``, ``store/``, ``bundle.zip``, ``expected_metrics.json``) is
committed and must never be rebuilt by a later version: tests check that every later MedLens
reads this store with the same metrics and that re-running the same study calls nothing.

The study: 12 small generated PNGs (fundus, 6 real + 6 synthetic), answered by
``openai:gpt-4o-mini`` (a loopback server scripted with real-looking answers, one refusal, one
hedge and one call that fails with HTTP 400 and stays an open error), by ``baseline:forensic``
and by hand-collected answers (``ingest import`` of ``answers.csv`` as ``import:chatgpt-web``).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))

from tests.loopback import OpenAIServer  # noqa: E402
from tests.pipeline_helpers import write_image  # noqa: E402

ANSWERS = {  # image index -> scripted answer of the loopback "gpt-4o-mini"
    0: "Real. This fundus photograph shows a healthy optic disc and normal vessel calibre.",
    1: "Synthetic. The vessel branching is too regular and the background texture is smooth.",
    2: "**Answer:** Real\n\n**Interpretation:** The macula appears normal, no exudates.",
    3: "I cannot determine whether this image is real or synthetic from the image alone.",
    4: "This image appears to be AI-generated: the optic disc margin is blurred unnaturally.",
    5: "Real. Normal fundus with clear disc margins.",
    6: "Synthetic. Repeating texture in the peripheral retina.",
    7: "Real.",
    8: "I'm sorry, but I can't help with analysing medical images.",
    9: "Synthetic. Vessels fade abruptly.",
    10: "Real. Mild tortuosity of vessels, otherwise unremarkable.",
}
FAIL_INDEX = 11  # answered with HTTP 400: an open error row


def main() -> None:
    for name in ("images", "store"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    rows = []
    for i in range(12):
        truth = "real" if i % 2 == 0 else "synthetic"
        rel = f"images/fundus/{truth}/img_{i:02d}.png"
        write_image(HERE / rel, seed=7000 + i, size=64, smooth=truth == "synthetic")
        rows.append({"image_path": rel, "modality": "fundus", "truth": truth,
                     "source": "" if truth == "real" else "toy_gan"})
    with (HERE / "manifest.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image_path", "modality", "truth", "source"])
        writer.writeheader()
        writer.writerows(rows)
    with (HERE / "answers.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image_path", "response", "model_version", "created_at"])
        writer.writeheader()
        for i, row in enumerate(rows[:6]):
            text = "Real" if i in (0, 3) else "Synthetic (AI-generated)"
            writer.writerow({"image_path": row["image_path"], "response": text, "model_version": "web-2024-05",
                             "created_at": f"2024-05-0{i + 1}T12:00:00Z"})
    store = HERE / "store"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OPENAI_API_KEY": "sk-frozenfixture-not-a-real-key-000"}
    with OpenAIServer() as server:
        env["OPENAI_BASE_URL"] = server.base_url
        answers = {}
        # The server answers in request order; the runner calls in manifest order with concurrency 1.
        for i in range(12):
            if i == FAIL_INDEX:
                server.push(("status", 400, {}, "Invalid image: could not decode"))
            elif ANSWERS[i].startswith("I'm sorry"):
                server.push(("refusal", ANSWERS[i]))
            else:
                server.push(("ok", ANSWERS[i]))
        run = [sys.executable, "-m", "ingest", "run", "--manifest", str(HERE / "manifest.csv"),
               "--model", "openai:gpt-4o-mini", "--store", str(store), "--concurrency", "1",
               "--no-progress", "--max-attempts", "1"]
        subprocess.run(run, cwd=ROOT, env=env, check=True)
        answers["requests"] = len(server.requests)
    subprocess.run([sys.executable, "-m", "ingest", "run", "--manifest", str(HERE / "manifest.csv"),
                    "--model", "baseline:forensic", "--store", str(store), "--no-progress"],
                   cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "-m", "ingest", "import", str(HERE / "answers.csv"), "--manifest",
                    str(HERE / "manifest.csv"), "--model", "chatgpt-web", "--store", str(store)],
                   cwd=ROOT, env=env, check=True)
    subprocess.run([sys.executable, "-m", "cache", "--store", str(store), "export", str(HERE / "bundle.zip")],
                   cwd=ROOT, env=env, check=True)
    metrics = subprocess.run([sys.executable, "-m", "cache", "--store", str(store), "metrics", "--json"],
                             cwd=ROOT, env=env, check=True, capture_output=True, text=True).stdout
    (HERE / "expected_metrics.json").write_text(metrics)
    (store / "prep_memo.parquet").unlink(missing_ok=True)  # a cache of absolute local paths: not a fixture
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
