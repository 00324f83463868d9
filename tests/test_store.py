"""The store: atomic parts, schema, views, done keys, compaction."""

from __future__ import annotations

import fnmatch
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cache.schema import ARROW_SCHEMA, COLUMNS, SCHEMA_VERSION, response_key
from cache.store import Store, StoreWriter, resolve_store

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(i: int, status: str = "ok", label: str = "real", minutes: int = 0, **extra) -> dict:
    return {"key": f"k{i}", "run_id": "r", "created_at": T0 + timedelta(minutes=minutes),
            "provider": "baseline", "model": "baseline:forensic", "prompt_id": "paper",
            "image_sha256": f"s{i}", "modality": "fundus", "truth": "real", "status": status,
            "label": label if status == "ok" else None, "repeat": 0, **extra}


def test_key_depends_only_on_what_changes_the_answer() -> None:
    base = dict(provider="openai", model="openai:gpt-4o", params={"temperature": 0},
                prompt_text="Is it real?", image_sha256="ab" * 32, repeat=0)
    key = response_key(**base)
    assert len(key) == 64 and key == response_key(**dict(base, params={"temperature": 0}))
    for change in ({"model": "openai:gpt-4.1"}, {"params": {"temperature": 1}}, {"prompt_text": "x"},
                   {"image_sha256": "cd" * 32}, {"repeat": 1}):
        assert response_key(**dict(base, **change)) != key


