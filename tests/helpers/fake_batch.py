"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI Files and Batches APIs for the tests.

Endpoints: ``POST /v1/files`` (multipart upload), ``GET /v1/files/{id}/content``, ``POST /v1/batches``,
``GET /v1/batches`` (list, newest first), ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``. Any other
path (``/v1/chat/completions`` included) is logged and answered 404.

A batch is validated when created (lines, bytes, unique custom ids, method and url) and runs when polled: it is
``in_progress`` for ``delay_polls`` polls (for ever while ``hold`` is set; only those of ``hold_model`` if
that is set), then takes the next outcome of
``outcomes`` (by creation order; default ``complete``):

- ``complete``: every line answered with the chat reply logic of ``fake_openai.FakeJudge`` (judge prompts get
  parseable ratings); a line whose last message holds ``LINEFAIL=n;`` fails (HTTP 500 in the error file) on its
  first n batches, and one holding ``LINE400;`` is refused as a client error (HTTP 400) every time;
- ``expire`` / ``expire:k``: expired; the first k lines (default 0) answered, the rest in the error file
  (``batch_expired``);
- ``fail``: the batch failed validation-style (no output, ``errors`` set).

``create_gate`` (a ``threading.Event``) makes ``POST /v1/batches`` register the batch and then wait for the
event before answering (a client killed meanwhile never learns the batch id).

