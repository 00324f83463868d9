"""No API key reaches the store, an export, a report, the methods text or a log line, end to end.

The CLI runs with keys set against loopback servers that echo the key back in their error messages
(as a careless proxy might); then every byte MedLens wrote or printed is searched for the keys.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pyarrow.parquet as pq

from tests.loopback import GeminiServer, OpenAIServer
from tests.pipeline_helpers import cli, make_dataset

OPENAI_KEY = "sk-proj-E2ESECRETopenai0123456789abcdef"
GEMINI_KEY = "AIzaSyE2ESECRETgemini0123456789abcdef"
COMPAT_KEY = "plain-E2ESECRET-compat-0123456789"
KEYS = (OPENAI_KEY, GEMINI_KEY, COMPAT_KEY)


def _assert_clean(name: str, data: bytes) -> None:
    for key in KEYS:
        assert key.encode() not in data, f"{key[:12]}... found in {name}"
        assert key[8:24].encode() not in data, f"a fragment of {key[:12]}... found in {name}"


def test_keys_never_written_or_printed(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", per_cell=3, modalities=("fundus",))
    manifest = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest))
    store = tmp_path / "store"
    outputs: list[tuple[str, str]] = []
    with OpenAIServer(default=("ok", "Real.")) as oa, OpenAIServer(default=("ok", "Synthetic.")) as compat, \
            GeminiServer(default=("ok", "Real.")) as gem:
        for key, server in ((OPENAI_KEY, oa), (COMPAT_KEY, compat), (GEMINI_KEY, gem)):
            server.push(("status", 401, {}, f"Incorrect API key provided: {key}"),
                        ("status", 400, {}, f"bad request for {key}: image could not be decoded"),
                        ("status", 500, {}, f"internal error, key={key}"))
        env = {"OPENAI_API_KEY": OPENAI_KEY, "GEMINI_API_KEY": GEMINI_KEY,
               "MEDLENS_COMPAT_API_KEY": COMPAT_KEY, "OPENAI_BASE_URL": oa.base_url,
               "GOOGLE_GEMINI_BASE_URL": gem.base_url}
        models = ["--model", "openai:gpt-4o", "--model", "gemini:gemini-2.5-flash",
                  "--model", f"compat:llava@{compat.base_url}"]
        for _ in range(2):  # the second run retries the error rows of the first
            proc = cli("ingest", "run", "--manifest", str(manifest), *models, "--store", str(store),
                       "--max-attempts", "2", "--max-retry-wait", "0.1", env=env)
            outputs.append(("run stdout+stderr", proc.stdout + proc.stderr))
        for args in (("ingest", "models"), ("cache", "--store", str(store), "stats"),
                     ("cache", "--store", str(store), "metrics", "--json"),
                     ("cache", "--store", str(store), "methods")):
            proc = cli(*args, env=env)
            outputs.append((" ".join(args[:3]), proc.stdout + proc.stderr))
        cli("cache", "--store", str(store), "export", str(tmp_path / "b.zip"), env=env)
        cli("cache", "--store", str(store), "report", str(tmp_path / "r.html"), env=env)
    rows = cli("cache", "--store", str(store), "stats").stdout
    assert "error" in rows and "ok" in rows  # the faults really were recorded, and answers too
    for name, text in outputs:
        _assert_clean(name, text.encode())
    written = [p for p in store.rglob("*") if p.is_file()] + [tmp_path / "r.html"]
    assert any(p.suffix == ".parquet" for p in written)
    for path in written:
        _assert_clean(str(path), _content(path.suffix, path.read_bytes()))
    with zipfile.ZipFile(tmp_path / "b.zip") as bundle:
        for member in bundle.namelist():
            _assert_clean(f"b.zip:{member}", _content(Path(member).suffix, bundle.read(member)))


def _content(suffix: str, data: bytes) -> bytes:
    """Parquet is compressed: search its decoded values, not its bytes."""
    if suffix != ".parquet":
        return data
    return repr(pq.read_table(io.BytesIO(data)).to_pylist()).encode()
