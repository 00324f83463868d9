"""`python -m cache methods`: the methods paragraph states models, versions, prompts, images, dates, scoring."""

from __future__ import annotations

from pathlib import Path

from cache.methods import image_counts, methods_text
from cache.metrics import Filters
from cache.store import Store
from tests.dashboard_fixture import MODEL_A, MODEL_B, build_fixture_store
from tests.pipeline_helpers import cli


def _flat(text: str) -> str:
    return " ".join(text.split())


def test_methods_paragraph_from_the_fixture(tmp_path: Path) -> None:
    build_fixture_store(tmp_path / "store")
    out = cli("cache", "methods", "--store", str(tmp_path / "store")).stdout
    text = _flat(out)
    assert "We asked 2 models" in text
    assert f"{MODEL_A} (version reported: gpt-4o-2024-08-06" in text
    assert f"{MODEL_B} (version reported: gemini-2.5-pro-001" in text
    assert "once with the prompts \"brief\" (sha256 49a37669fce4), \"paper\" (sha256 400f3ab166d4)" in text
    assert ("The image set comprised 26 images: chest xray: 6 real (KagglePneumonia 6) and 7 synthetic "
            "(DALL-E 2 3, Stable Diffusion 4); fundus: 7 real (DRIVE 7) and 6 synthetic (RetinaDiffusion 3, "
            "StyleGAN2 3)") in text
    assert "between 2026-01-10 and 2026-01-10 (UTC)" in text
    assert "2 calls that still failed after retries are reported separately and excluded" in text
    for phrase in ("Accuracy counts abstentions (uncertain, refused, unparseable) as wrong", "coverage is the share",
                   "Wilson score intervals", "McNemar's exact test", "Cohen's kappa"):
        assert phrase in text, phrase
    assert "\n    Is this image real or synthetic? Then interpret it." in out, "the prompt text, verbatim"
    assert "How images were prepared is not recorded" in text


def test_methods_follow_filters_and_run_records(tmp_path: Path) -> None:
    build_fixture_store(tmp_path / "store")
    store = Store(tmp_path / "store")
    record = next(r for r in store.runs() if r["run_id"] == "run-a")
    store.write_run("run-a", record | {"prep": {"format": "png", "max_side": 1024, "color_mode": "RGB"}})
    filters = Filters(model=[MODEL_A], modality=["fundus"], prompt_id=["paper"])
    text = _flat(methods_text(store.connect(), filters, runs=store.runs()))
    assert "We asked 1 model whether" in text and MODEL_B not in text
    assert "resized to at most 1024 px on the longest side and re-encoded as PNG without metadata" in text
    assert "fundus: 7 real (DRIVE 7) and 6 synthetic" in text and "chest xray" not in text
    assert "Real or synthetic?" not in text, "the other prompt is left out"
    assert image_counts(store.connect(), filters)[0] == {"modality": "fundus", "truth": "real", "source": "DRIVE",
                                                         "images": 7}
    empty = methods_text(store.connect(), Filters(model=["nobody"]))
    assert empty == "No responses match the selection: nothing to describe."


def test_methods_describe_square_preparation(tmp_path: Path) -> None:
    build_fixture_store(tmp_path / "store")
    store = Store(tmp_path / "store")
    record = next(r for r in store.runs() if r["run_id"] == "run-a")
    store.write_run("run-a", record | {"prep": {"format": "png", "max_side": 512, "color_mode": "RGB",
                                                "square": True}})
    text = _flat(methods_text(store.connect(), Filters(model=[MODEL_A]), runs=store.runs()))
    assert ("padded to a square on black (centred) and resized to exactly 512 x 512 px (smaller images "
            "upscaled) and re-encoded as PNG without metadata") in text
    assert "at most 512 px" not in text


def test_methods_and_report_say_who_set_the_labels(tmp_path) -> None:
    """'N of M labels set by a reviewer ...' in the methods text and the report, from the readings."""
    import shutil
    from datetime import UTC, datetime

    from cache.methods import methods_text
    from cache.report import build_report
    from cache.store import Store
    from tests.pipeline_helpers import ROOT

    shutil.copytree(ROOT / "tests" / "data" / "frozen_v1" / "store", tmp_path / "store")
    store = Store(tmp_path / "store")
    (key,) = store.connect().execute("SELECT key FROM results WHERE model = 'openai:gpt-4o-mini' "
                                     "ORDER BY key LIMIT 1").fetchone()
    store.append([{"reading_id": "r-1", "key": key, "created_at": datetime.now(UTC), "authority": "reviewer",
                   "label": "real", "made_by": "dr-ada"}], "readings")
    sentence = ("1 of 29 labels set by a reviewer, 12 decided by a local detector, the other 16 read from the "
                "answer by the parser.")
    text = " ".join(methods_text(store.connect(), runs=store.runs()).split())
    assert sentence in text and "a human reviewer's outranks both" in text
    assert sentence in " ".join(build_report(store)[0].split())