It logs every call in ``calls`` (time, method, path); ``created`` holds each batch's lines, bytes and custom ids;
``paid`` lists the request bodies answered with 200 and ``usages`` their billed (model, prompt, completion,
cached) tokens.
"""

from __future__ import annotations

import json
import re
import threading
import time
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

from tests.helpers.fake_openai import FakeJudge, body_key

LINEFAIL = re.compile(r"LINEFAIL=(\d+);")


class FakeBatchAPI:
    def __init__(self, delay_polls: int = 1, outcomes: list[str] | None = None, max_lines: int = 50_000,
                 max_bytes: int = 200_000_000) -> None:
        self.delay_polls = delay_polls
        self.outcomes = list(outcomes or [])
        self.max_lines, self.max_bytes = max_lines, max_bytes
        self.hold = False
        self.hold_model: str | None = None  # hold only the batches of this model
        self.create_gate: threading.Event | None = None
        self.replier = FakeJudge()  # only its reply logic
        self.replier.server.server_close()
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls: dict[str, int] = {}
        self.calls: list[tuple[float, str, str]] = []
        self.created: list[dict[str, Any]] = []
        self.paid: list[dict[str, Any]] = []
        self.usages: list[tuple[str, int, int, int]] = []
        self.line_batches: dict[str, int] = {}  # batches each request (body key) was in
        self.asked: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeBatchAPI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.create_gate is not None:
            self.create_gate.set()
        self.server.shutdown()
        self.server.server_close()

    def count(self, method: str, prefix: str) -> int:
        return sum(1 for _, m, p in self.calls if m == method and p.startswith(prefix))

    # -------------------------------------------------------- behaviour

    def _file(self, data: bytes, name: str, purpose: str) -> dict[str, Any]:
        fid = f"file-{len(self.files) + 1}"
        self.files[fid] = data
        return {"id": fid, "object": "file", "bytes": len(data), "created_at": int(time.time()), "filename": name,
                "purpose": purpose, "status": "processed"}

    def _answer(self, line: dict[str, Any], batch_id: str) -> tuple[dict[str, Any], bool]:
        body = line["body"]
        user = body["messages"][-1]["content"]
        key = body_key(body)
        self.line_batches[key] = self.line_batches.get(key, 0) + 1
        if "LINE400;" in user:
            return {"id": f"batch_req_{batch_id}_{line['custom_id'][:8]}", "custom_id": line["custom_id"],
                    "response": {"status_code": 400, "request_id": "req-x",
                                 "body": {"error": {"message": "injected client error", "type": "invalid_request_error",
                                                    "code": None}}},
                    "error": None}, False
        m = LINEFAIL.search(user)
        if m and self.line_batches[key] <= int(m.group(1)):
            return {"id": f"batch_req_{batch_id}_{line['custom_id'][:8]}", "custom_id": line["custom_id"],
                    "response": {"status_code": 500, "request_id": "req-x",
                                 "body": {"error": {"message": "injected line failure", "type": "server_error"}}},
                    "error": None}, False
        self.asked[user] = self.asked.get(user, 0) + 1
        content = self.replier.reply(body, self.asked[user])
        prompt_tokens, completion_tokens = len(user) // 4 + 10, len(content) // 4 + 1
        self.paid.append(body)
        self.usages.append((body["model"], prompt_tokens, completion_tokens, 0))
        return {"id": f"batch_req_{batch_id}_{line['custom_id'][:8]}", "custom_id": line["custom_id"],
                "response": {"status_code": 200, "request_id": "req-x", "body": {
                    "id": "chatcmpl-x", "object": "chat.completion", "created": 0, "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                              "total_tokens": prompt_tokens + completion_tokens,
                              "prompt_tokens_details": {"cached_tokens": 0}}}},
                "error": None}, True

    def _finish(self, batch: dict[str, Any], outcome: str) -> None:
        lines = batch["_lines"]
        now = int(time.time())
        if outcome == "fail":
            batch.update(status="failed", failed_at=now,
                         errors={"object": "list", "data": [{"code": "injected", "message": "the batch failed"}]})
            return
        answer_n = len(lines)
        if outcome.startswith("expire"):
            answer_n = int(outcome.split(":")[1]) if ":" in outcome else 0
        ok, bad = [], []
        for i, line in enumerate(lines):
            if i < answer_n:
                out, good = self._answer(line, batch["id"])
                (ok if good else bad).append(out)
            else:
                bad.append({"id": f"batch_req_{i}", "custom_id": line["custom_id"], "response": None,
                            "error": {"code": "batch_expired", "message": "This request could not be executed "
                                      "before the completion window expired."}})
        if ok:
            batch["output_file_id"] = self._file(b"".join(json.dumps(o).encode() + b"\n" for o in ok),
                                                 "batch_output.jsonl", "batch_output")["id"]
        if bad:
            batch["error_file_id"] = self._file(b"".join(json.dumps(o).encode() + b"\n" for o in bad),
                                                "batch_errors.jsonl", "batch_output")["id"]
        batch["request_counts"] = {"total": len(lines), "completed": len(ok), "failed": len(bad)}
        if outcome.startswith("expire"):
            batch.update(status="expired", expired_at=now)
        else:
            batch.update(status="completed", completed_at=now)

    def _poll(self, bid: str) -> dict[str, Any]:
        batch = self.batches[bid]
        self.polls[bid] = self.polls.get(bid, 0) + 1
        held = self.hold and self.hold_model in (None, batch["_lines"][0]["body"]["model"])
        if batch["status"] in ("validating", "in_progress") and not held:
            if self.polls[bid] > self.delay_polls:
                self._finish(batch, batch["_outcome"])
            else:
                batch["status"] = "in_progress"
        elif batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "cancelling":
            batch.update(status="cancelled", cancelled_at=int(time.time()))
        return batch

    def _create(self, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        fid = params["input_file_id"]
        if fid not in self.files:
            return 404, {"error": {"message": f"no file {fid}", "type": "invalid_request_error"}}
        data = self.files[fid]
        lines = [json.loads(raw) for raw in data.decode().splitlines() if raw.strip()]
        bid = f"batch-{len(self.batches) + 1}"
        outcome = self.outcomes.pop(0) if self.outcomes else "complete"
        problems = []
        if len(lines) > self.max_lines:
            problems.append(f"{len(lines)} lines > {self.max_lines}")
        if len(data) > self.max_bytes:
            problems.append(f"{len(data)} bytes > {self.max_bytes}")
        if len({ln["custom_id"] for ln in lines}) != len(lines):
            problems.append("duplicate custom_id")
        if any(ln["method"] != "POST" or ln["url"] != params["endpoint"] for ln in lines):
            problems.append("method/url")
        if problems:
            outcome = "fail"
        now = int(time.time())
        batch = {"id": bid, "object": "batch", "endpoint": params["endpoint"], "input_file_id": fid,
                 "completion_window": params["completion_window"], "status": "validating", "created_at": now,
                 "expires_at": now + 86400, "metadata": params.get("metadata"),
                 "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
                 "output_file_id": None, "error_file_id": None, "errors": None, "_lines": lines, "_outcome": outcome}
        self.batches[bid] = batch
        self.created.append({"id": bid, "lines": len(lines), "bytes": len(data), "problems": problems,
                             "custom_ids": [ln["custom_id"] for ln in lines], "bodies": [ln["body"] for ln in lines]})
        return 200, batch

    @staticmethod
    def _public(batch: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in batch.items() if not k.startswith("_")}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
                data = raw if raw is not None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/octet-stream" if raw is not None else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                try:
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def _log(self) -> str:
                path = urlparse(self.path).path
                with fake.lock:
                    fake.calls.append((time.monotonic(), self.command, path))
                return path

            def do_GET(self) -> None:  # noqa: N802
                path = self._log()
                parts = path.strip("/").split("/")
                with fake.lock:
                    if parts[:2] == ["v1", "files"] and len(parts) == 4 and parts[3] == "content":
                        if parts[2] in fake.files:
                            return self._send(200, None, raw=fake.files[parts[2]])
                    elif parts == ["v1", "batches"]:
                        data = [fake._public(b) for b in reversed(list(fake.batches.values()))]
                        return self._send(200, {"object": "list", "data": data, "has_more": False,
                                                "first_id": data[0]["id"] if data else None,
                                                "last_id": data[-1]["id"] if data else None})
                    elif parts[:2] == ["v1", "batches"] and len(parts) == 3 and parts[2] in fake.batches:
                        return self._send(200, fake._public(fake._poll(parts[2])))
                self._send(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})

            def do_POST(self) -> None:  # noqa: N802
                path = self._log()
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = path.strip("/").split("/")
                if parts == ["v1", "files"]:
                    msg = BytesParser(policy=email_policy).parsebytes(
                        b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + raw)
                    fields = {p.get_param("name", header="content-disposition"): p for p in msg.iter_parts()}
                    file_part = fields["file"]
                    purpose = fields["purpose"].get_content().strip()
                    with fake.lock:
                        obj = fake._file(file_part.get_payload(decode=True), file_part.get_filename(), purpose)
                    return self._send(200 if purpose == "batch" else 400, obj)
                if parts == ["v1", "batches"]:
                    with fake.lock:
                        status, batch = fake._create(json.loads(raw))
                        gate = fake.create_gate
                    if gate is not None:
                        gate.wait()
                    return self._send(status, fake._public(batch) if status == 200 else batch)
                if parts[:2] == ["v1", "batches"] and len(parts) == 4 and parts[3] == "cancel":
                    with fake.lock:
                        batch = fake.batches.get(parts[2])
                        if batch is not None and batch["status"] not in ("completed", "failed", "expired", "cancelled"):
                            batch["status"] = "cancelling"
                    if batch is not None:
                        return self._send(200, fake._public(batch))
                self._send(404, {"error": {"message": f"no route {path}", "type": "invalid_request_error"}})

        return Handler


def judge_request(i: int, model: str = "gpt-x", extra: str = "", json_mode: bool = False) -> Any:
    """A side-by-side judge request over two texts of known quality (the fake rates quality=N as N)."""
    from uf_experiments.core.records import Request

    user = (f"Rate these two answers to question {i}. {extra}\n<text 1>\nfirst quality={1 + i % 5}\n</text 1>\n"
            f"<text 2>\nsecond quality={1 + (i + 2) % 5}\n</text 2>")
    schema = {"type": "object"} if json_mode else None
    return Request(model, ({"role": "system", "content": "You are a judge."}, {"role": "user", "content": user}),
                   64, 0.0, 1.0, 1000 + i, response_format=schema)
