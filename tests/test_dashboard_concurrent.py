"""The dashboard keeps working while a running ingest appends to the same store (and while it is
compacted): a thread writes parts with cache.store.Store.append while AppTest reruns every page."""

from __future__ import annotations

import itertools
import threading
import time
from datetime import timedelta
from pathlib import Path

from streamlit.testing.v1 import AppTest

from cache.schema import response_key
from cache.store import Store
from tests.dashboard_fixture import MODEL_A, PROMPTS, build_fixture_store

APP = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"
NEW_MODEL = "compat:llava@http://127.0.0.1:11434/v1"
PARTS = 16
PAGES = ("overview", "gallery", "confusion", "runs", "quality", "compare")


def new_rows(fx, part: int) -> list[dict]:
    """One part as `ingest run` would write it: the new model answers every fundus image once more."""
    template = [r for r in fx.rows if r["model"] == MODEL_A and r["status"] == "ok" and r["prompt_id"] == "paper"
                and r["modality"] == "fundus"]
    rows = []
    for index, row in enumerate(template):
        label = "real" if index % 2 else "synthetic"
        rows.append(row | {
            "key": response_key(provider="compat", model=NEW_MODEL, params={}, prompt_text=PROMPTS["paper"],
                                image_sha256=row["image_sha256"], repeat=part),
            "model": NEW_MODEL, "provider": "compat", "repeat": part, "run_id": "run-live", "label": label,
            "created_at": row["created_at"] + timedelta(days=1, seconds=part),
        })
    return rows


def new_model_n(at: AppTest) -> int:
    frames = [d.value for d in at.dataframe if "Accuracy [95% CI]" in d.value.columns]
    df = frames[0]
    return int(df[df["Model"] == NEW_MODEL]["n"].sum())


def test_pages_rerun_while_parts_are_appended_and_compacted(tmp_path, monkeypatch):
    fx = build_fixture_store(tmp_path / "store")
    monkeypatch.setenv("MEDLENS_STORE", str(fx.root))
    store = Store(fx.root)
    per_part = len(new_rows(fx, 0))
    failures: list[BaseException] = []

    def ingest() -> None:
        try:
            for part in range(PARTS):
                store.append(new_rows(fx, part))
                if part == PARTS // 2:
                    store.compact()  # merged file first, then the old parts go: readers must not notice
                time.sleep(0.15)
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception
    writer = threading.Thread(target=ingest)
    writer.start()
    seen, runs = [], 0
    for page in itertools.cycle(PAGES):
        if not writer.is_alive() and runs >= len(PAGES):
            break
        at.switch_page(f"tabs/{page}.py").run()
        runs += 1
        assert not at.exception, (page, [e.value for e in at.exception])
        if page == "overview":
            seen.append(new_model_n(at))
        if runs % 5 == 0:
            at.button(key="sidebar_refresh").click().run()  # reconnect while parts are being written
            assert not at.exception
    writer.join()
    assert not failures, failures
    assert runs >= len(PAGES) and seen == sorted(seen)  # never goes backwards, even across compaction
    at.switch_page("tabs/overview.py").run()
    assert new_model_n(at) == PARTS * per_part == 12 * PARTS  # every appended answer, no rerun needed
