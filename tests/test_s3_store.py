"""A store on S3-compatible object storage (moto on 127.0.0.1): the same rules as a local store.

Store locations, the conditional put, views over the declared schema, snapshots, compaction (and a
kill in the middle of it), the CLI on an S3 store, bundles from and into one, and no AWS secret in
anything the store, an export or a command writes. The concurrent writers, the killed writer and the
dashboard are in tests/test_s3_writers.py.
"""

from __future__ import annotations

import io
import json
import threading
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cache.location import S3Location, StoreLocationError, parse_location
from cache.parse import PARSER_VERSION
from cache.store import Store
from tests.conftest import S3_TEST_SECRET

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def row(i: int, **extra) -> dict:
    return {
        "key": f"{i:064x}", "run_id": "20261101T000000Z-abc123", "created_at": T0 + timedelta(seconds=i),
        "provider": "compat", "model": "compat:m", "prompt_id": "paper", "prompt_sha256": "e" * 64,
        "prompt_text": "Real or synthetic?", "image_sha256": f"{i:064x}",
        "modality": "fundus", "truth": "real" if i % 2 else "synthetic", "status": "ok",
        "label": "real", "repeat": 0, "cost_usd": 0.01, "raw_text": "Real.", **extra,
    }  # fmt: skip


def run_cli(module: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """A CLI in this process (the test's environment holds the moto endpoint and credentials)."""
    main = __import__(f"{module}.cli", fromlist=["main"]).main
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_secret(texts: list[str | bytes], secret: str = S3_TEST_SECRET) -> None:
    """Neither the secret nor any 16-character fragment of it in any of ``texts``."""
    fragments = {secret[i : i + 16] for i in range(len(secret) - 15)}
    for text in texts:
        text = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
        assert not any(f in text for f in fragments), text[:400]


def store_texts(store: Store) -> list[str | bytes]:
    """Every object of the store: raw bytes, and each Parquet part decoded to text."""
    texts: list[str | bytes] = []
    for name in store.storage.list("", recursive=True):
        data = store.storage.read(name)
        texts.append(data)
        if name.endswith(".parquet"):
            texts.append(json.dumps(pq.read_table(io.BytesIO(data)).to_pylist(), default=str))
    return texts


# -- locations ---------------------------------------------------------------------------------------
def test_a_store_location_is_a_folder_or_a_checked_s3_url() -> None:
    assert parse_location("data/store") == Path("data/store")
    assert parse_location("s3://team-bucket/studies/fundus-2026/") == S3Location(
        "team-bucket", "studies/fundus-2026"
    )
    assert str(parse_location("S3://my.bucket")) == "s3://my.bucket"
    bad = {
        "s3://Team_Bucket/x": "not a valid bucket name",
        "s3://ab/x": "not a valid bucket name",
        "s3://192.168.1.10/x": "not an IP address",
        "s3://bucket/a/../b": "'..' segment",
        "s3://bucket/a//b": "empty, '.' or '..' segment",
        "s3://bucket/a b": "characters outside letters",
        "s3://bucket/x?versionId=1": "no query, fragment",
        "s3://AKIAX:hunter2secret@bucket/x": "credentials and endpoints do not go into the store location",
        "s3:/bucket/x": "did you mean s3://",
        "gs://bucket/x": "not a store location",
    }
    for text, message in bad.items():
        with pytest.raises(StoreLocationError, match=message.replace("(", r"\(").replace("?", r"\?")) as info:
            parse_location(text)
        assert "hunter2secret" not in str(info.value)
    with pytest.raises(StoreLocationError, match="turned into a local path"):
        parse_location(Path("s3://bucket/x"))


def test_a_malformed_location_is_one_line_and_exit_2(capsys, monkeypatch) -> None:
    monkeypatch.delenv("MEDLENS_STORE", raising=False)
    code, out, err = run_cli("cache", "stats", "--store", "s3://Bad_Bucket/x", capsys=capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1
    assert (
        "'Bad_Bucket' is not a valid bucket name" in err
        and "fix the bucket in --store or MEDLENS_STORE" in err
    )
    code, _, err = run_cli("ingest", "run", "--manifest", "m.csv", "--model", "baseline:forensic",
                           "--store", "s3://b/../x", capsys=capsys)  # fmt: skip
    assert code == 2 and "not a valid bucket name" in err


# -- the conditional put -----------------------------------------------------------------------------
def test_two_writers_of_one_name_one_wins(s3_store: str) -> None:
    storage = Store(s3_store).storage
    results: dict[int, bool] = {}
    barrier = threading.Barrier(8)

    def write(i: int) -> None:
        barrier.wait()
        results[i] = storage.put_if_absent("claims/k1", f"writer {i}".encode())

    threads = [threading.Thread(target=write, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [i for i, won in results.items() if won]
    assert len(winners) == 1 and len(results) == 8
    assert storage.read("claims/k1") == f"writer {winners[0]}".encode(), "the loser did not overwrite"
    with pytest.raises(FileNotFoundError):
        storage.read("claims/missing")
    assert storage.list("claims") == ["claims/k1"] and not storage.exists("claims/missing")
    storage.delete("claims/k1")
    assert storage.put_if_absent("claims/k1", b"again") is True, "free again once deleted"


def test_a_service_that_ignores_if_none_match_is_refused(s3_store: str) -> None:
    from cache.s3storage import S3Storage, S3StoreError

    real = Store(s3_store).storage

    class IgnoresConditions:  # every PutObject succeeds, like a service without conditional writes
        def put_object(self, **kwargs):
            kwargs.pop("IfNoneMatch", None)
            return real.client.put_object(**kwargs)

        def __getattr__(self, name):
            return getattr(real.client, name)

    location = S3Location(real.location.bucket, "other-service")
    storage = S3Storage(location, client=IgnoresConditions(), filesystem=real.filesystem)
    storage.endpoint = "http://ignores-conditions.example"  # another service: probed anew
    with pytest.raises(S3StoreError, match="ignores conditional writes"):
        storage.put_if_absent("claims/k", b"x")


def test_a_writer_on_another_machine_is_alive_while_its_heartbeat_is_fresh(s3_store: str) -> None:
    """Seen from another machine (no pid to check), an owner is alive until its heartbeat is older
    than the lease's ttl; then exactly one process takes its claims over."""
    import time

    from cache.leases import Claims, Liveness, Owner, new_owner_id

    store = Store(s3_store)
    other, key = new_owner_id(), "b" * 64
    record = {"owner_id": other, "pid": 1, "host": "lab-pc-2", "machine": "lab-pc-2/boot/ns",
              "command": "ingest run", "started_at": "2026-11-01T00:00:00+00:00", "heartbeat_at": time.time()}  # fmt: skip
    store.storage.put(f"leases/{other}.json", json.dumps(record).encode())
    Claims(store.storage, Owner(store.storage, "x", other)).try_many([key])
    with Owner(store.storage, "ingest run", ttl=5) as me:
        claims = Claims(store.storage, me, Liveness(store.storage, ttl=5))
        assert claims.try_many([key]).held == {key: other}, "a fresh heartbeat: alive, its key held"
        store.storage.put(
            f"leases/{other}.json", json.dumps(record | {"heartbeat_at": time.time() - 6}).encode()
        )
        claims = Claims(store.storage, me, Liveness(store.storage, ttl=5))
        assert claims.try_many([key]).dead == {key: other}
        assert claims.take_over(key, other) is True
        assert json.loads(store.storage.read(f"claims/{key}")) == {"owner": me.owner_id}


# -- reading -------------------------------------------------------------------------------------------
def test_views_read_the_declared_schema_and_a_connection_is_a_snapshot(s3_store: str) -> None:
    store = Store(s3_store)
    old = pa.table(
        {
            "key": ["a" * 64],
            "status": ["ok"],
            "model": ["m"],
            "label": ["real"],
            "truth": ["real"],
            "created_at": pa.array([T0], pa.timestamp("us", tz="UTC")),
        }
    )
    store.put_part("responses/part-old.parquet", old)  # a part written before most columns existed
    store.append([row(1), row(2, status="error", error_type="timeout", label=None)])
    con = store.connect()
    assert con.execute("SELECT count(*), count(task), count(label_rule) FROM responses").fetchone() == (
        3,
        0,
        0,
    )
    assert con.execute("SELECT count(*) FROM results").fetchone() == (2,)  # old a.., row 1
    assert con.execute("SELECT count(*) FROM failures").fetchone() == (1,)
    cur = con.cursor()  # the dashboard queries through cursors: they see the dataset views too
    assert cur.execute("SELECT count(*) FROM responses").fetchone() == (3,)
    store.append([row(3)])
    assert con.execute("SELECT count(*) FROM responses").fetchone() == (3,), "a snapshot"
    assert store.connect().execute("SELECT count(*) FROM responses").fetchone() == (4,)
    assert store.done_keys() == {"a" * 64, row(1)["key"], row(3)["key"]}
    store.compact()  # removes the parts the old snapshot lists: it fails as a local one does, and the
    with pytest.raises(duckdb.InvalidInputException, match="GetObject"):  # dashboard relists
        con.execute("SELECT count(*) FROM responses").fetchone()
    assert store.connect().execute("SELECT count(*) FROM responses").fetchone() == (4,)


def test_thumbnails_run_records_and_reader_studies_live_in_the_bucket(s3_store: str) -> None:
    from cache import reader_study as rs

    store = Store(s3_store)
    sha = "f" * 64
    store.write_thumb(sha, b"\xff\xd8jpeg")
    store.write_thumb(sha, b"\xff\xd8other")  # present: left alone
    assert store.read_thumb(sha) == b"\xff\xd8jpeg" and store.has_thumb(sha)
    assert store.read_thumb("../../etc/passwd") is None
    store.write_run("20261101T000000Z-abc123", {"started_at": "2026-11-01", "models": {}})
    assert [r["started_at"] for r in store.runs()] == ["2026-11-01"]
    images = [{"image_sha256": f"{i:064x}", "modality": "fundus", "truth": t} for i, t in enumerate("rs" * 4)]
    study = rs.new_study(store, images, size=4, seed=1)
    assert [s.study_id for s in rs.studies(store)] == [study.study_id]
    session = rs.start_session(store, study, "Dr Ada")
    assert rs.start_session(store, study, "Dr Ada").order == session.order, "read back from the bucket"
    assert store.local_dir == Path(S3Location(store.root.bucket, "study").local_cache())
    assert not store.storage.list("prepared"), "prepared images stay on this machine"


# -- compaction ------------------------------------------------------------------------------------------
def _totals(store: Store) -> tuple[int, float]:
    return store.connect().execute("SELECT count(*), round(sum(cost_usd), 4) FROM responses").fetchone()


def test_compaction_on_s3_killed_midway_leaves_no_duplicate(s3_store: str, monkeypatch, capsys) -> None:
    from cache.s3storage import S3Storage

    store = Store(s3_store)
    for i in range(5):
        store.append([row(2 * i), row(2 * i + 1, status="error", error_type="timeout", label=None)])
    assert _totals(store) == (10, 0.1)
    real_delete = S3Storage.delete

    def killed(self, name: str) -> None:
        if name.startswith("responses/part-"):
            raise SystemExit("killed")  # the process dies here: nothing after it runs
        real_delete(self, name)

    with monkeypatch.context() as patch, pytest.raises(SystemExit):
        patch.setattr(S3Storage, "delete", killed)
        store.compact()
    assert len(store.part_names(include_replaced=True)) == 6, "the merged part and the five it replaces"
    assert len(store.part_names()) == 1 and _totals(store) == (10, 0.1)
    code, out, err = run_cli("cache", "stats", "--store", s3_store, capsys=capsys)
    assert code == 0 and "rows       10 (5 ok, 5 error) in 1 part(s)" in out, err
    code, out, _ = run_cli("cache", "compact", "--store", s3_store, capsys=capsys)
    assert (code, out.strip()) == (0, "compacted 1 part(s) into 1: 10 rows")
    assert len(store.storage.list("responses")) == 1, "the next compaction removed the leftovers"
    assert _totals(store) == (10, 0.1) and store.storage.list("claims") == []


# -- the CLI, bundles and secrets -----------------------------------------------------------------------
def test_cache_commands_on_an_s3_store_and_bundles_both_ways(s3_store: str, tmp_path: Path, capsys) -> None:
    store = Store(s3_store)
    store.append(
        [row(i) for i in range(1, 7)]
        + [row(7, status="error", error_type="timeout", label=None, error_message=f"echo {S3_TEST_SECRET}")]
    )
    store.append([row(8, label="synthetic", raw_text=f"Synthetic. key={S3_TEST_SECRET}")])
    store.write_thumb(row(1)["image_sha256"], _jpeg())
    store.write_run("20261101T000000Z-abc123", {"started_at": "2026-11-01", "note": S3_TEST_SECRET})
    local = Store(tmp_path / "local")  # the same rows on disk: the numbers must agree
    for name in store.part_names():
        local.storage.put(name, store.storage.read(name))

    code, stats, err = run_cli("cache", "stats", "--store", s3_store, capsys=capsys)
    assert code == 0, err
    assert f"store      {s3_store}\n" in stats and "rows       8 (7 ok, 1 error) in 2 part(s)" in stats
    assert "thumbnails 1; runs 1" in stats
    metrics = [run_cli("cache", "metrics", "--json", "--store", where, capsys=capsys)[1]
               for where in (s3_store, str(local.root))]  # fmt: skip
    assert json.loads(metrics[0]) == json.loads(metrics[1]) and (
        json.loads(metrics[0])[0]["n"],
        json.loads(metrics[0])[0]["errors"],
    ) == (7, 1)

    bundle = tmp_path / "out.zip"
    code, out, err = run_cli("cache", "export", str(bundle), "--store", s3_store, capsys=capsys)
    assert code == 0 and "8 rows, 1 thumbnails, 1 run record(s)" in out, err
    target = s3_store.replace("/study", "/imported")
    for attempt in range(2):
        code, out, err = run_cli("cache", "import", str(bundle), "--store", target, capsys=capsys)
        assert code == 0, err
        added = "8 row(s)" if attempt == 0 else "0 row(s)"
        assert out.startswith(f"imported {added} into {target}"), out
    imported = Store(target)
    assert _totals(imported) == (8, 0.08) and imported.has_thumb(row(1)["image_sha256"])
    assert imported.storage.list("leases") == [] and imported.storage.list("claims") == []
    code, out, err = run_cli("cache", "report", str(tmp_path / "r.html"), "--store", target, capsys=capsys)
    assert code == 0 and "7 of 7 image(s) in the gallery" in out, err
    assert "data:image/jpeg;base64," in (tmp_path / "r.html").read_text(), (
        "the thumbnail read from the bucket"
    )

    code, out, err = run_cli(
        "cache", "reparse", "--no-progress", "--workers", "1", "--store", target, capsys=capsys
    )
    assert (
        code == 0
        and f"re-read 7 stored answer(s) with parser {PARSER_VERSION}; wrote 7 new reading(s)" in out
    ), err
    assert len(imported.part_names("readings")) == 1  # stored without a parser version: read again
    assert imported.connect().execute(
        "SELECT count(*) FROM readings WHERE authority = 'parser'"
    ).fetchone() == (7,)
    for command in ("methods", "readers"):
        code, _, err = run_cli("cache", command, "--store", target, capsys=capsys)
        assert code == 0, (command, err)

    with zipfile.ZipFile(bundle) as archive:
        members = [archive.read(n) for n in archive.namelist()]
    texts = [stats, *metrics, out, err, *members, (tmp_path / "r.html").read_text()]
    assert_no_secret(texts + store_texts(store) + store_texts(imported))


def test_an_unreachable_bucket_is_one_line_naming_the_fix(s3_store: str, capsys) -> None:
    missing = "s3://medlens-no-such-bucket/x"
    code, out, err = run_cli("cache", "stats", "--store", missing, capsys=capsys)
    assert code == 1 and len(err.splitlines()) == 1, err
    assert "NoSuchBucket" in err and "create the bucket 'medlens-no-such-bucket'" in err
    assert_no_secret([out, err])


def test_a_secret_from_a_credentials_file_is_scrubbed_too(s3_store: str, tmp_path: Path, monkeypatch) -> None:
    from cache.redact import scrub_secrets

    secret = "fileSecretZ9yX8wV7uT6sR5qP4oN3mL2kJ1"
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[default]\naws_access_key_id = AKIAFROMFILE0000001\naws_secret_access_key = {secret}\n"
    )
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    store = Store(s3_store)
    store.append([row(1, raw_text=f"echoed {secret}")])
    assert scrub_secrets(f"x {secret} y") == "x [redacted] y"
    assert_no_secret(store_texts(store), secret)


def _jpeg() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()
