"""The real SDKs through the whole pipeline: CLI -> runner -> provider -> loopback server -> store.

Asserts on what was sent (decoded image pixels, prompt text, model, parameters, JSON schema) and on
the stored rows (labels, model version, tokens, cost, finish reason, error types and attempts), then
that a second run calls only the keys that ended as errors.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from ingest.images import PrepOptions, prepare_image
from ingest.prompts import load_prompt
from tests.loopback import USAGE_IN, USAGE_OUT, USAGE_THOUGHTS, GeminiServer, OpenAIServer
from tests.pipeline_helpers import cli, make_dataset, store_rows

JSON_TEXT = '{"label": "synthetic", "confidence": 0.8, "interpretation": "Smooth vessels; likely a GAN."}'


def _pixels(data: bytes) -> bytes:
    return Image.open(io.BytesIO(data)).convert("RGB").tobytes()


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, list[Path]]:
    data = make_dataset(tmp_path / "data", per_cell=2, modalities=("fundus",))
    manifest = tmp_path / "m.csv"
    cli("ingest", "scan", str(data), "--out", str(manifest), "--no-audit")
    return manifest, [manifest.parent / line.split(",")[0] for line in manifest.read_text().splitlines()[1:]]


def test_openai_and_gemini_rows_and_requests(study, tmp_path: Path) -> None:
    manifest, files = study
    store = tmp_path / "store"
    prompt = load_prompt("json")
    with OpenAIServer(default=("ok", JSON_TEXT)) as oa, GeminiServer(default=("ok", JSON_TEXT)) as gem:
        oa.push(
            ("content_filter",),
            ("status", 429, {"Retry-After": "0"}),
            ("ok", JSON_TEXT),
            ("status", 400, {}, "Invalid image: could not process image"),
        )
        gem.push(
            ("safety",),
            ("blocked_prompt", "PROHIBITED_CONTENT"),
            ("status", 503),
            ("status", 503),
            ("ok", "Real. The optic disc is sharp."),
            ("empty_candidates",),
        )
        env = {
            "OPENAI_API_KEY": "sk-test-runner",
            "GEMINI_API_KEY": "AIza-test-runner",
            "OPENAI_BASE_URL": oa.base_url,
            "GOOGLE_GEMINI_BASE_URL": gem.base_url,
        }
        args = (
            "ingest",
            "run",
            "--manifest",
            str(manifest),
            "--model",
            "openai:gpt-4o",
            "--model",
            "gemini:gemini-2.5-flash",
            "--prompt",
            "json",
            "--store",
            str(store),
            "--concurrency",
            "1",
            "--max-retry-wait",
            "0.2",
            "--temperature",
            "0.2",
            "--max-tokens",
            "300",
            "--no-progress",
        )
        out = cli(*args, env=env).stdout

        rows = {
            (r["model"], Path(r["image_path"]).name, Path(r["image_path"]).parent.name): r
            for r in store_rows(store)
        }
        assert len(rows) == 8
        order = [(Path(f).name, f.parent.name) for f in files]  # the manifest's order = call order

        def row(model: str, index: int) -> dict:
            return rows[(model, *order[index])]

        oa0, oa1, oa2, oa3 = (row("openai:gpt-4o", i) for i in range(4))
        assert (oa0["status"], oa0["label"], oa0["finish_reason"]) == ("ok", "refused", "content_filter")
        assert (oa1["status"], oa1["label"], oa1["attempts"]) == ("ok", "synthetic", 2)
        assert oa1["model_version"] == "gpt-4o-2024-08-06"
        assert (oa1["input_tokens"], oa1["output_tokens"]) == (USAGE_IN, USAGE_OUT)
        assert oa1["cost_usd"] == pytest.approx(USAGE_IN * 2.5e-6 + USAGE_OUT * 10e-6)
        assert oa1["confidence"] == 0.8 and oa1["interpretation"] == "Smooth vessels; likely a GAN."
        assert (oa2["status"], oa2["error_type"], oa2["attempts"]) == ("error", "image_rejected", 1)
        assert "could not process image" in oa2["error_message"]
        assert oa3["label"] == "synthetic"

        g0, g1, g2, g3 = (row("gemini:gemini-2.5-flash", i) for i in range(4))
        assert (g0["label"], g0["finish_reason"]) == ("refused", "SAFETY")
        assert g1["label"] == "refused" and "PROHIBITED_CONTENT" in g1["finish_reason"]
        assert (g2["status"], g2["label"], g2["attempts"]) == ("ok", "real", 3)
        assert g2["model_version"] == "gemini-2.5-flash-001"
        assert (g3["status"], g3["error_type"]) == ("error", "empty_reply")
        assert "error image_rejected: 1" in out and "error empty_reply: 1" in out

        # What was sent: the prepared image (pixel-equal), the prompt, the model, the parameters.
        sent = oa.requests[1]["body"]
        assert sent["model"] == "gpt-4o" and sent["temperature"] == 0.2
        assert sent.get("max_completion_tokens", sent.get("max_tokens")) == 300
        text_part = next(p for p in sent["messages"][0]["content"] if p["type"] == "text")
        image_part = next(p for p in sent["messages"][0]["content"] if p["type"] == "image_url")
        assert text_part["text"] == prompt.text and image_part["image_url"]["detail"] == "high"
        assert sent["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == [
            "real",
            "synthetic",
            "uncertain",
        ]
        data = base64.b64decode(image_part["image_url"]["url"].split(",", 1)[1])
        assert _pixels(data) == _pixels(prepare_image(files[1], PrepOptions()).data)
        gsent = gem.requests[0]["body"]
        parts = gsent["contents"][0]["parts"]
        inline = next(p for p in parts if "inlineData" in p or "inline_data" in p)
        inline = inline.get("inlineData") or inline.get("inline_data")
        gdata = base64.urlsafe_b64decode(inline["data"])
        assert _pixels(gdata) == _pixels(prepare_image(files[0], PrepOptions()).data)
        assert any(p.get("text") == prompt.text for p in parts)
        config = gsent.get("generationConfig") or gsent.get("generation_config")
        assert config.get("temperature") == 0.2
        assert (config.get("maxOutputTokens") or config.get("max_output_tokens")) == 300

        # Second run: only the two error keys are called again.
        before = (len(oa.requests), len(gem.requests))
        cli(*args, env=env)
        assert (len(oa.requests), len(gem.requests)) == (before[0] + 1, before[1] + 1)
    ok = [r for r in store_rows(store) if r["status"] == "ok"]
    assert len(ok) == 8 and len({r["key"] for r in ok}) == 8


def test_replies_seen_in_recordings_of_the_real_apis(study, tmp_path: Path) -> None:
    """Issue 8.7 through CLI, runner and store: a refusal keeps its sentence; a choice with no
    message is a refusal; a reply cut off with no text is a paid `truncated` error row retried by
    the next run (with text it is an answer); Gemini thinking tokens are output tokens and cost."""
    manifest, files = study
    store = tmp_path / "store"
    sentence = "I'm sorry, I can't help determine whether this medical image is authentic."
    with OpenAIServer(default=("ok", "Real.")) as oa, GeminiServer(default=("ok", "Real.")) as gem:
        oa.push(("refusal", sentence), ("no_message",), ("length", None), ("length", "Synthetic. The disc"))
        gem.push(("thinking_budget",), ("thoughts", "Synthetic."), ("max_tokens", "Real. Normal"))
        env = {
            "OPENAI_API_KEY": "sk-test-runner",
            "GEMINI_API_KEY": "AIza-test-runner",
            "OPENAI_BASE_URL": oa.base_url,
            "GOOGLE_GEMINI_BASE_URL": gem.base_url,
        }
        args = (
            "ingest",
            "run",
            "--manifest",
            str(manifest),
            "--model",
            "openai:gpt-4o",
            "--model",
            "gemini:gemini-2.5-flash",
            "--store",
            str(store),
            "--concurrency",
            "1",
            "--max-tokens",
            "200",
            "--no-progress",
        )
        out = cli(*args, env=env).stdout
        order = [(Path(f).name, f.parent.name) for f in files]
        rows = {
            (r["model"], (Path(r["image_path"]).name, Path(r["image_path"]).parent.name)): r
            for r in store_rows(store)
        }
        oa0, oa1, oa2, oa3 = (rows[("openai:gpt-4o", o)] for o in order)
        assert (oa0["status"], oa0["raw_text"], oa0["label"]) == ("ok", sentence, "refused")
        assert (oa1["status"], oa1["raw_text"], oa1["label"], oa1["finish_reason"]) == (
            "ok",
            None,
            "refused",
            "content_filter",
        )
        assert (oa2["status"], oa2["error_type"], oa2["attempts"]) == ("error", "truncated", 1)
        assert "raise --max-tokens (now 200)" in oa2["error_message"]
        assert (oa2["finish_reason"], oa2["output_tokens"]) == ("length", USAGE_OUT)
        assert oa2["cost_usd"] == pytest.approx(USAGE_IN * 2.5e-6 + USAGE_OUT * 10e-6)  # it was paid
        assert (oa3["status"], oa3["label"], oa3["finish_reason"]) == ("ok", "synthetic", "length")

        g0, g1, g2, _ = (rows[("gemini:gemini-2.5-flash", o)] for o in order)
        assert (g0["status"], g0["error_type"], g0["finish_reason"]) == ("error", "truncated", "MAX_TOKENS")
        assert (g0["input_tokens"], g0["output_tokens"]) == (USAGE_IN, USAGE_THOUGHTS)
        assert g0["cost_usd"] == pytest.approx(USAGE_IN * 0.30e-6 + USAGE_THOUGHTS * 2.50e-6)
        assert "--max-tokens" in g0["error_message"]
        assert (g1["label"], g1["output_tokens"]) == ("synthetic", USAGE_OUT + USAGE_THOUGHTS)
        assert g1["cost_usd"] == pytest.approx(USAGE_IN * 0.30e-6 + (USAGE_OUT + USAGE_THOUGHTS) * 2.50e-6)
        assert (g2["status"], g2["label"]) == ("ok", "real")
        assert "error truncated: 1" in out

        before = (len(oa.requests), len(gem.requests))
        cli(*args, env=env)  # the next run calls the two truncated keys again, nothing else
        assert (len(oa.requests), len(gem.requests)) == (before[0] + 1, before[1] + 1)
    latest = {r["key"]: r for r in sorted(store_rows(store), key=lambda r: r["created_at"])}
    assert sum(r["status"] == "ok" for r in latest.values()) == 8


def test_models_lists_credentials_without_values(monkeypatch) -> None:
    out = cli(
        "ingest",
        "models",
        env={"OPENAI_API_KEY": "sk-visible-NEVER-PRINT", "GEMINI_API_KEY": "", "GOOGLE_API_KEY": ""},
    ).stdout
    assert "OPENAI_API_KEY is set" in out and "sk-visible" not in out
    assert "missing: set GEMINI_API_KEY or GOOGLE_API_KEY" in out
    assert "gpt-4o" in out and "gemini-2.5-flash" in out
