"""The one scrubber (cache.redact): URL userinfo, Basic credentials, fragments, and where it is applied."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cache import redact
from cache.store import Store, rows_to_table

KEY = "sk-proj-UNITsecret-0123456789abcdefXYZ"
PLAIN = "opaque-UNIT-credential-value-4242"


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("SOME_SERVICE_TOKEN", PLAIN)
    monkeypatch.setenv("OPENAI_BASE_URL", "http://alice:s3cr%40t-pass-77@127.0.0.1:9/v1")


def test_ingest_uses_the_one_scrubber() -> None:
    from ingest.providers import retry

    assert retry.scrub is redact.scrub_secrets
    text = f"HTTP 401 for {KEY} at http://bob:hunter2-xyz@proxy.local:3128/v1 (Authorization: Basic Ym9iOmh1bnRlcjI=)"
    assert retry.scrub(text) == redact.scrub_secrets(text)


def test_url_userinfo_is_removed_and_the_rest_kept() -> None:
    assert redact.scrub_secrets("http://user:pw@host/v1") == "http://[redacted]@host/v1"
    assert (
        redact.scrub_secrets("connect to https://token@api.example.com:8443/x failed")
        == "connect to https://[redacted]@api.example.com:8443/x failed"
    )
    assert (
        redact.scrub_secrets("compat:llava@http://127.0.0.1:11434/v1")
        == "compat:llava@http://127.0.0.1:11434/v1"
    )
    assert redact.scrub_secrets("mail alice@example.org") == "mail alice@example.org"


def test_basic_and_bearer_credentials_are_removed_whole() -> None:
    basic = base64.b64encode(b"bob:hunter2-xyz").decode()
    for text in (
        f"Authorization: Basic {basic}",
        f"authorization=basic {basic}",
        f"'Authorization': 'Basic {basic}'",
        f"Proxy-Authorization: Basic {basic}",
        f"sent Basic {basic} to the proxy",
        "Bearer eyJhbGciOi.x.y",
    ):
        out = redact.scrub_secrets(text)
        assert basic not in out and "Ym9i" not in out and "eyJhbGciOi" not in out, out
        assert "[redacted]" in out


def test_the_password_of_a_url_variable_is_a_secret_in_every_form() -> None:
    basic = base64.b64encode(b"alice:s3cr@t-pass-77").decode()
    for leak in ("s3cr%40t-pass-77", "s3cr@t-pass-77", f"Basic {basic}", basic):
        assert "pass-77" not in redact.scrub_secrets(
            f"server said: {leak}"
        ) and basic not in redact.scrub_secrets(f"server said: {leak}")


def test_any_16_character_fragment_of_a_known_secret_is_cut() -> None:
    for piece in (KEY[5:25], KEY[-16:], PLAIN[3:19], PLAIN[:-2]):
        out = redact.scrub_secrets(f"the proxy echoed {piece} (truncated)")
        for start in range(len(piece) - 15):
            assert piece[start : start + 16] not in out, (piece, out)
        assert out.startswith("the proxy echoed [redacted]") and out.endswith("(truncated)")
    ordinary = (
        "The key findings: smooth vessels; token-like texture; no secret here. Basic anatomy is normal, "
        "basic morphology intact; the token budget ran out. See http://example.org/a@b"
    )
    assert redact.scrub_secrets(ordinary) == ordinary


def _row(**extra) -> dict:
    sha = hashlib.sha256(b"img").hexdigest()
    return {
        "key": "k" * 64,
        "run_id": "r1",
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
        "provider": "openai",
        "model": "openai:gpt-4o",
        "image_sha256": sha,
        "status": "ok",
        "repeat": 0,
    } | extra


def test_rows_are_scrubbed_before_they_are_written(tmp_path: Path) -> None:
    table = rows_to_table(
        [
            _row(
                raw_text=f"Real. (you sent Bearer {KEY})",
                model_version=f"gpt-4o+{PLAIN}",
                interpretation=f"key={KEY}",
            ),
            _row(
                status="error", error_message="connect http://alice:s3cr%40t-pass-77@127.0.0.1:9/v1: refused"
            ),
            _row(raw_text="Synthetic. The key findings are smooth vessels."),
        ]
    )
    rows = table.to_pylist()
    dumped = json.dumps(rows, default=str)
    assert KEY not in dumped and PLAIN not in dumped and "pass-77" not in dumped
    assert rows[0]["raw_text"] == "Real. (you sent Bearer [redacted])"
    assert rows[0]["model_version"] == "gpt-4o+[redacted]"
    assert rows[1]["error_message"] == "connect http://[redacted]@127.0.0.1:9/v1: refused"
    assert rows[2]["raw_text"] == "Synthetic. The key findings are smooth vessels."
    assert rows[0]["key"] == "k" * 64 and rows[0]["image_sha256"] == hashlib.sha256(b"img").hexdigest()
    store = Store(tmp_path / "store")
    store.write_run(
        "r1",
        {
            "run_id": "r1",
            "options": {"base_url": "http://alice:s3cr%40t-pass-77@h/v1"},
            "note": f"client built with {KEY}",
        },
    )
    record = (tmp_path / "store" / "runs" / "r1.json").read_text()
    assert KEY not in record and "pass-77" not in record and "http://[redacted]@h/v1" in record


def test_a_small_group_is_scrubbed_exactly_as_a_large_table() -> None:
    """Journal groups (<= SMALL_TABLE rows) take the per-cell path, parts the vectorised one."""
    texts = [
        f"Real. (you sent Bearer {KEY})",
        f"fragment {KEY[3:22]} echoed",
        "connect http://alice:s3cr%40t-pass-77@127.0.0.1:9/v1: refused",
        "Synthetic. The key findings are smooth vessels.",
        f"token={PLAIN}",
        "Real.",
        "",
    ]
    rows = [
        _row(
            raw_text=text,
            model_version=texts[(i + 1) % len(texts)] or None,
            interpretation=texts[(i + 2) % len(texts)],
        )
        for i, text in enumerate(texts * 20)
    ]
    assert len(rows) > redact.SMALL_TABLE
    large = rows_to_table(rows).to_pylist()
    small = [
        row for start in range(0, len(rows), 3) for row in rows_to_table(rows[start : start + 3]).to_pylist()
    ]
    assert small == large
    assert large[0]["raw_text"] == "Real. (you sent Bearer [redacted])" and large[3]["raw_text"] == texts[3]
    assert KEY[3:22] not in json.dumps(large, default=str) and PLAIN not in json.dumps(large, default=str)


def test_a_secret_set_after_a_text_was_scrubbed_is_still_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small groups memoise each cell's scrubbed text: the memo must not outlive the secrets it knew."""
    late = "late-arriving-credential-0042"
    text = f"echo {late}"
    assert rows_to_table([_row(raw_text=text)]).column("raw_text")[0].as_py() == text
    monkeypatch.setenv("LATE_SERVICE_TOKEN", late)
    assert rows_to_table([_row(raw_text=text)]).column("raw_text")[0].as_py() == "echo [redacted]"
