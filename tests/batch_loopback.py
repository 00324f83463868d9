"""Loopback servers speaking the two batch wire formats, for ``ingest run --batch`` tests.

``OpenAIBatchServer`` (base URL ``.../v1``): ``POST /v1/files`` (multipart, purpose=batch),
``GET /v1/files``, ``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches[/{id}]``,
``POST /v1/batches/{id}/cancel``. Output and error files hold ``{"custom_id", "response":
{"status_code", "body"}, "error"}`` lines, as OpenAI writes them.

``GeminiBatchServer`` (base URL without a version): the resumable upload (``POST
/upload/v1/files`` answering with an absolute ``X-Goog-Upload-URL`` on itself, then chunks with
``X-Goog-Upload-Command: upload[, finalize]``), ``GET /v1/files``, ``GET
/v1/files/{id}:download``, ``POST /v1/models/{m}:batchGenerateContent`` (inline requests or a
file), ``GET /v1/batches[/{id}]``, ``POST /v1/batches/{id}:cancel``. Results come inline or as a
JSONL file, per-line errors as ``google.rpc.Status``. google-genai calls ``/v1/batches`` and
``/v1/files`` too, so each provider gets its own server (STACK_NOTES).

Both run the same script: ``finish_after`` polls of a batch before it ends (``None``: never),
``ending`` (completed, expired, failed, cancelled), and ``answer(key, request, keys) -> ("ok", text) |
("status", code, message) | ("grpc", code, message) | ("length",) | ("skip",)`` per line (an
expired batch answers only the lines before ``answered_before_expiry``). Every request is
recorded in ``requests`` (method, path); ``created`` lists the batches created, in order.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import itertools
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from tests.loopback import USAGE_IN, USAGE_OUT

Answer = Callable[[str, dict[str, Any], list[str]], tuple]  # (key, request, the batch's keys)


def default_answer(key: str, request: dict[str, Any], keys: list[str]) -> tuple:
    return ("ok", "Real. The optic disc and vessels look natural.")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        self.server.owner.handle(self, "GET", b"")  # type: ignore[attr-defined]

    def do_POST(self) -> None:
        self.server.owner.handle(self, "POST", self._body())  # type: ignore[attr-defined]

    def do_DELETE(self) -> None:
        self.server.owner.handle(self, "DELETE", b"")  # type: ignore[attr-defined]

    def reply(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)


class BatchServer:
    """Shared machinery: a threaded server, a lock, the script, recorded requests."""

    def __init__(self, *, finish_after: int | None = 1, ending: str = "completed", answer: Answer = default_answer,
                 answered_before_expiry: int = 1):  # fmt: skip
        self.finish_after, self.ending, self.answer = finish_after, ending, answer
        self.answered_before_expiry = answered_before_expiry
        self.lock = threading.RLock()
        self.requests: list[tuple[str, str]] = []
        self.files: dict[str, dict[str, Any]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.created: list[str] = []
        self.ids = itertools.count(1)
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def handle(self, handler: _Handler, method: str, body: bytes) -> None:
        url = urlsplit(handler.path)
        with self.lock:
            self.requests.append((method, url.path))
            try:
                status, payload, headers = self.route(method, url.path, parse_qs(url.query), handler, body)
            except KeyError as exc:
                status, payload, headers = 404, {"error": {"message": f"not found: {exc}", "code": 404}}, {}
        handler.reply(status, payload, headers)

    def route(self, method, path, query, handler, body) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError

    def lines_of(self, file_id: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.files[file_id]["data"].splitlines() if line.strip()]

    def outcome_lines(self, lines: list[tuple[str, dict[str, Any]]], ending: str) -> list[tuple[str, tuple]]:
        """(key, scripted answer) of each line the batch ran before it ended."""
        if ending in ("failed", "cancelled"):
            return []
        keys_all = [key for key, _ in lines]
        if ending == "expired":
            lines = lines[: self.answered_before_expiry]
        return [(key, self.answer(key, request, keys_all)) for key, request in lines]


def chat_completion(model: str, text: str | None, finish: str = "stop") -> dict[str, Any]:
    return {
        "id": "chatcmpl-batch", "object": "chat.completion", "created": 1700000000, "model": model + "-2024-08-06",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "finish_reason": finish}],
        "usage": {"prompt_tokens": USAGE_IN, "completion_tokens": USAGE_OUT, "total_tokens": USAGE_IN + USAGE_OUT},
    }  # fmt: skip


class OpenAIBatchServer(BatchServer):
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def route(self, method, path, query, handler, body):
        parts = path.strip("/").split("/")[1:]  # drop "v1"
        if parts == ["files"] and method == "POST":
            return 200, self.upload(handler.headers["Content-Type"], body), {}
        if parts == ["files"]:
            return (
                200,
                {"object": "list", "data": [self.file_object(f) for f in self.files], "has_more": False},
                {},
            )
        if parts[:1] == ["files"] and parts[2:] == ["content"]:
            return 200, self.files[parts[1]]["data"], {}
        if parts == ["batches"] and method == "POST":
            return 200, self.create(json.loads(body)), {}
        if parts == ["batches"]:
            listed = [
                self.view(b) for b in sorted(self.batches, key=lambda b: -self.batches[b]["created_at"])
            ]
            return 200, {"object": "list", "data": listed, "has_more": False}, {}
        if parts[:1] == ["batches"] and parts[2:] == ["cancel"]:
            self.batches[parts[1]]["cancel"] = True
            return 200, self.view(parts[1]), {}
        if parts[:1] == ["batches"] and len(parts) == 2:
            self.batches[parts[1]]["polls"] += 1
            return 200, self.view(parts[1]), {}
        raise KeyError(path)

    def upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body
        )
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        file_id = f"file-{next(self.ids)}"
        part = fields["file"]
        self.files[file_id] = {
            "data": part.get_payload(decode=True),
            "filename": part.get_filename(),
            "purpose": fields["purpose"].get_content().strip(),
            "created_at": int(time.time()),
        }
        return self.file_object(file_id)

    def file_object(self, file_id: str) -> dict[str, Any]:
        f = self.files[file_id]
        return {
            "id": file_id,
            "object": "file",
            "bytes": len(f["data"]),
            "created_at": f["created_at"],
            "filename": f["filename"],
            "purpose": f["purpose"],
            "status": "processed",
        }

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        batch_id = f"batch_{next(self.ids)}"
        self.batches[batch_id] = {
            "request": body,
            "created_at": int(time.time()),
            "polls": 0,
            "cancel": False,
            "ended": None,
        }
        self.created.append(batch_id)
        return self.view(batch_id)

    def view(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        request, lines = batch["request"], self.lines_of(batch["request"]["input_file_id"])
        status = "in_progress" if batch["polls"] else "validating"
        ending = "cancelled" if batch["cancel"] else self.ending
        if batch["ended"] is None and (
            batch["cancel"] or (self.finish_after is not None and batch["polls"] >= self.finish_after)
        ):
            batch["ended"] = ending
            batch.update(self.finish(batch_id, [(ln["custom_id"], ln["body"]) for ln in lines], ending))
        view = {
            "id": batch_id, "object": "batch", "endpoint": request["endpoint"], "errors": None,
            "input_file_id": request["input_file_id"], "completion_window": request["completion_window"],
            "status": batch["ended"] or status, "created_at": batch["created_at"], "metadata": request.get("metadata"),
            "output_file_id": batch.get("output"), "error_file_id": batch.get("error"),
            "request_counts": {"total": len(lines), "completed": batch.get("ok", 0), "failed": batch.get("failed", 0)},
        }  # fmt: skip
        if batch["ended"]:
            view[{"completed": "completed_at", "expired": "expired_at", "failed": "failed_at",
                  "cancelled": "cancelled_at"}[batch["ended"]]] = batch["created_at"] + 7  # fmt: skip
        if batch["ended"] == "failed":
            view["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_json_line", "message": "line 1 is bad"}],
            }
        return view

    def finish(self, batch_id: str, lines: list[tuple[str, dict]], ending: str) -> dict[str, Any]:
        out, err, ran = [], [], dict(self.outcome_lines(lines, ending))
        for key, request in lines:
            answer = ran.get(key)
            if answer is None:
                if ending in ("expired", "cancelled"):
                    err.append({"id": "r", "custom_id": key, "response": None,
                                "error": {"code": f"batch_{ending}", "message": "not run"}})  # fmt: skip
                continue
            if answer[0] == "skip":
                continue
            if answer[0] == "status":
                body = {"error": {"message": answer[2], "type": "invalid_request_error", "code": None}}
                err.append({"id": "r", "custom_id": key, "response": {"status_code": answer[1], "body": body},
                            "error": None})  # fmt: skip
                continue
            text, finish = (None, "length") if answer[0] == "length" else (answer[1], "stop")
            body = chat_completion(request["model"], text, finish)
            out.append(
                {"id": "r", "custom_id": key, "response": {"status_code": 200, "body": body}, "error": None}
            )
        result: dict[str, Any] = {"ok": len(out), "failed": len(err)}
        for name, records in (("output", out), ("error", err)):
            if records:
                file_id = f"file-{next(self.ids)}"
                data = "".join(json.dumps(r) + "\n" for r in reversed(records)).encode()  # any order
                self.files[file_id] = {
                    "data": data,
                    "filename": f"{batch_id}_{name}.jsonl",
                    "purpose": "batch_output",
                    "created_at": int(time.time()),
                }
                result[name] = file_id
        return result


GRPC_STATE = {"completed": "BATCH_STATE_SUCCEEDED", "expired": "BATCH_STATE_EXPIRED",
              "failed": "BATCH_STATE_FAILED", "cancelled": "BATCH_STATE_CANCELLED"}  # fmt: skip


def generate_content_response(model: str, text: str | None, finish: str = "STOP") -> dict[str, Any]:
    usage = {"promptTokenCount": USAGE_IN, "totalTokenCount": USAGE_IN + USAGE_OUT}
    candidate: dict[str, Any] = {"finishReason": finish, "index": 0, "content": {"role": "model"}}
    if text is not None:
        candidate["content"]["parts"] = [{"text": text}]
        usage["candidatesTokenCount"] = USAGE_OUT
    else:
        usage["thoughtsTokenCount"] = USAGE_OUT  # a thinking model that spent its budget
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model + "-001"}


class GeminiBatchServer(BatchServer):
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def route(self, method, path, query, handler, body):
        if path.startswith("/upload/") and method == "POST":
            return self.upload_start(handler, json.loads(body or b"{}"))
        if path.startswith("/upload-session/"):
            return self.upload_chunk(path.rsplit("/", 1)[1], handler, body)
        parts = path.strip("/").split("/")[1:]  # drop the API version
        if parts == ["files"]:
            return (
                200,
                {"files": [self.files[f]["object"] for f in self.files if "object" in self.files[f]]},
                {},
            )
        if parts[:1] == ["files"] and parts[1].endswith(":download"):
            return 200, self.files[parts[1].removesuffix(":download")]["data"], {}
        if parts[:1] == ["models"] and parts[1].endswith(":batchGenerateContent"):
            return 200, self.create(parts[1].removesuffix(":batchGenerateContent"), json.loads(body)), {}
        if parts == ["batches"]:
            listed = sorted(self.batches, key=lambda b: -self.batches[b]["created_at"])
            return 200, {"operations": [self.view(b) for b in listed]}, {}
        if parts[:1] == ["batches"] and parts[1].endswith(":cancel"):
            self.batches[parts[1].removesuffix(":cancel")]["cancel"] = True
            return 200, {}, {}
        if parts[:1] == ["batches"] and len(parts) == 2:
            self.batches[parts[1]]["polls"] += 1
            return 200, self.view(parts[1]), {}
        raise KeyError(path)

    def upload_start(self, handler: _Handler, body: dict[str, Any]):
        session = str(next(self.ids))
        self.files[f"upload-{session}"] = {"meta": body.get("file", {}), "data": b""}
        url = f"http://127.0.0.1:{self.port}/upload-session/{session}"
        return 200, {}, {"X-Goog-Upload-URL": url, "X-Goog-Upload-Status": "active"}

    def upload_chunk(self, session: str, handler: _Handler, body: bytes):
        pending = self.files[f"upload-{session}"]
        pending["data"] += body
        if "finalize" not in handler.headers.get("X-Goog-Upload-Command", ""):
            return 200, {}, {"X-Goog-Upload-Status": "active"}
        del self.files[f"upload-{session}"]
        file_id = f"f{next(self.ids)}"
        meta = pending["meta"]
        obj = {"name": f"files/{file_id}", "displayName": meta.get("displayName") or meta.get("display_name"),
               "mimeType": meta.get("mimeType") or meta.get("mime_type"), "sizeBytes": str(len(pending["data"])),
               "state": "ACTIVE", "createTime": _now()}  # fmt: skip
        self.files[file_id] = {"data": pending["data"], "object": obj}
        return 200, {"file": obj}, {"X-Goog-Upload-Status": "final"}

    def create(self, model: str, body: dict[str, Any]) -> dict[str, Any]:
        batch_id = str(next(self.ids))
        batch = body["batch"]
        source = batch["inputConfig"]
        if "fileName" in source:
            lines = [
                (ln["key"], ln["request"]) for ln in self.lines_of(source["fileName"].removeprefix("files/"))
            ]
        else:
            lines = [(r["metadata"]["key"], r["request"]) for r in source["requests"]["requests"]]
        self.batches[batch_id] = {"model": model, "display": batch.get("displayName"), "lines": lines,
                                  "file_input": "fileName" in source, "created_at": time.time(), "polls": 0,
                                  "cancel": False, "ended": None, "source": source}  # fmt: skip
        self.created.append(batch_id)
        return self.view(batch_id)

    def view(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        state = "BATCH_STATE_RUNNING" if batch["polls"] else "BATCH_STATE_PENDING"
        if batch["ended"] is None and (
            batch["cancel"] or (self.finish_after is not None and batch["polls"] >= self.finish_after)
        ):
            batch["ended"] = "cancelled" if batch["cancel"] else self.ending
            batch["output"] = self.finish(batch_id, batch)
        metadata = {
            "@type": "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch",
            "model": batch["model"], "displayName": batch["display"],
            "state": GRPC_STATE[batch["ended"]] if batch["ended"] else state,
            "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch["created_at"])),
        }  # fmt: skip
        if batch["ended"]:
            metadata["endTime"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(batch["created_at"] + 7))
            if batch.get("output"):
                metadata["output"] = batch["output"]
        return {"name": f"batches/{batch_id}", "metadata": metadata, "done": bool(batch["ended"])}

    def finish(self, batch_id: str, batch: dict[str, Any]) -> dict[str, Any] | None:
        records = []
        for key, answer in self.outcome_lines(batch["lines"], batch["ended"]):
            if answer[0] == "skip":
                continue
            if answer[0] == "grpc":
                records.append({"key": key, "error": {"code": answer[1], "message": answer[2]}})
                continue
            text, finish = (None, "MAX_TOKENS") if answer[0] == "length" else (answer[1], "STOP")
            records.append({"key": key, "response": generate_content_response(batch["model"], text, finish)})
        if not records:
            return None
        if batch["file_input"]:
            file_id = f"f{next(self.ids)}"
            data = "".join(json.dumps(r) + "\n" for r in reversed(records)).encode()
            self.files[file_id] = {"data": data}
            return {"responsesFile": f"files/{file_id}"}
        inline = [
            {"metadata": {"key": r["key"]}, **{k: v for k, v in r.items() if k != "key"}} for r in records
        ]
        return {"inlinedResponses": {"inlinedResponses": inline}}


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def openai_line_image(line: dict[str, Any]) -> bytes:
    """The image bytes of an OpenAI batch input line."""
    for part in line["body"]["messages"][0]["content"]:
        if part["type"] == "image_url":
            return base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
    raise AssertionError("no image in the line")
