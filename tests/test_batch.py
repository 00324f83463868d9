"""``ingest run --batch`` and ``ingest batches`` end to end: the real SDKs against loopback servers
that speak the OpenAI Batch and Gemini Batch Mode wire formats (tests/batch_loopback.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import pytest

from ingest import batch_ledger as ledger
from ingest.images import PrepOptions, prepare_image
from ingest.prompts import load_prompt
from tests.batch_loopback import GeminiBatchServer, OpenAIBatchServer, openai_line_image
from tests.loopback import USAGE_IN, USAGE_OUT, GeminiServer, OpenAIServer
from tests.pipeline_helpers import cli, make_dataset, store_rows, write_image

OPENAI_KEY, GEMINI_KEY = "sk-test-batch-0123456789abcdef", "AIzaTestBatch0123456789abcdefghij"
TEXT = "Real. The optic disc and vessels look natural."


@pytest.fixture
def study(tmp_path: Path) -> Path:
    data = make_dataset(tmp_path / "data", per_cell=2, modalities=("fundus",))
    manifest = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest), "--no-audit")
    return manifest


def env(oa=None, gm=None) -> dict[str, str]:
    out = {"OPENAI_API_KEY": OPENAI_KEY, "GEMINI_API_KEY": GEMINI_KEY, "GOOGLE_API_KEY": ""}
    if oa is not None:
        out["OPENAI_BASE_URL"] = oa.base_url
    if gm is not None:
        out["GOOGLE_GEMINI_BASE_URL"] = gm.base_url
    return out


def run(manifest: Path, store: Path, model: str, environ: dict, *extra: str, check: bool = True):
    return cli("ingest", "run", "--manifest", str(manifest), "--model", model, "--store", str(store),
               "--no-progress", "--poll-interval", "0.05", "--max-tokens", "300", *extra, env=environ,
               check=check)  # fmt: skip


def by_rank(*answers: tuple):
    """The i-th answer for the batch's i-th key in sorted order, then ok."""

    def answer(key: str, request: dict, keys: list[str]) -> tuple:
        rank = sorted(keys).index(key)
        return answers[rank] if rank < len(answers) else ("ok", TEXT)

    return answer


def openai_sent(server: OpenAIBatchServer) -> list[str]:
    """The custom ids of every batch the server created, in order (duplicates would show)."""
    return [
        ln["custom_id"]
        for b in server.created
        for ln in server.lines_of(server.batches[b]["request"]["input_file_id"])
    ]


def gemini_sent(server: GeminiBatchServer) -> list[str]:
    return [key for b in server.created for key, _ in server.batches[b]["lines"]]


