"""Runner behaviour through the CLI against loopback servers: budget, interruption, isolation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.loopback import OpenAIServer
from tests.pipeline_helpers import ROOT, cli, make_dataset, store_rows


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "data", per_cell=10, modalities=("fundus",))
    path = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(path), "--no-audit")
    return path


def test_budget_stops_scheduling_and_says_so(manifest: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with OpenAIServer(default=("ok", "Real. Normal fundus.")) as server:
        env = {"OPENAI_API_KEY": "sk-test-budget", "OPENAI_BASE_URL": server.base_url}
        args = ("ingest", "run", "--manifest", str(manifest), "--model", "openai:gpt-4o", "--store",
                str(store), "--concurrency", "1", "--no-progress")
        dry = cli(*args, "--dry-run", env=env).stdout
        estimate = float(dry.split("estimated total: $")[1].split()[0].replace(",", ""))
        assert estimate > 0
        out = cli(*args, "--budget", "0.02", env=env).stdout
        rows = store_rows(store)
        assert 1 <= len(rows) < 20
        spent = sum(r["cost_usd"] for r in rows)
        assert 0 < spent <= 0.02
        assert f"budget reached: {20 - len(rows)} call(s) not made" in out
        assert len(server.requests) == len(rows)
        cli(*args, env=env)  # without a budget the rest is called; nothing is called twice
        assert len(store_rows(store)) == 20 and len(server.requests) == 20


def test_sigterm_flushes_and_tells_how_to_resume(manifest: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with OpenAIServer(delay=0.3, default=("ok", "Synthetic.")) as server:
        cmd = [sys.executable, "-m", "ingest", "run", "--manifest", str(manifest), "--model",
               f"compat:m@{server.base_url}", "--store", str(store), "--concurrency", "1", "--no-progress"]
        proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while len(server.requests) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, _err = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert "run the same command again to resume" in out
        saved = store_rows(store)
        assert 2 <= len(saved) < 20, "answers finished before the signal are saved"
        assert len(server.requests) == len(saved), "calls in flight finish and are stored: none paid twice"
        cli(*cmd[2:])
        assert len(store_rows(store)) == 20


def test_a_bug_in_parsing_one_answer_does_not_end_the_run(manifest: Path, tmp_path: Path, monkeypatch) -> None:
    import asyncio

    from cache import parse as parse_mod
    from cache.store import Store
    from ingest import runner as runner_mod
    from ingest.images import PrepOptions
    from ingest.manifest import read_manifest
    from ingest.prompts import load_prompt
    from ingest.providers.base import ProviderOptions, create_provider, parse_spec

    real_parse = parse_mod.parse_answer

    def flaky(text, finish_reason=None, refusal=None):
        if text == "BOOM":
            raise RuntimeError("parser bug")
        return real_parse(text, finish_reason, refusal)

    monkeypatch.setattr(parse_mod, "parse_answer", flaky)
    with OpenAIServer(default=("ok", "Real.")) as server:
        server.push(("ok", "BOOM"))
        provider = create_provider(parse_spec(f"compat:m@{server.base_url}"), ProviderOptions(concurrency=1))
        runner = runner_mod.Runner(
            store=Store(tmp_path / "store"), rows=read_manifest(manifest), manifest_dir=manifest.parent,
            providers=[provider], prompt=load_prompt("paper"), prep=PrepOptions(), progress=False)
        result = asyncio.run(runner.run())
    rows = store_rows(tmp_path / "store")
    assert len(rows) == 20 and not result.interrupted
    bad = [r for r in rows if r["status"] == "error"]
    assert len(bad) == 1 and bad[0]["error_type"] == "internal_error" and "parser bug" in bad[0]["error_message"]


def test_untrained_baseline_is_retried_once_more_images_arrive(manifest: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    args = ("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic", "--store", str(store),
            "--no-progress")
    out = cli(*args, "--limit", "6").stdout  # 6 real images: nothing to train on
    assert "error baseline_untrained: 6" in out
    cli(*args)
    ok = store_rows(store, "status = 'ok'")
    assert len(ok) == 20 and {r["label"] for r in ok} <= {"real", "synthetic"}, "no cached 'uncertain'"


def test_duplicate_images_conflicting_truth_exit_2_and_same_truth_warns(manifest: Path, tmp_path: Path) -> None:
    import shutil

    data = manifest.parent / "data" / "fundus"
    first_real = sorted((data / "real").glob("*.png"))[0]
    shutil.copy(first_real, data / "real" / "copy.png")
    same = tmp_path / "same.csv"
    cli("ingest", "scan", str(manifest.parent / "data"), "--out", str(same), "--no-audit")
    out = cli("ingest", "run", "--manifest", str(same), "--model", "baseline:forensic", "--store",
              str(tmp_path / "s1"), "--no-progress").stdout
    assert "warning: 1 manifest row(s) repeat an image already listed" in out
    assert len(store_rows(tmp_path / "s1")) == 20
    (data / "real" / "copy.png").unlink()
    (data / "synthetic" / "dup").mkdir()
    shutil.copy(first_real, data / "synthetic" / "dup" / "copy.png")
    conflict = tmp_path / "conflict.csv"
    cli("ingest", "scan", str(manifest.parent / "data"), "--out", str(conflict), "--no-audit")
    proc = cli("ingest", "run", "--manifest", str(conflict), "--model", "baseline:forensic", "--store",
               str(tmp_path / "s2"), "--no-progress", check=False)
    assert proc.returncode == 2 and "listed with different truth" in proc.stderr and "copy.png" in proc.stderr


def test_a_changed_truth_for_cached_answers_is_reported(manifest: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    args = ("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic", "--store", str(store),
            "--no-progress")
    cli(*args)
    lines = manifest.read_text().splitlines()
    lines[1] = lines[1].replace(",real,", ",synthetic,")
    manifest.write_text("\n".join(lines) + "\n")
    out = cli(*args).stdout
    assert "1 cached answer(s) were stored with a different truth/modality/source" in out


def test_bad_option_values_and_budget_for_unpriced_models_exit_2(manifest: Path, tmp_path: Path) -> None:
    base = ("ingest", "run", "--manifest", str(manifest), "--store", str(tmp_path / "s"), "--no-progress")
    for extra, message in ((("--model", "baseline:forensic", "--concurrency", "-1"), "--concurrency must be"),
                           (("--model", "baseline:forensic", "--rpm", "-5"), "--rpm must be positive"),
                           (("--model", "baseline:forensic", "--max-side", "0"), "--max-side must be"),
                           (("--model", "openai:gpt-4-turbo-unpriced", "--budget", "1"), "unpriced model")):
        proc = cli(*base, *extra, check=False, env={"OPENAI_API_KEY": "sk-test"})
        assert proc.returncode == 2 and message in proc.stderr, (extra, proc.stderr)
    assert not (tmp_path / "s" / "responses").exists()


def test_import_with_the_runs_preparation_pairs_with_it(manifest: Path, tmp_path: Path) -> None:
    import json

    from cache.metrics import compare_models
    from cache.store import Store

    store = tmp_path / "store"
    cli("ingest", "run", "--manifest", str(manifest), "--model", "baseline:forensic", "--square",
        "--max-side", "64", "--store", str(store), "--no-progress")
    paths = [ln.split(",")[0] for ln in manifest.read_text().splitlines()[1:4]]
    answers = tmp_path / "a.jsonl"
    answers.write_text("\n".join(json.dumps({"image_path": p, "response": "Real.\u2028Normal disc."},
                                            ensure_ascii=False) for p in paths) + "\n")
    cli("ingest", "import", str(answers), "--manifest", str(manifest), "--model", "web", "--square",
        "--max-side", "64", "--store", str(store))
    result = compare_models(Store(store).connect(), "baseline:forensic", "import:web")
    assert result["n_pairs"] == 3
