"""Several `ingest run`s on one S3 store (moto on 127.0.0.1) with a reader; a writer killed mid-run;
the dashboard on an S3 store. Each run is a separate process, as on separate machines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cache.store import Store
from tests.conftest import S3_TEST_SECRET
from tests.loopback import OpenAIServer
from tests.pipeline_helpers import ROOT, cli, make_dataset
from tests.test_s3_store import assert_no_secret, run_cli, store_texts

APP = ROOT / "dashboard" / "app.py"


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "data", per_cell=15, modalities=("fundus",))  # 30 images
    path = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(path), "--no-audit")
    return path


def _run_cmd(manifest: Path, server: OpenAIServer, store: str, concurrency: int = 4) -> list[str]:
    return [sys.executable, "-m", "ingest", "run", "--manifest", str(manifest), "--model",
            f"compat:llava@{server.base_url}", "--store", store, "--concurrency", str(concurrency),
            "--no-progress"]  # fmt: skip


def _spawn(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _ok_keys(store: Store) -> Counter:
    con = Store(store.root).connect()
    return Counter(k for (k,) in con.execute("SELECT key FROM responses WHERE status = 'ok'").fetchall())


class Reader(threading.Thread):
    """Reconnects again and again while the writers run: every snapshot must hold each key once."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url, self.stop, self.seen, self.errors = url, threading.Event(), [], []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                con = Store(self.url).connect()
                self.seen.append(
                    con.execute(
                        "SELECT count(*), count(DISTINCT key) FROM responses WHERE status = 'ok'"
                    ).fetchone()
                )
            except Exception as exc:  # noqa: BLE001 (recorded: the test asserts there is none)
                self.errors.append(repr(exc))
            time.sleep(0.05)


def test_three_runs_on_one_s3_store_pay_each_image_once(manifest: Path, s3_store: str) -> None:
    """Started together, as three machines would: 30 images, 30 requests, 30 rows, none twice; a
    reader sees every key at most once at every moment. The answer echoes the AWS secret: no object,
    log line or output holds it."""
    reader = Reader(s3_store)
    with OpenAIServer(delay=0.05, default=("ok", f"Real. A fundus photograph. {S3_TEST_SECRET}")) as server:
        reader.start()
        procs = [_spawn(_run_cmd(manifest, server, s3_store)) for _ in range(3)]
        outs = [p.communicate(timeout=300) for p in procs]
        reader.stop.set()
        reader.join(timeout=30)
        requests = len(server.requests)
    assert [p.returncode for p in procs] == [0, 0, 0], outs
    store = Store(s3_store)
    assert _ok_keys(store) == Counter({k: 1 for k in _ok_keys(store)}) and len(_ok_keys(store)) == 30
    assert requests == 30, f"{requests} requests for 30 images"
    assert not reader.errors, reader.errors[:3]
    assert len(reader.seen) >= 3 and all(total == distinct for total, distinct in reader.seen), reader.seen
    assert [t for t, _ in reader.seen] == sorted(t for t, _ in reader.seen), "rows only ever appear"
    assert store.storage.list("claims") == [] and store.storage.list("journal") == []
    assert store.storage.list("leases") == []
    assert (
        len(store.runs()) == 3 and sum(r["models"][next(iter(r["models"]))]["ok"] for r in store.runs()) == 30
    )
    assert_no_secret([o for pair in outs for o in pair] + store_texts(store))


def test_a_killed_writers_journal_is_folded_by_the_next_command(
    manifest: Path, s3_store: str, capsys
) -> None:
    """SIGKILL mid-run: what it journaled is folded in by the next `cache compact` (no call made),
    and the next run calls only the rest: paid twice at most the calls in flight (2)."""
    store = Store(s3_store)
    with OpenAIServer(delay=0.4, default=("ok", "Real.")) as server:
        proc = _spawn(_run_cmd(manifest, server, s3_store, concurrency=2))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(server.requests) < 6:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        paid_before = len(server.requests)
        journaled = [n for n in store.storage.list("journal", recursive=True)]
        assert journaled, "the killed run left journal groups behind"
        assert store.storage.list("claims"), "and its claims"
        code, out, err = run_cli("cache", "compact", "--store", s3_store, capsys=capsys)
        assert code == 0, err
        folded = sum(_ok_keys(store).values())
        assert folded >= paid_before - 2, f"{folded} rows kept of {paid_before} paid (2 in flight)"
        assert store.storage.list("journal") == [] and store.storage.list("claims") == []
        code, out, err = run_cli("ingest", "run", "--manifest", str(manifest), "--model",
                                 f"compat:llava@{server.base_url}", "--store", s3_store, "--no-progress",
                                 capsys=capsys)  # fmt: skip
        assert code == 0, err
        requests = len(server.requests)
    keys = _ok_keys(store)
    assert len(keys) == 30 and set(keys.values()) == {1}
    assert requests - 30 <= 2, f"{requests} requests for 30 images: paid twice more than the 2 in flight"


def test_the_dashboard_opens_an_s3_store(s3_store: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """The fixture store of the dashboard tests, copied object by object into the bucket: the overview
    shows what `cache metrics --json` says for the S3 store, and that equals the local store's."""
    from tests.dashboard_fixture import build_fixture_store

    fx = build_fixture_store(tmp_path / "local")
    store = Store(s3_store)
    for name in Store(fx.root).storage.list("", recursive=True):
        store.storage.put(name, Store(fx.root).storage.read(name))
    code, out, err = run_cli("cache", "metrics", "--json", "--store", s3_store, capsys=capsys)
    assert code == 0, err
    metrics = json.loads(out)
    assert metrics == json.loads(
        run_cli("cache", "metrics", "--json", "--store", str(fx.root), capsys=capsys)[1]
    )
    monkeypatch.setenv("MEDLENS_STORE", s3_store)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = next(d.value for d in at.dataframe if "Accuracy [95% CI]" in d.value.columns)
    assert len(table) == len(metrics) == 5
    for g in metrics:
        shown = table[(table["Model"] == g["model"]) & (table["Modality"] == g["modality"])
                      & (table["Prompt"] == g["prompt_id"])].iloc[0]  # fmt: skip
        assert (shown["n"], shown["Errors"]) == (g["n"], g["errors"])
        assert shown["Coverage"] == f"{g['coverage']:.3f}"
        low, high = g["accuracy_ci_low"], g["accuracy_ci_high"]
        assert shown["Accuracy [95% CI]"] == f"{g['accuracy']:.3f} [{low:.3f}, {high:.3f}]"
    from dashboard.pages import PAGES

    for script, *_ in PAGES[1:]:  # every page reads the S3 store
        at.switch_page(script)
        at.run()
        assert not at.exception, (script, [e.value for e in at.exception])
    at.switch_page("tabs/review.py")  # and the review page writes into it: a readings part appears
    at.run()
    at.text_input(key="review_name_input").input("Ann Reviewer").run()
    at.segmented_control(key="review_mode").set_value("by filter").run()  # every answer
    at.button(key="review_label_real").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(store.part_names("readings")) == 1
    readings = store.connect().execute("SELECT authority, label, made_by FROM readings").fetchall()
    assert readings == [("reviewer", "real", "Ann Reviewer")]