def test_openai_batch_submits_lists_and_collects(study: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    answer = by_rank(("status", 400, "Invalid image: cannot decode"), ("length",))
    with OpenAIBatchServer(finish_after=2, answer=answer) as oa:
        out = run(study, store, "openai:gpt-4o", env(oa), "--batch").stdout
        (entry,) = ledger.entries(store)
        keys = list(ledger.read_calls(store, entry.ledger_id))
        assert (entry.state, entry.batch_id, entry.requests, entry.mode) == (
            "submitted",
            oa.created[0],
            4,
            "file",
        )
        assert f"{entry.ledger_id}  openai:gpt-4o  {entry.batch_id}  4 call(s)" in out
        request = oa.batches[entry.batch_id]["request"]
        assert request["metadata"] == {"medlens_ledger": entry.ledger_id}
        assert (request["endpoint"], request["completion_window"]) == ("/v1/chat/completions", "24h")
        lines = oa.lines_of(request["input_file_id"])
        assert oa.files[request["input_file_id"]]["filename"] == f"medlens-{entry.ledger_id}.jsonl"
        assert sorted(ln["custom_id"] for ln in lines) == sorted(keys)  # the cache key is the custom id
        calls = ledger.read_calls(store, entry.ledger_id)
        for line in lines:  # the prepared image and the online body
            call = calls[line["custom_id"]]
            sent = openai_line_image(line)
            assert call.image_sha256 == prepare_image(study.parent / call.image_path, PrepOptions()).sha256
            assert hashlib.sha256(sent).hexdigest() == call.image_sha256
            assert line["body"]["model"] == "gpt-4o" and line["body"]["max_completion_tokens"] == 300
        assert not ledger.payload_path(store, entry.ledger_id).exists()  # the provider has it

        listed = cli("ingest", "batches", "--store", str(store), env=env(oa)).stdout
        assert "in_progress" in listed and entry.ledger_id in listed and store_rows(store) == []
        collected = cli("ingest", "batches", "--store", str(store), "--collect", env=env(oa)).stdout
        assert f"collected {entry.ledger_id} (completed): 4 row(s)" in collected
        rows = {r["key"]: r for r in store_rows(store)}
        first, second, *rest = (rows[k] for k in sorted(keys))
        assert (first["status"], first["error_type"]) == ("error", "image_rejected")
        assert "cannot decode" in first["error_message"]
        assert (second["error_type"], second["output_tokens"]) == ("truncated", USAGE_OUT)
        assert "--max-tokens (now 300)" in second["error_message"]
        assert second["cost_usd"] == pytest.approx(USAGE_IN * 1.25e-6 + USAGE_OUT * 5e-6)  # the batch price
        for row in rest:
            assert (row["status"], row["label"], row["batch_id"]) == ("ok", "real", entry.batch_id)
            assert row["cost_usd"] == pytest.approx(USAGE_IN * 1.25e-6 + USAGE_OUT * 5e-6)
            assert 5_000 < row["queued_ms"] < 9_000  # the server ends batches 7 s after creating them
            assert row["model_version"] == "gpt-4o-2024-08-06" and row["latency_ms"] is None

        cli("ingest", "batches", "--store", str(store), "--collect", env=env(oa))
        assert len(store_rows(store)) == 4  # collecting twice adds nothing
        oa.answer = by_rank()
        run(study, store, "openai:gpt-4o", env(oa), "--batch", "--wait")
        assert sorted(openai_sent(oa)[4:]) == sorted([first["key"], second["key"]])  # only the errors again
        assert len(store_rows(store, "status = 'ok'")) == 4


def test_gemini_batch_inline_with_per_line_errors(study: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with GeminiBatchServer(
        answer=by_rank(("grpc", 3, "Request contains an invalid argument."), ("length",))
    ) as gm:
        run(study, store, "gemini:gemini-2.5-flash", env(gm=gm), "--batch", "--wait", "--prompt", "json")
        (entry,) = ledger.entries(store)
        assert (entry.state, entry.mode, entry.outcome) == ("collected", "inline", "completed")
        batch = gm.batches[entry.batch_id.removeprefix("batches/")]
        assert batch["display"] == f"medlens-{entry.ledger_id}" and not batch["file_input"]
        calls = ledger.read_calls(store, entry.ledger_id)
        prompt = load_prompt("json")
        for key, request in batch["lines"]:  # what the SDK sent inline: image, prompt, config, schema
            parts = request["contents"][0]["parts"]
            image = base64.urlsafe_b64decode(parts[0]["inlineData"]["data"])
            assert hashlib.sha256(image).hexdigest() == calls[key].image_sha256
            assert parts[1]["text"] == prompt.text
            config = request["generationConfig"]
            assert config["maxOutputTokens"] == 300 and config["responseMimeType"] == "application/json"
        rows = {r["key"]: r for r in store_rows(store)}
        first, second, *rest = (rows[k] for k in sorted(calls))
        assert (first["error_type"], first["status"]) == ("bad_request", "error") and "gRPC 3" in first[
            "error_message"
        ]
        assert (second["error_type"], second["output_tokens"]) == ("truncated", USAGE_OUT)  # thinking tokens
        assert second["cost_usd"] == pytest.approx(USAGE_IN * 0.15e-6 + USAGE_OUT * 1.25e-6)
        assert all(r["label"] == "real" and r["batch_id"] == entry.batch_id for r in rest)
        assert {r["model_version"] for r in rest} == {"gemini-2.5-flash-001"}


def test_gemini_batch_over_19_mb_goes_as_an_uploaded_file(tmp_path: Path) -> None:
    for truth in ("real", "synthetic"):  # 8 noisy 1024 px PNGs: about 3 MB each once prepared
        for i in range(4):
            write_image(tmp_path / "data" / "fundus" / truth / f"big_{i}.png", seed=i + (9 if truth == "real" else 0),
                        size=1024)  # fmt: skip
    manifest, store = tmp_path / "m.csv", tmp_path / "store"
    cli("ingest", "scan", str(tmp_path / "data"), "--out", str(manifest), "--no-audit")
    with GeminiBatchServer() as gm:
        run(manifest, store, "gemini:gemini-2.5-flash", env(gm=gm), "--batch", "--wait")
        (entry,) = ledger.entries(store)
        assert (
            entry.mode == "file"
            and entry.payload_bytes > 19_000_000
            and entry.input_file.startswith("files/")
        )
        assert sum(1 for method, path in gm.requests if path.startswith("/upload-session/")) >= 2  # chunks
        (batch,) = gm.batches.values()
        assert batch["file_input"] and batch["source"] == {"fileName": entry.input_file}
        rows = store_rows(store)
        assert len(rows) == 8 and {r["label"] for r in rows} == {"real"} and entry.rows_collected == 8


def test_the_file_line_is_what_the_sdk_sends_inline() -> None:
    """A file-mode line and the SDK's own conversion of the same call agree (image, text, config).
    The SDK's converter is private: this test is the alarm if a new SDK changes the wire form."""
    from google import genai
    from google.genai import _common
    from google.genai.batches import _InlinedRequest_to_mldev

    from ingest.providers.base import ProviderOptions
    from ingest.providers.gemini_batch import GeminiBatch, _inlined
    from ingest.providers.registry import create_provider, parse_spec
    from tests.loopback import make_request

    provider = create_provider(parse_spec("gemini:gemini-2.5-flash"), ProviderOptions(max_tokens=123))
    line = json.loads(GeminiBatch(provider).line("k1", make_request(structured=True)))
    sdk = _InlinedRequest_to_mldev(genai.Client(api_key="x")._api_client, _inlined(line))
    sdk = json.loads(
        json.dumps(_common.encode_unserializable_types(_common.convert_to_dict(sdk)))
    )  # as create does
    assert sdk["metadata"] == {"key": "k1"}
    # The API reads proto JSON, where snake_case and camelCase field names are the same field (the
    # SDK itself sends property_ordering in snake_case): compare with names in one case.
    assert camel(sdk["request"]["generationConfig"]) == camel(line["request"]["generationConfig"])
    ours, theirs = line["request"]["contents"][0]["parts"], sdk["request"]["contents"][0]["parts"]
    image = make_request().image
    assert b64(ours[0]["inlineData"]["data"]) == b64(theirs[0]["inlineData"]["data"]) == image
    assert ours[1] == theirs[1]


def b64(text: str) -> bytes:
    """Standard or URL-safe base64 (proto JSON accepts both; the SDK sends URL-safe)."""
    return base64.b64decode(text.replace("-", "+").replace("_", "/"))


def camel(value):
    if isinstance(value, dict):
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): camel(v) for k, v in value.items()}
    return [camel(v) for v in value] if isinstance(value, list) else value


