"""No API key reaches the store, an export, a report, the methods text or a log line, end to end.

The CLI runs with keys set (and a password in OPENAI_BASE_URL's userinfo) against loopback servers
that echo what they were sent, as a careless proxy might: in error messages, in the answer text, in
the model version and in a response header. Then every file MedLens wrote, decoded (Parquet read
back, JSON parsed, HTML unescaped), every bundle member, stdout and stderr are searched for each
secret and for every 16-character fragment of it.
"""

from __future__ import annotations

import base64
import html
import io
import json
import zipfile
from pathlib import Path

import pyarrow.parquet as pq

from tests.loopback import GeminiServer, OpenAIServer
from tests.pipeline_helpers import cli, make_dataset, store_rows

OPENAI_KEY = "sk-proj-E2ESECRETopenai0123456789abcdef"
GEMINI_KEY = "AIzaSyE2ESECRETgemini0123456789abcdef"
COMPAT_KEY = "plain-E2ESECRET-compat-0123456789"
BASIC_USER, BASIC_PASSWORD = "medlens", "pw-E2ESECRET-basic-9876543210"
BASIC = base64.b64encode(f"{BASIC_USER}:{BASIC_PASSWORD}".encode()).decode()  # what the SDK sends
KEYS = (OPENAI_KEY, GEMINI_KEY, COMPAT_KEY, BASIC_PASSWORD, BASIC)


def _assert_clean(name: str, text: str) -> None:
    for key in KEYS:
        assert key not in text, f"{key[:12]}... found in {name}"
        for start in range(len(key) - 15):
            fragment = key[start : start + 16]
            assert fragment not in text, f"{fragment!r}, a fragment of {key[:12]}..., found in {name}"


def _decoded(suffix: str, data: bytes) -> str:
    """What a reader of the file sees: Parquet values, JSON values, HTML text."""
    if suffix == ".parquet":
        return repr(pq.read_table(io.BytesIO(data)).to_pylist())
    text = data.decode("utf-8", errors="replace")
    if suffix == ".json":
        return json.dumps(json.loads(text), ensure_ascii=False)
    if suffix == ".jsonl":
        return " ".join(
            json.dumps(json.loads(line), ensure_ascii=False) for line in text.splitlines() if line
        )
    return html.unescape(text) if suffix == ".html" else text


def _script(server, key: str) -> None:
    """Failures that echo the key, then (default) answers that echo the request's credentials."""
    server.push(
        ("status", 401, {}, f"Incorrect API key provided: {key}"),
        ("status", 400, {}, f"bad request for {key}: image could not be decoded"),
        ("status", 500, {}, f"internal error, key={key}"),
        ("echo_status", 403),
        ("echo_status", 500),
    )


def test_keys_never_written_or_printed(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", per_cell=3, modalities=("fundus",))
    manifest = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest))
    store = tmp_path / "store"
    outputs: list[tuple[str, str]] = []
    with (
        OpenAIServer(default=("echo",)) as oa,
        OpenAIServer(default=("echo",)) as compat,
        GeminiServer(default=("echo",)) as gem,
    ):
        for key, server in ((OPENAI_KEY, oa), (COMPAT_KEY, compat), (GEMINI_KEY, gem)):
            _script(server, key)
        env = {
            "OPENAI_API_KEY": OPENAI_KEY,
            "GEMINI_API_KEY": GEMINI_KEY,
            "MEDLENS_COMPAT_API_KEY": COMPAT_KEY,
            "OPENAI_BASE_URL": oa.base_url.replace("http://", f"http://{BASIC_USER}:{BASIC_PASSWORD}@"),
            "GOOGLE_GEMINI_BASE_URL": gem.base_url,
        }
        models = [
            "--model",
            "openai:gpt-4o",
            "--model",
            "gemini:gemini-2.5-flash",
            "--model",
            f"compat:llava@{compat.base_url}",
        ]
        for _ in range(2):  # the second run retries the error rows of the first
            proc = cli(
                "ingest",
                "run",
                "--manifest",
                str(manifest),
                *models,
                "--store",
                str(store),
                "--max-attempts",
                "2",
                "--max-retry-wait",
                "0.1",
                env=env,
            )
            outputs.append(("run stdout+stderr", proc.stdout + proc.stderr))
        for args in (
            ("ingest", "models"),
            ("cache", "--store", str(store), "stats"),
            ("cache", "--store", str(store), "metrics", "--json"),
            ("cache", "--store", str(store), "methods"),
            ("cache", "--store", str(store), "export", str(tmp_path / "b.zip")),
            ("cache", "--store", str(store), "report", str(tmp_path / "r.html")),
        ):
            proc = cli(*args, env=env)
            outputs.append((" ".join(args[:3]), proc.stdout + proc.stderr))
        echoed = {server: server.requests for server in (oa, compat, gem)}
    rows = store_rows(store)
    # the servers really were sent the secrets, and really echoed them into every field
    assert any(r["headers"].get("authorization") == f"Basic {BASIC}" for r in echoed[oa])
    assert any(r["headers"].get("authorization") == f"Bearer {COMPAT_KEY}" for r in echoed[compat])
    assert any(r["headers"].get("x-goog-api-key") == GEMINI_KEY for r in echoed[gem])
    assert {r["status"] for r in rows} == {"ok", "error"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= 18 and all(
        "Your request said" in r["raw_text"] and "+" in r["model_version"] for r in ok
    )
    for name, text in outputs:
        _assert_clean(name, text)
    written = [p for p in store.rglob("*") if p.is_file()] + [tmp_path / "r.html"]
    assert any(p.suffix == ".parquet" for p in written) and any(p.parent.name == "runs" for p in written)
    for path in written:
        _assert_clean(str(path), _decoded(path.suffix, path.read_bytes()))
    with zipfile.ZipFile(tmp_path / "b.zip") as bundle:
        for member in bundle.namelist():
            _assert_clean(f"b.zip:{member}", _decoded(Path(member).suffix, bundle.read(member)))
    # what was echoed is stored, without the secret: the answer is still read (label real)
    assert all("[redacted]" in r["raw_text"] and "[redacted]" in r["model_version"] for r in ok)
    assert all(r["label"] == "real" for r in ok)
    assert any("[redacted]" in (r["error_message"] or "") for r in rows if r["status"] == "error")
