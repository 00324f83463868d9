"""The measure of issue 11.1: a new provider is one module plus one test module, and nothing else.

This test module is both. ``ExampleProvider`` below speaks a made-up HTTP API (``POST
{EXAMPLE_BASE_URL}/v1/answer``, key in ``X-Example-Credential``) and registers itself from here
only; no other file of MedLens names it. The subprocess runs of ``python -m ingest`` find it the way
an installed plugin is found: through the ``medlens.providers`` entry point group, declared by a
throw-away ``.dist-info`` folder the test puts on ``PYTHONPATH`` (it points at this module).

End to end through the real CLI: ``ingest models`` lists it with its credentials, a missing key
stops the run naming its env var, ``--dry-run`` prices it with its own image-token rule, ``ingest
run`` stores its rows with cost, the key it echoes in an error is scrubbed (the env var's name does
not look like a key, so only the registry's ``key_envs()`` knows it), and a second run calls only
the error.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import os
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import pytest

from ingest.providers.base import CallRequest, Provider, ProviderError, Reply
from ingest.providers.registry import Keys, PriceRule, provider
from tests.pipeline_helpers import ROOT, cli, make_dataset, store_rows

KEY_ENV, URL_ENV = "EXAMPLE_AUTH", "EXAMPLE_BASE_URL"  # a name no generic pattern calls secret


@provider(
    prefix="example",
    form="example:<model>",
    example="example:vision-1",
    summary="a made-up HTTP API (tests/test_provider_example.py)",
    keys=Keys((KEY_ENV,)),
    price=PriceRule(image_tokens="flat:50"),
)
class ExampleProvider(Provider):
    """The whole provider: build the request, make the call, read the reply, classify failures."""

    async def call(self, request: CallRequest) -> Reply:
        body = {
            "model": self.spec.model,
            "prompt": request.prompt_text,
            "image": base64.b64encode(request.image or b"").decode(),
        }
        return await asyncio.to_thread(self._post, body)

    def _post(self, body: dict) -> Reply:
        http = urllib.request.Request(
            f"{os.environ[URL_ENV]}/v1/answer",
            data=json.dumps(body).encode(),
            headers={"X-Example-Credential": self.api_key() or "", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(http, timeout=self.options.timeout_s) as response:
                reply = json.load(response)
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")[:300]
            kind, retry = ("server_error", True) if exc.code >= 500 else ("bad_request", False)
            raise ProviderError(
                kind, f"{self.spec.raw}: HTTP {exc.code}: {text}", retryable=retry, status=exc.code
            ) from None
        except OSError as exc:
            raise ProviderError("connection", f"{self.spec.raw}: {exc}", retryable=True) from None
        return Reply(
            text=reply["answer"],
            finish_reason="stop",
            model_version=reply["version"],
            input_tokens=reply["tokens_in"],
            output_tokens=reply["tokens_out"],
        )


# --- the test -------------------------------------------------------------------------------------

SECRET = "example-credential-value-0123456789"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.seen.append((self.headers.get("X-Example-Credential"), body))  # type: ignore[attr-defined]
        if len(server.seen) == 2:  # type: ignore[attr-defined]
            payload, status = f"internal error while checking credential {SECRET}".encode(), 500
        else:
            answer = {
                "answer": "Synthetic. Smooth vessels.",
                "version": f"{body['model']}-2026",
                "tokens_in": 400,
                "tokens_out": 20,
            }
            payload, status = json.dumps(answer).encode(), 200
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture
def example_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.seen = []  # type: ignore[attr-defined]
    Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def plugin_path(tmp_path: Path) -> Path:
    """A .dist-info that declares this module under the ``medlens.providers`` entry point group."""
    info = tmp_path / "plugins" / "medlens_example-0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: medlens-example\nVersion: 0\n")
    (info / "entry_points.txt").write_text("[medlens.providers]\nexample = tests.test_provider_example\n")
    return info.parent


def test_a_provider_from_one_module_runs_end_to_end(tmp_path: Path, example_server) -> None:
    data = make_dataset(tmp_path / "data", per_cell=2, modalities=("fundus",))
    manifest, store = tmp_path / "m.csv", tmp_path / "store"
    cli("ingest", "scan", str(data), "--out", str(manifest), "--no-audit")
    prices = tmp_path / "prices.csv"
    prices.write_text("model,input_per_mtok,output_per_mtok\nexample:vision-1,1.00,2.00\n")
    env = {
        "PYTHONPATH": f"{ROOT}:{plugin_path(tmp_path)}",
        "MEDLENS_PRICES": str(prices),
        URL_ENV: f"http://127.0.0.1:{example_server.server_address[1]}",
    }
    run = (
        "ingest",
        "run",
        "--manifest",
        str(manifest),
        "--model",
        "example:vision-1",
        "--store",
        str(store),
        "--max-attempts",
        "1",
        "--concurrency",
        "1",
        "--no-progress",
    )

    listed = cli("ingest", "models", env=env).stdout
    assert "example" in listed and f"missing: set {KEY_ENV}" in listed and "example:<model>" in listed
    assert f"{KEY_ENV} is set" in cli("ingest", "models", env={**env, KEY_ENV: SECRET}).stdout

    missing = cli(*run, env=env, check=False)
    assert missing.returncode == 2 and f"set {KEY_ENV}" in missing.stderr and not example_server.seen

    dry = cli(*run, "--dry-run", env=env).stdout  # the entry's image rule, flat:50, prices the image
    prompt_tokens = math.ceil(len(_prompt_text()) / 4) + 10  # the estimate's prompt framing
    expected = 4 * ((prompt_tokens + 50) * 1.00 + 300 * 2.00) / 1e6
    assert f"${expected:,.4f}" in dry and not example_server.seen

    env[KEY_ENV] = SECRET
    out = cli(*run, env=env).stdout
    rows = store_rows(store)
    assert len(rows) == 4 and {r["provider"] for r in rows} == {"example"}
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) == 3 and {r["label"] for r in ok} == {"synthetic"}
    assert {r["model_version"] for r in ok} == {"vision-1-2026"}
    assert [r["cost_usd"] for r in ok] == pytest.approx([(400 * 1.00 + 20 * 2.00) / 1e6] * 3)
    (error,) = [r for r in rows if r["status"] == "error"]
    assert error["error_type"] == "server_error" and "internal error while checking" in error["error_message"]
    everything = (
        json.dumps(rows, default=str) + out + "".join(p.read_text() for p in (store / "runs").glob("*"))
    )
    assert SECRET not in everything and "[redacted]" in error["error_message"]
    assert {key for key, _ in example_server.seen} == {SECRET}

    cli(*run, env=env)  # only the error is called again
    assert len(example_server.seen) == 5 and len(store_rows(store, "status = 'ok'")) == 4


def _prompt_text() -> str:
    from ingest.prompts import load_prompt

    return load_prompt("paper").text