def test_dry_run_and_budget_use_the_batch_price(study: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    online = run(study, store, "openai:gpt-4o", env(), "--dry-run").stdout
    batch = run(study, store, "openai:gpt-4o", env(), "--dry-run", "--batch").stdout

    def total(text: str) -> float:
        return float(text.split("estimated total: $")[1].split()[0])

    assert total(batch) == pytest.approx(total(online) / 2, abs=1e-4)
    with OpenAIBatchServer() as oa:
        out = run(
            study, store, "openai:gpt-4o", env(oa), "--batch", "--budget", f"{total(batch) / 2:.6f}"
        ).stdout
        assert "budget reached: 2 call(s) not made" in out
        assert len(openai_sent(oa)) == 2


CRASH_POINTS_OPENAI = ["save:built/None", "save:built/upload", "after:upload", "save:uploaded/None",
                       "save:uploaded/submit", "after:create", "save:submitted/None", "save:finished/None",
                       "save:finished/collect", "after:rows"]  # fmt: skip
CRASH_POINTS_GEMINI = ["save:built/None", "save:built/submit", "after:create", "save:submitted/None",
                       "save:finished/collect", "after:rows"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "point"),
    [("openai:gpt-4o", p) for p in CRASH_POINTS_OPENAI]
    + [("gemini:gemini-2.5-flash", p) for p in CRASH_POINTS_GEMINI],
)
def test_sigkill_after_each_ledger_step_then_resume(
    study: Path, tmp_path: Path, model: str, point: str
) -> None:
    """Killed at each step, the same command resumes: one provider batch per ledger entry, each
    call sent once, every answer stored once."""
    store = tmp_path / "store"
    server_cls = OpenAIBatchServer if model.startswith("openai") else GeminiBatchServer
    with server_cls() as server:
        environ = env(oa=server) if model.startswith("openai") else env(gm=server)
        args = ("--manifest", str(study), "--model", model, "--store", str(store), "--no-progress", "--batch",
                "--wait", "--poll-interval", "0.05", "--max-tokens", "300")  # fmt: skip
        killed = cli("tests.batch_crash", point, "run", *args, env=environ, check=False)
        assert killed.returncode == -9, (killed.stdout, killed.stderr)
        run(study, store, model, environ, "--batch", "--wait")
        entries = ledger.entries(store)
        assert [e.state for e in entries] == ["collected"]
        assert [e.batch_id for e in entries] == [
            f"batches/{b}" if model.startswith("gemini") else b for b in server.created
        ]  # exactly one provider-side batch, adopted if it was made before the kill
        sent = openai_sent(server) if model.startswith("openai") else gemini_sent(server)
        assert len(sent) == len(set(sent)) == 4  # no call sent (paid) twice
        rows = store_rows(store)
        assert (
            len(rows) == 4 and {r["key"] for r in rows} == set(sent) and {r["status"] for r in rows} == {"ok"}
        )
        if model.startswith("openai"):
            assert len([f for f in server.files.values() if f["purpose"] == "batch"]) == 1  # one upload