def test_parts_are_atomic_typed_and_outside_glob_while_written(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    seen: dict = {}
    real_link = os.link

    def spying_link(src, dst) -> None:  # the moment just before the part becomes visible
        src, dst = Path(src), Path(dst)
        seen["tmp"], seen["final"] = src, dst
        seen["tmp_matches_glob"] = src in set(store.responses_dir.glob("**/*.parquet"))
        seen["parts_visible"] = store.part_paths()
        seen["reader_rows"] = store.connect().execute("SELECT count(*) FROM responses").fetchone()[0]
        seen["tmp_rows"] = pq.read_table(src).num_rows  # complete (and fsynced) before the link
        real_link(src, dst)

    monkeypatch.setattr(os, "link", spying_link)
    path = store.append([row(1), row(2, status="error", error_type="timeout")])
    monkeypatch.undo()
    assert seen["final"] == path and seen["tmp"].parent == store.responses_dir
    assert not fnmatch.fnmatch(seen["tmp"].name, "*.parquet") and not seen["tmp_matches_glob"]
    assert seen["parts_visible"] == [] and seen["reader_rows"] == 0, "a reader during the write sees nothing"
    assert seen["tmp_rows"] == 2
    assert path.parent == store.responses_dir and path.suffix == ".parquet"
    assert not list(store.responses_dir.glob(".*.tmp")), "no temporary file left behind"
    table = pq.read_table(path)
    assert table.schema.equals(ARROW_SCHEMA)
    assert table.column("schema_version").to_pylist() == [SCHEMA_VERSION] * 2
    with pytest.raises(ValueError, match="unknown responses column"):
        store.append([dict(row(3), api_key="secret")])
    writer = StoreWriter(store, flush_seconds=3600)
    writer.add(row(4))
    writer.add(dict(row(5), api_key="secret"))
    with pytest.raises(ValueError, match="1 row.*unknown responses column"):
        writer.close()
    assert "k4" in {k for (k,) in store.connect().execute("SELECT key FROM responses").fetchall()}
    assert not store.storage.put_if_absent(path.relative_to(store.root).as_posix(), b"x"), "create-if-absent"
    assert pq.read_table(path).num_rows == 2



def test_failures_image_error_closed_by_ok_row_for_same_image(tmp_path: Path) -> None:
    """An unreadable image's error row has its own key (provider image_error + path), never the key of
    the real call: an ok row for the same model, prompt, image_path and repeat closes it."""
    store = Store(tmp_path)
    image_error = row(1, status="error", error_type="image_missing_file", image_path="fundus/real/a.png",
                      image_sha256=None, key="img-err-key")
    other_repeat = dict(image_error, key="img-err-key-r1", repeat=1)
    call_error = row(2, status="error", error_type="timeout", image_path="fundus/real/a.png")
    store.append([image_error, other_repeat, call_error])
    con = store.connect()
    assert sorted(con.execute("SELECT key FROM failures").fetchall()) == [("img-err-key",), ("img-err-key-r1",),
                                                                          ("k2",)]
    columns = [d[0] for d in con.execute("SELECT * FROM failures").description]
    assert columns == [d[0] for d in con.execute("SELECT * FROM responses").description] + ["outcome"]
    store.append([row(9, image_path="fundus/real/a.png", minutes=5)])  # the image was fixed: answered
    con = store.connect()
    assert con.execute("SELECT key, error_type FROM failures ORDER BY key").fetchall() == [
        ("img-err-key-r1", "image_missing_file"), ("k2", "timeout")], "call errors still need their own key"


def test_views_latest_ok_per_key_and_open_failures(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.append([row(1, label="real"), row(2, status="error", error_type="timeout")])
    store.append([row(1, label="synthetic", minutes=5), row(3, status="error", error_type="x"),
                  row(3, label="real", minutes=1)])
    con = store.connect()
    results = dict(con.execute("SELECT key, label FROM results ORDER BY key").fetchall())
    assert results == {"k1": "synthetic", "k3": "real"}  # latest ok; k3's error is superseded
    assert con.execute("SELECT key, error_type FROM failures").fetchall() == [("k2", "timeout")]
    assert store.done_keys() == {"k1", "k3"}


def test_empty_store_has_views(tmp_path: Path) -> None:
    con = Store(tmp_path / "nothing").connect()
    assert con.execute("SELECT count(*) FROM results").fetchone() == (0,)


def _wait_for(predicate, seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.01)
    return predicate()


def test_writer_journals_at_once_and_flushes_on_interval_and_close(tmp_path: Path) -> None:
    store = Store(tmp_path)
    writer = StoreWriter(store, flush_seconds=0.0)
    started = time.perf_counter()
    future = writer.add(row(1))
    assert time.perf_counter() - started < 0.05, "add only queues: no write on the caller's thread"
    future.result(timeout=10)  # durable in the journal
    assert _wait_for(lambda: len(store.part_paths()) == 1), "a due flush writes soon, on the writer's thread"
    writer.close()
    writer = StoreWriter(store, flush_seconds=3600)
    with writer:
        writer.add(row(2)).result(timeout=10)
        assert writer.pending == 1 and len(store.part_paths()) == 1
        journal = store.root / writer.journal.folder
        segments = list(journal.glob("*.log"))
        assert len(segments) == 1 and segments[0].stat().st_mode & 0o777 == 0o600
    assert writer.pending == 0 and len(store.part_paths()) == 2
    assert not journal.exists(), "the journal goes once every row is in a part"
    assert sorted(k for (k,) in store.connect().execute("SELECT key FROM responses").fetchall()) == ["k1", "k2"]


def test_compact_merges_and_keeps_every_row(tmp_path: Path) -> None:
    store = Store(tmp_path)
    for i in range(5):
        store.append([row(i), row(100 + i, status="error")])
    before = store.connect().execute("SELECT count(*), count(DISTINCT key) FROM responses").fetchone()
    parts, rows = store.compact()
    assert (parts, rows) == (5, 10) and len(store.part_paths()) == 1
    assert store.connect().execute("SELECT count(*), count(DISTINCT key) FROM responses").fetchone() == before


def test_resolve_store_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MEDLENS_STORE", "/env/store")
    assert resolve_store("/arg") == Path("/arg") and resolve_store(None) == Path("/env/store")
    monkeypatch.delenv("MEDLENS_STORE")
    assert resolve_store(None) == Path("data/store")


WINDOW_RESULTS = """
SELECT * REPLACE (coalesce(needs_review, false) AS needs_review), label IN ('real', 'synthetic') AS answered, label = truth AS correct,
       CASE WHEN label NOT IN ('real', 'synthetic') THEN 'abstained'
            WHEN label = truth THEN 'correct' ELSE 'wrong' END AS outcome
FROM responses WHERE status = 'ok'
QUALIFY row_number() OVER (PARTITION BY key ORDER BY created_at DESC, run_id DESC) = 1
"""


def test_results_view_equals_a_plain_window_dedup(tmp_path: Path) -> None:
    """The cheaper dedup of cache.views returns exactly the rows and columns of the obvious window,
    with a superseded answer (latest wins) and with every row twice (a compaction in progress)."""
    store = Store(tmp_path)
    rows = [row(i, label="synthetic" if i % 3 else "uncertain") for i in range(30)]
    store.append(rows + [row(5, label="real", minutes=9), row(40, status="error")])
    for round_ in range(2):
        con = store.connect()
        expected = con.execute(WINDOW_RESULTS + " ORDER BY key").fetchall()
        columns = ", ".join(f'"{c}"' for c in [*COLUMNS, "answered", "correct", "outcome"])
        cur = con.execute(f"SELECT {columns} FROM results ORDER BY key")
        assert cur.fetchall() == expected and len(expected) == 30
        assert dict(con.execute("SELECT key, label FROM results").fetchall())["k5"] == "real"
        if round_ == 0:
            store.append(rows)  # every key now has duplicate ok rows


def _disk_full(self, *args) -> None:
    raise OSError(28, "No space left on device")


def test_writer_flush_failure_keeps_rows_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path)
    writer = StoreWriter(store, flush_seconds=3600)
    writer.add(row(1))
    writer.add(row(2))
    monkeypatch.setattr(Store, "put_part", _disk_full)
    with pytest.raises(OSError, match="No space left"):
        writer.flush()
    assert writer.pending == 2 and writer.rows_written == 0
    writer.add(row(3))
    monkeypatch.undo()
    assert writer.flush() == 3 and writer.pending == 0
    keys = [r[0] for r in store.connect().execute("SELECT key FROM responses").fetchall()]
    assert keys == ["k1", "k2", "k3"], "nothing lost, order kept"
    writer.close()


def test_writer_close_keeps_rows_in_the_journal_and_the_next_command_folds_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = Store(tmp_path / "store")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(Store, "put_part", _disk_full)
    writer = StoreWriter(store, flush_seconds=3600)
    with pytest.raises(OSError) as info, writer:
        writer.add(row(1, label="synthetic"))
        writer.add(row(2, status="error", error_type="timeout"))
    monkeypatch.undo()
    message = str(info.value)
    journal = store.root / "journal" / writer.owner.owner_id
    assert str(journal) in message and "No space left on device" in message and "2 row(s)" in message
    assert "mode 0600" in message and "without calling again" in message
    assert [p.stat().st_mode & 0o777 for p in journal.glob("*.log")] == [0o600]
    assert not list((tmp_path / "tmp").iterdir()), "never the system temp folder"
    assert writer.pending == 2 and store.part_paths() == []
    with store.owner("test") as owner:  # the writer's owner stopped: it is dead, its journal is folded
        assert store.recover(owner) == 2
        assert store.recover(owner) == 0, "folded once"
    rows = store.connect().execute("SELECT key, label FROM responses ORDER BY key").fetchall()
    assert rows == [("k1", "synthetic"), ("k2", None)] and not journal.exists()


def test_no_room_for_the_journal_fails_before_any_row(tmp_path: Path) -> None:
    store = Store(tmp_path / "store")
    store.root.write_text("not a folder")  # the store cannot take a journal
    with pytest.raises(OSError):
        StoreWriter(store, flush_seconds=3600)


def test_a_connection_is_a_snapshot_of_the_parts_it_was_made_over(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.append([row(1), row(2)])
    old = store.connect()
    store.append([row(1, label="synthetic", minutes=5), row(3)])  # supersedes k1, adds k3
    assert old.execute("SELECT count(*) FROM results").fetchone() == (2,)
    new = store.connect()
    assert dict(new.execute("SELECT key, label FROM results").fetchall()) == {
        "k1": "synthetic", "k2": "real", "k3": "real"}


def test_journal_survives_a_torn_tail_and_reserves_space_ahead(tmp_path: Path) -> None:
    from cache.journal import Journal, encode_frame, read_segment, segment_name
    from cache.leases import new_owner_id
    from cache.store import rows_to_table

    store = Store(tmp_path)
    journal = Journal(store.storage, new_owner_id(), reserve=1 << 16, headroom=1 << 12)
    journal.append(rows_to_table([row(1)]))
    journal.append(rows_to_table([row(2, label="synthetic")]))
    name = segment_name(journal.owner_id, 1)
    path = store.root / name
    assert path.stat().st_size == 1 << 16, "space reserved ahead (zeros the reader stops at)"
    table = read_segment(store.storage, name)
    assert table.column("key").to_pylist() == ["k1", "k2"] and table.column("label").to_pylist() == ["real", "synthetic"]
    first = len(encode_frame(rows_to_table([row(1)])))
    data = path.read_bytes()
    path.write_bytes(data[: first + 40])  # killed while writing the second group
    assert read_segment(store.storage, name).column("key").to_pylist() == ["k1"]
    path.write_bytes(data[:first] + b"MLJ1" + data[first + 4 : first + 60] + b"\xff" * 64)  # bad CRC
    assert read_segment(store.storage, name).column("key").to_pylist() == ["k1"]


def test_key_maker_gives_exactly_the_response_keys() -> None:
    from cache.schema import KeyMaker

    for params in ({}, {"temperature": 0.0, "max_tokens": 1024, "detail": "high"}, {"ü": 'quote " and \\ x'}):
        for provider, model, prompt in (("openai", "openai:gpt-4o", "Is it real?"),
                                        ("compat", "compat:llava@http://127.0.0.1:1/v1", "Réel ? \u2028")):
            maker = KeyMaker(provider=provider, model=model, params=params, prompt_text=prompt)
            for sha, repeat in (("ab" * 32, 0), ("0f" * 32, 7)):
                assert maker.key(sha, repeat) == response_key(provider=provider, model=model, params=params,
                                                              prompt_text=prompt, image_sha256=sha, repeat=repeat)
    with pytest.raises(ValueError):
        maker.key('x"y', 0)
