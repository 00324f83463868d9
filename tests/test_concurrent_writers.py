"""Several writers on one store: no key paid twice, no row doubled by compaction, a clear busy message."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cache.store import Store, rows_to_table
from tests.loopback import OpenAIServer
from tests.pipeline_helpers import ROOT, cli, make_dataset, store_rows

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(i: int, **extra) -> dict:
    return {
        "key": f"{i:064x}",
        "run_id": "r",
        "created_at": T0 + timedelta(seconds=i),
        "provider": "compat",
        "model": "compat:m",
        "prompt_id": "paper",
        "image_sha256": f"{i:064x}",
        "modality": "fundus",
        "truth": "real",
        "status": "ok",
        "label": "real",
        "repeat": 0,
        "cost_usd": 0.01,
        **extra,
    }


def dead_owner(store: Store, command: str = "ingest run") -> str:
    """A lease record of a process that ran on this machine and is gone (a pid that has exited)."""
    from cache.leases import machine_token, new_owner_id

    proc = subprocess.Popen(["true"])
    proc.wait()
    owner_id = new_owner_id()
    record = {
        "owner_id": owner_id,
        "pid": proc.pid,
        "proc_start": "1",
        "host": socket.gethostname(),
        "machine": machine_token(),
        "command": command,
        "started_at": "2026-11-01T00:00:00+00:00",
        "heartbeat_at": 0,
    }
    store.storage.put(f"leases/{owner_id}.json", json.dumps(record).encode())
    return owner_id


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "data", per_cell=20, modalities=("fundus",))  # 40 images
    path = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(path), "--no-audit")
    return path


def test_two_runs_started_together_pay_each_image_once(manifest: Path, tmp_path: Path) -> None:
    """Failed before the claims: 80 requests for 40 images."""
    store = tmp_path / "store"
    with OpenAIServer(delay=0.05, default=("ok", "Real. A fundus photograph.")) as server:
        cmd = [
            sys.executable,
            "-m",
            "ingest",
            "run",
            "--manifest",
            str(manifest),
            "--model",
            f"compat:llava@{server.base_url}",
            "--store",
            str(store),
            "--concurrency",
            "4",
            "--no-progress",
        ]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        procs = [
            subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300) for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        requests = len(server.requests)
    ok = store_rows(store, "status = 'ok'")
    assert len(ok) == 40 and len({r["key"] for r in ok}) == 40, "every image answered once"
    assert requests <= 40 + 4, f"{requests} requests for 40 images (in-flight slack 4)"
    assert requests == 40
    skipped = [o for o, _ in outs if "another run is making" in o]
    for out in skipped:
        assert "`ingest run` pid" in out and socket.gethostname() in out and "--wait-claims" in out


def test_a_run_skips_keys_a_live_run_holds_then_waits_for_them(manifest: Path, tmp_path: Path) -> None:
    from cache.leases import Claims, Owner

    store = Store(tmp_path / "store")
    with OpenAIServer(default=("ok", "Real.")) as server:
        spec = f"compat:llava@{server.base_url}"
        args = (
            "ingest",
            "run",
            "--manifest",
            str(manifest),
            "--model",
            spec,
            "--store",
            str(store.root),
            "--no-progress",
            "--limit",
            "10",
        )
        cli(*args, "--dry-run")  # prepares the images, so the keys are known below
        keys = _planned_keys(store, manifest, spec, limit=10)
        holder = Owner(store.storage, "ingest run (test)").start()
        claims = Claims(store.storage, holder)
        assert claims.try_many(keys[:4]).won == keys[:4]
        out = cli(*args).stdout
        assert f"skipped 4 call(s) that another run is making (`ingest run (test)` pid {os.getpid()}" in out
        assert len(server.requests) == 6
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        waiting = subprocess.Popen(
            [sys.executable, "-m", *args, "--wait-claims"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        store.append([row(0, key=keys[0], model=spec)])  # the holder answers one key, then lets go
        claims.release(keys[:4])
        holder.stop()
        out, err = waiting.communicate(timeout=120)
        assert waiting.returncode == 0, err
        assert len(server.requests) == 9, "the three keys left were called once; the answered one not"
    assert len(store_rows(store.root, "status = 'ok'")) == 10


def _planned_keys(store: Store, manifest: Path, spec: str, limit: int) -> list[str]:
    import asyncio

    from ingest.images import PrepOptions
    from ingest.items import ImageCache
    from ingest.manifest import read_manifest
    from ingest.prompts import load_prompt
    from ingest.providers.base import ProviderOptions, create_provider, parse_spec
    from ingest.runner import Runner

    runner = Runner(
        store=store,
        rows=read_manifest(manifest)[:limit],
        manifest_dir=manifest.parent,
        providers=[create_provider(parse_spec(spec), ProviderOptions())],
        prompt=load_prompt("paper"),
        prep=PrepOptions(),
        progress=False,
    )
    runner.images = ImageCache(PrepOptions(), store)
    items = asyncio.run(runner.identify())
    return [t.key for t in runner.plan(items, set())]


def test_dead_runs_claims_are_taken_over_after_its_journal_is_folded(manifest: Path, tmp_path: Path) -> None:
    """A run killed with answers in its journal: the next run folds them in and calls only the rest."""
    from cache.journal import Journal
    from cache.leases import Claims, Owner

    store = Store(tmp_path / "store")
    with OpenAIServer(default=("ok", "Real.")) as server:
        spec = f"compat:llava@{server.base_url}"
        args = (
            "ingest",
            "run",
            "--manifest",
            str(manifest),
            "--model",
            spec,
            "--store",
            str(store.root),
            "--no-progress",
            "--limit",
            "10",
        )
        cli(*args, "--dry-run")
        keys = _planned_keys(store, manifest, spec, limit=10)
        dead = dead_owner(store)
        claims_of_dead = Claims(store.storage, Owner(store.storage, "x", dead))
        assert claims_of_dead.try_many(keys[:5]).won == keys[:5]
        journal = Journal(store.storage, dead)
        journal.append(
            rows_to_table([row(i, key=k, model=spec, run_id=dead) for i, k in enumerate(keys[:2])])
        )
        out = cli(*args).stdout
        assert "another run is making" not in out
        assert len(server.requests) == 8, "the two journaled answers were folded in, not paid again"
    ok = store_rows(store.root, "status = 'ok'")
    assert Counter(r["key"] for r in ok) == dict.fromkeys(keys, 1)
    assert not list((store.root / "claims").iterdir()), "every claim released"
    assert not (store.root / "journal").exists() or not list((store.root / "journal").iterdir())


def test_a_key_answered_after_the_plan_is_never_called(tmp_path: Path) -> None:
    """B planned before A finished K; A's row is durable in a part before A lets K go; B's claim
    of K then finds K answered in the parts written since its snapshot."""
    from cache.claiming import KeyClaimer
    from cache.leases import Claims, Owner

    store = Store(tmp_path)
    snapshot = store.part_names()
    with Owner(store.storage, "a") as a, Owner(store.storage, "b") as b:
        key = row(1)["key"]
        claims_a = Claims(store.storage, a)
        assert claims_a.try_many([key]).won == [key]
        claimer_b = KeyClaimer(store, b, snapshot)
        got = claimer_b.claim([key])
        assert got.won == [] and got.held == {key: a.owner_id}
        store.append([row(1)])
        claims_a.release([key])
        got = claimer_b.claim([key])
        assert got.won == [] and got.done == [key]
        assert not (store.root / "claims" / key).exists()


def test_only_one_process_takes_over_a_dead_claim(tmp_path: Path) -> None:
    from cache.leases import Claims, Owner

    store = Store(tmp_path)
    dead = dead_owner(store)
    key = row(1)["key"]
    Claims(store.storage, Owner(store.storage, "x", dead)).try_many([key])
    with Owner(store.storage, "b") as b, Owner(store.storage, "c") as c:
        claims_b, claims_c = Claims(store.storage, b), Claims(store.storage, c)
        assert claims_b.try_many([key]).dead == {key: dead} == claims_c.try_many([key]).dead
        assert claims_b.take_over(key, dead) is True
        assert claims_c.take_over(key, dead) is False, "the second taker loses"
        assert claims_c.try_many([key]).held == {key: b.owner_id}
        claims_b.release([key])
        assert claims_c.try_many([key]).won == [key], "released: free for the next"
        assert sorted(p.name for p in (store.root / "claims").iterdir()) == [key]


def test_release_removes_only_the_claims_this_owner_still_holds(tmp_path: Path) -> None:
    """A claim taken over since (another owner's body in the file) stays; ours go, also when
    written with other JSON spacing (an older version's file); a claim already gone is no error;
    a FIFO in a claim's place neither blocks the release nor is removed."""
    from cache.leases import Claims, Owner

    store = Store(tmp_path)
    keys = [row(i)["key"] for i in range(5)]
    with Owner(store.storage, "a") as a, Owner(store.storage, "b") as b:
        claims_a = Claims(store.storage, a)
        assert claims_a.try_many(keys).won == keys
        folder = store.root / "claims"
        (folder / keys[1]).write_text(json.dumps({"owner": b.owner_id}))  # b holds it now
        (folder / keys[2]).write_text(json.dumps({"owner": a.owner_id}, indent=2))
        (folder / keys[3]).unlink()
        (folder / keys[4]).unlink()
        os.mkfifo(folder / keys[4])  # planted: must neither block the release nor be removed
        claims_a.release(keys)
        assert sorted(p.name for p in folder.iterdir()) == sorted([keys[1], keys[4]])
        assert json.loads((folder / keys[1]).read_text()) == {"owner": b.owner_id}


def _parts(store: Store, n: int) -> None:
    for i in range(n):
        store.append([row(2 * i), row(2 * i + 1, status="error", error_type="timeout", label=None)])


def _totals(store_root: Path) -> tuple[int, float]:
    con = Store(store_root).connect()
    return con.execute("SELECT count(*), round(sum(cost_usd), 4) FROM responses").fetchone()


def test_two_compacts_at_once_leave_no_duplicate(tmp_path: Path) -> None:
    """Failed before the layout lease: both merged every part, and every row was there twice."""
    store = Store(tmp_path / "store")
    _parts(store, 150)
    before = _totals(store.root)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "cache", "compact", "--store", str(store.root)]
    procs = [
        subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert _totals(store.root) == before == (300, 3.0), outs
    assert all(
        p.returncode == 0 or "is busy: `cache compact` pid" in e
        for p, (_, e) in zip(procs, outs, strict=True)
    )
    stats = cli("cache", "stats", "--store", str(store.root)).stdout
    assert "rows       300 (150 ok, 150 error)" in stats


def test_compaction_killed_after_the_merged_part_leaves_no_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the merged part's rename and the old parts' removal. Failed before: every row
    stayed twice in `responses` (stats and cost doubled)."""
    store = Store(tmp_path / "store")
    _parts(store, 5)
    before = _totals(store.root)
    real_unlink = pathlib.Path.unlink

    def killed(self, missing_ok=False):
        if self.suffix == ".parquet" and self.parent.name == "responses":
            raise SystemExit("killed")  # the process dies here: nothing after it runs
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", killed)
    with pytest.raises(SystemExit):
        store.compact()
    monkeypatch.undo()
    assert len(list(store.responses_dir.glob("*.parquet"))) == 6, "merged part and the five it replaces"
    assert _totals(store.root) == before == (10, 0.1)
    assert (
        "rows       10 (5 ok, 5 error) in 1 part(s)"
        in cli("cache", "stats", "--store", str(store.root)).stdout
    )
    assert store.compact() == (1, 10)
    assert len(list(store.responses_dir.glob("*.parquet"))) == 1, "the next compaction removed the leftovers"
    assert _totals(store.root) == before


def test_layout_lease_names_its_holder_and_a_dead_holder_is_taken_over(tmp_path: Path) -> None:
    from cache.leases import Claims, Owner, layout_lease

    store = Store(tmp_path / "store")
    _parts(store, 3)
    with (
        Owner(store.storage, "cache import") as owner,
        layout_lease(store.storage, owner, "import", store.root),
    ):
        busy = cli("cache", "compact", "--store", str(store.root), check=False)
        assert busy.returncode == 1
        line = busy.stderr.strip()
        assert line.startswith(
            f"error: store {store.root} is busy: `cache import` pid {os.getpid()} on "
            f"{socket.gethostname()}, started "
        )
        assert "cache compact` cannot run now" in line and len(busy.stderr.splitlines()) == 1
    dead = dead_owner(store, "cache compact")
    Claims(store.storage, Owner(store.storage, "x", dead)).try_many(["layout"])
    assert "compacted 3 part(s) into 1: 6 rows" in cli("cache", "compact", "--store", str(store.root)).stdout
    assert _totals(store.root) == (6, 0.06)