def test_a_batch_that_never_finishes_stops_waiting_and_keeps_its_state(study: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with OpenAIBatchServer(finish_after=None) as oa:
        out = run(
            study, store, "openai:gpt-4o", env(oa), "--batch", "--wait", "--wait-timeout", "1", check=False
        )
        assert out.returncode == 3
        assert "still running after 1 s" in out.stderr and "python -m ingest batches --collect" in out.stderr
        (entry,) = ledger.entries(store)
        assert (entry.state, entry.provider_state) == ("submitted", "in_progress")
        assert store_rows(store) == [] and len(oa.created) == 1
        no_key = cli(
            "ingest", "batches", "--store", str(store), env={**env(oa), "OPENAI_API_KEY": ""}, check=False
        )
        assert no_key.returncode == 1 and "set OPENAI_API_KEY" in no_key.stderr  # named, and still listed:
        assert entry.ledger_id in no_key.stdout and "in_progress" in no_key.stdout
        oa.finish_after = 0
        cli("ingest", "batches", "--store", str(store), "--collect", env=env(oa))
        assert len(store_rows(store, "status = 'ok'")) == 4 and len(oa.created) == 1


def test_cancelled_and_expired_batches_leave_their_keys_open(study: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with OpenAIBatchServer(finish_after=None) as oa:
        run(study, store, "openai:gpt-4o", env(oa), "--batch")
        (entry,) = ledger.entries(store)
        out = cli(
            "ingest", "batches", "--store", str(store), "--cancel", entry.ledger_id, "--collect", env=env(oa)
        )
        assert f"collected {entry.ledger_id} (cancelled): 0 row(s)" in out.stdout
    with OpenAIServer(default=("ok", TEXT)) as online:  # the next run calls every key, once
        out = run(study, store, "openai:gpt-4o", env(online)).stdout
        assert len(online.requests) == 4 and len(store_rows(store)) == 4

    store2 = tmp_path / "store2"
    with GeminiBatchServer(ending="expired", answered_before_expiry=1) as gm:
        run(study, store2, "gemini:gemini-2.5-flash", env(gm=gm), "--batch", "--wait")
        (entry,) = ledger.entries(store2)
        assert (entry.outcome, entry.rows_collected) == ("expired", 1)
    with GeminiServer(default=("ok", TEXT)) as online:
        run(study, store2, "gemini:gemini-2.5-flash", env(gm=online))
        assert len(online.requests) == 3 and len(store_rows(store2, "status = 'ok'")) == 4


@pytest.mark.parametrize(("model", "server_cls", "online_cls"), [
    ("openai:gpt-4o", OpenAIBatchServer, OpenAIServer),
    ("gemini:gemini-2.5-flash", GeminiBatchServer, GeminiServer),
])  # fmt: skip
def test_a_collected_batch_gives_the_rows_of_an_online_run(
    study, tmp_path, model, server_cls, online_cls
) -> None:
    """Same keys, same answers, same parsed labels: only batch columns, cost and timing differ."""
    is_openai = model.startswith("openai")
    with online_cls(default=("ok", TEXT)) as online:
        run(study, tmp_path / "online", model, env(oa=online) if is_openai else env(gm=online))
    with server_cls() as server:
        run(
            study,
            tmp_path / "batch",
            model,
            env(oa=server) if is_openai else env(gm=server),
            "--batch",
            "--wait",
        )
    differ = {"run_id", "created_at", "latency_ms", "queued_ms", "batch_id", "cost_usd"}
    online_rows = {r["key"]: r for r in store_rows(tmp_path / "online")}
    batch_rows = {r["key"]: r for r in store_rows(tmp_path / "batch")}
    assert set(online_rows) == set(batch_rows) and len(batch_rows) == 4
    for key, row in batch_rows.items():
        same = {k: v for k, v in row.items() if k not in differ}
        assert same == {k: v for k, v in online_rows[key].items() if k not in differ}
        assert row["cost_usd"] == pytest.approx(online_rows[key]["cost_usd"] / 2)
        assert row["batch_id"] and online_rows[key]["batch_id"] is None


def test_packing_keeps_each_batch_within_count_and_bytes(tmp_path: Path) -> None:
    from ingest.batch import pack
    from ingest.rows import CallMeta

    def call(i: int) -> CallMeta:
        return CallMeta(
            f"k{i}", "openai", "openai:m", "{}", "paper", "s", "t", "sha", "p.png", "fundus", "real", "", 0
        )

    lines = [(call(i), b"x" * (100 + i) + b"\n") for i in range(10)]
    packs = list(pack(tmp_path, iter(lines), max_requests=4, max_bytes=350))
    assert [len(p.calls) for p in packs] == [3, 3, 3, 1]  # bytes bind before the count of 4
    assert all(p.bytes <= 350 and p.path.stat().st_size == p.bytes for p in packs)
    assert [c.key for p in packs for c in p.calls] == [f"k{i}" for i in range(10)]
    assert [len(p.calls) for p in pack(tmp_path, iter(lines), max_requests=4, max_bytes=10_000)] == [4, 4, 2]
    with pytest.raises(ValueError, match="larger than a batch may be"):
        list(pack(tmp_path, iter(lines), max_requests=4, max_bytes=50))
    assert not list((tmp_path / "batches").glob(".*.tmp"))


def test_batch_usage_errors_exit_2(study: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    local = run(study, store, "baseline:forensic", env(), "--batch", check=False)
    assert local.returncode == 2 and "baseline:forensic has no batch API" in local.stderr
    assert "openai:<model>" in local.stderr
    assert run(study, store, "openai:gpt-4o", env(), "--wait", check=False).returncode == 2
    bad = cli("ingest", "batches", "--store", str(store), "--cancel", "../../etc/passwd", check=False)
    assert bad.returncode == 2 and "is not a ledger id" in bad.stderr


def test_an_online_run_does_not_call_keys_waiting_in_a_batch(study: Path, tmp_path: Path) -> None:
    store = tmp_path / "store"
    with OpenAIBatchServer(finish_after=None) as oa:
        run(study, store, "openai:gpt-4o", env(oa), "--batch")
    with OpenAIServer(default=("ok", TEXT)) as online:
        out = run(study, store, "openai:gpt-4o", env(online)).stdout
        assert online.requests == [] and "4 call(s) of this store wait in provider batches" in out


def test_keys_another_live_run_is_calling_are_not_batched(study: Path, tmp_path: Path) -> None:
    """--batch claims its keys like an online run: a key held by a live run is skipped, not paid twice."""
    import asyncio

    from cache.leases import Claims
    from cache.store import Store
    from ingest.images import PrepOptions
    from ingest.manifest import read_manifest
    from ingest.providers.base import ProviderOptions
    from ingest.providers.registry import create_provider, parse_spec
    from ingest.runner import Runner

    store = Store(tmp_path / "store")
    provider = create_provider(parse_spec("openai:gpt-4o"), ProviderOptions(max_tokens=300))
    runner = Runner(store=store, rows=read_manifest(study), manifest_dir=study.parent, providers=[provider],
                    prompt=load_prompt("paper"), prep=PrepOptions(), progress=False)  # fmt: skip
    keys = sorted(t.key for t in runner.plan(asyncio.run(runner.identify()), set()))
    holder = store.owner("ingest run (test)").start()
    try:
        assert Claims(store.storage, holder).try_many(keys[:2]).won == keys[:2]
        with OpenAIBatchServer() as oa:
            out = run(study, store.root, "openai:gpt-4o", env(oa), "--batch").stdout
            assert sorted(openai_sent(oa)) == keys[2:]
            assert "skipped 2 call(s) that another run is making (`ingest run (test)`" in out
    finally:
        holder.stop()
