"""Re-reading without paying: `cache reparse` re-reads stored answers with the current parser, the
metrics follow the new readings, no model is called, and a second run changes nothing. Readings of
higher authority (judge, reviewer) outrank the parser's."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cache.metrics import group_metrics
from cache.parse import PARSER_VERSION
from cache.schema import response_key
from cache.store import Store
from tests.loopback import OpenAIServer
from tests.pipeline_helpers import cli

T0 = datetime(2025, 3, 1, tzinfo=UTC)


def answer(i: int, text: str | None, stored: str, truth: str, **extra) -> dict:
    """An ok answer of openai:gpt-4o as an older parser read it (label ``stored``, parser version 0)."""
    sha = f"{i:064x}"
    return {"key": response_key(provider="openai", model="openai:gpt-4o", params={}, prompt_text="p",
                                image_sha256=sha, repeat=0),
            "run_id": "old-run", "created_at": T0 + timedelta(seconds=i), "provider": "openai",
            "model": "openai:gpt-4o", "prompt_id": "paper", "prompt_text": "p", "image_sha256": sha,
            "image_path": f"img_{i}.png", "modality": "fundus", "truth": truth, "repeat": 0, "status": "ok",
            "raw_text": text, "label": stored, "finish_reason": "stop", "parser_version": "0",
            "label_rule": "prose", **extra}


def _accuracy(store: Path) -> tuple[float, int]:
    (group,) = [g for g in group_metrics(Store(store).connect()) if g["model"] == "openai:gpt-4o"]
    return group["accuracy"], group["uncertain"]


def test_reparse_changes_the_metrics_without_calling_a_model(tmp_path: Path) -> None:
    store = tmp_path / "store"
    rows = [answer(0, "Real.", "uncertain", "real"),  # the older parser misread these two
            answer(1, "Synthetic.", "uncertain", "synthetic"),
            answer(2, "Real.", "real", "real"),
            answer(3, "Real.", "real", "synthetic")]
    Store(store).append(rows)
    assert _accuracy(store) == (0.25, 2)
    with OpenAIServer() as server:  # where a model call would go, if reparse made one
        env = {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-reparse-test-00000000000000000"}
        out = cli("cache", "--store", str(store), "reparse", "--no-progress", env=env).stdout
        assert server.requests == []
    assert "re-read 4 stored answer(s)" in out and "uncertain -> real: 1" in out
    assert _accuracy(store) == (0.75, 0)
    con = Store(store).connect()
    by_key = {r[0]: r[1:] for r in con.execute(
        "SELECT image_path, label, stored_label, label_source, label_by, label_rule FROM results").fetchall()}
    assert by_key["img_0.png"] == ("real", "uncertain", "parser", f"parser-{PARSER_VERSION}", "opening")
    # the answer itself is a fact: its stored row is unchanged
    assert con.execute("SELECT label FROM responses WHERE image_path = 'img_0.png'").fetchall() == [("uncertain",)]
    parts = sorted((store / "readings").glob("*.parquet"))
    again = cli("cache", "--store", str(store), "reparse", "--no-progress").stdout
    assert "wrote 0 new reading(s)" in again
    assert sorted((store / "readings").glob("*.parquet")) == parts, "a second run writes nothing"
    assert _accuracy(store) == (0.75, 0)
    record = json.loads(next(p for p in (store / "runs").glob("reparse-*.json")).read_text())
    assert record["parser_version"] == PARSER_VERSION and record["answers"] == 4


def test_reparse_keeps_local_and_v1_refusal_labels(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    baseline = answer(5, "Synthetic (p=0.71): noise residual lag-1 correlation 0.42", "synthetic", "real",
                      provider="baseline", model="baseline:forensic", label_rule=None, parser_version=None)
    v1_refusal = answer(6, None, "refused", "real", label_rule=None, parser_version=None)
    store.append([baseline, v1_refusal])
    cli("cache", "--store", str(store.root), "reparse", "--no-progress")
    labels = dict(store.connect().execute("SELECT model, label FROM results").fetchall())
    assert labels == {"baseline:forensic": "synthetic", "openai:gpt-4o": "refused"}


def test_judge_and_reviewer_readings_outrank_the_parser(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    first = answer(7, "Hard to say; it could be either.", "uncertain", "synthetic")
    store.append([first])
    judge = {**answer(8, '{"label": "synthetic"}', "synthetic", "synthetic"), "task": "judge",
             "model": "openai:gpt-4o-mini", "target_key": first["key"], "created_at": T0 + timedelta(days=1)}
    judge["key"] = "judge-call-key"
    store.append([judge])
    con = store.connect()
    row = con.execute("SELECT label, label_source, label_by, parser_label, judge_label, needs_review "
                      "FROM results").fetchone()
    assert row == ("synthetic", "judge", "openai:gpt-4o-mini", "uncertain", "synthetic", True)
    assert con.execute("SELECT count(*) FROM results").fetchone() == (1,), "a judge row is not an answer"
    store.append([{"reading_id": "r1", "key": first["key"], "created_at": T0 + timedelta(days=2),
                   "authority": "reviewer", "label": "real", "made_by": "dr-ada", "note": "looks real to me"}],
                 "readings")
    row = store.connect().execute("SELECT label, label_source, label_by, reviewer_label, needs_review "
                                  "FROM results").fetchone()
    assert row == ("real", "reviewer", "dr-ada", "real", False)
    # a newer parser reading never overrides the reviewer
    cli("cache", "--store", str(store.root), "reparse", "--no-progress")
    assert store.connect().execute("SELECT label, label_source FROM results").fetchone() == ("real", "reviewer")
