"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI chat-completions API for the tests.

As a judge it rates each text it is shown by the text's content (``quality=N`` inside the text, else 3), so a
test can check that ratings come back to the right completion whatever order they were shown in; it answers in
the paper's text format, or in JSON when the request carries ``response_format``. Any other request gets a
deterministic answer derived from (model, messages, seed), with a ``quality=N`` marker in it.

Markers in the last message script behaviour:
- ``FAULTS=429,500,hang,drop,400;`` the k-th attempt of that request gets the k-th fault, then success
  (429 carries ``Retry-After``; ``hang`` sleeps past the client's timeout and closes; ``drop`` closes the
  connection without an answer; 400 is a client error);
- ``GARBLE_ONCE`` / ``GARBLE_ALWAYS``: an unparseable judge reply the first time / every time (judge prompts only);
- ``QUOTE``: the rationale quotes the text on one line; ``BIAS_FIRST``: the first shown text gets +1;
- ``FAIL_MODEL=name;`` a generation request to that model gets a 400 (its neighbours are answered);
- ``NO_TYPE``: a judge reply for a typed aspect (truthfulness, helpfulness) leaves out its ``Type:`` lines.

It records every attempt (time, body, outcome) and, in ``spans``, every request's (start, end, model, kind) with
kind "judge" or "generation" (a server log to read order and concurrency from); ``paid`` lists the bodies
answered with 200.

``GET /v1/models`` lists ``models`` (OpenAI's shape); with ``models=None`` (the default) there is no such route
(404), like a server without it. ``unknown_model`` says how a chat request for a name ``models`` does not list is
answered: ``"any"`` (the default) like any other, as text-generation-inference or llama.cpp's server do; ``"404"``
with OpenAI's error (code ``model_not_found``); ``"vllm"`` with vLLM's 400 ``The model `x` does not exist.`` (the
request is recorded in ``requests`` either way). ``status=401`` (or 403, 404, ...) answers every request with that
status. Every GET is recorded in ``gets`` as (path, whether it carried a bearer key).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT_BLOCK = re.compile(r"<text (\d+)>\n(.*?)\n</text \1>", re.S)
RESPONSE_BLOCK = re.compile(r"<response>\n(.*?)\n</response>", re.S)
FAULTS = re.compile(r"FAULTS=([a-z0-9,]+);")
FAIL_MODEL = re.compile(r"FAIL_MODEL=([\w.-]+);")


def quality(text: str, hi: int = 5) -> int:
    m = re.search(r"quality=(\d+)", text)
    return min(int(m.group(1)), hi) if m else 3


def body_key(body: dict[str, Any]) -> str:
    """What identifies one logical request (the same request retried has the same key)."""
    return json.dumps({"model": body["model"], "messages": body["messages"], "seed": body.get("seed")}, sort_keys=True)


class FakeJudge:
    def __init__(self, latency_s: float = 0.0, hang_s: float = 2.0, retry_after_s: float = 0.2, port: int = 0,
                 words_by_model: dict[str, int] | None = None, models: list[str] | None = None,
                 status: int | None = None, unknown_model: str = "any") -> None:
        assert unknown_model in ("any", "404", "vllm"), unknown_model
        self.latency_s, self.hang_s, self.retry_after_s = latency_s, hang_s, retry_after_s
        self.models, self.status, self.unknown_model = models, status, unknown_model
        self.gets: list[tuple[str, bool]] = []  # (path, had an Authorization: Bearer header)
        self.requests: list[dict[str, Any]] = []  # every attempt's body
        self.attempts: list[tuple[float, str, str]] = []  # (time, body key, outcome)
        self.paid: list[dict[str, Any]] = []  # bodies answered with 200
        self.usages: list[tuple[str, int, int, int]] = []  # (model, prompt, completion, cached tokens) billed
        self.spans: list[tuple[float, float, str, str]] = []  # (start, end, model, "judge" | "generation")
        self.dead = False
        self.gate = threading.Event()  # cleared: every chat answer waits until it is set again (a test holds the run)
        self.gate.set()
        self.words_by_model = words_by_model or {}  # generation replies this many extra words long, per model
        self.in_flight = self.max_in_flight = 0
        self.seen: dict[str, int] = {}  # attempts per body key (retries of one request)
        self.asked: dict[str, int] = {}  # times each user message was asked (a judge re-ask has a new seed)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeJudge:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Die: stop listening, and drop requests on connections already open (a test can make the endpoint
        die midway); idempotent."""
        self.dead = True
        self.gate.set()
        if self.thread.is_alive():
            self.server.shutdown()
        self.server.server_close()

    def attempts_of(self, key: str) -> list[tuple[float, str]]:
        return [(t, outcome) for t, k, outcome in self.attempts if k == key]

    def judge_reply(self, user: str, json_mode: bool, asked: int) -> str | None:
        """A judge's reply, or None when ``user`` is not a judge prompt (GARBLE_* only garble judge replies, so
        a generation request's answer never depends on which model asked first)."""
        if not (RESPONSE_BLOCK.search(user) or TEXT_BLOCK.search(user)):
            return None
        if "GARBLE_ALWAYS" in user or ("GARBLE_ONCE" in user and asked == 1):
            return "I cannot decide, sorry."
        critique = RESPONSE_BLOCK.search(user)
        if critique:
            score = quality(critique.group(1), 10)
            if json_mode:
                return json.dumps({"feedback": "fine", "overall_score": score})
            return f"### Feedback\nClear enough.\nOverall Score: {score}"
        texts = TEXT_BLOCK.findall(user)
        if not texts:
            return None
        ratings = {int(k): quality(t) for k, t in texts}
        if "BIAS_FIRST" in user:
            ratings[1] = min(ratings[1] + 1, 5)
        typed = ("Type:" in user or '"types"' in user) and "NO_TYPE" not in user  # NO_TYPE: a clear rating, no Type
        if json_mode:
            out = {}
            for k, _ in texts:
                item: dict[str, Any] = {"rating": ratings[int(k)], "rationale": f"about text {k}"}
                if typed:
                    item = {"types": [], "type_rationale": "none", **item}
                out[f"text_{k}"] = item
            return json.dumps(out)
        parts = ["Here is my assessment."]
        for k, t in texts:
            quote = " ".join(t.split()) if "QUOTE" in user else f"about text {k}"
            lines = [f"#### Output for Text {k}"]
            if typed:
                lines += ["Type: None", "Rationale: nothing to flag"]
            lines += [f"Rating: {ratings[int(k)]}", f'Rationale: it says "{quote}"']
            parts.append("\n".join(lines))
        return "\n\n".join(parts)

    def reply(self, body: dict[str, Any], asked: int) -> str:
        user = body["messages"][-1]["content"]
        judged = self.judge_reply(user, "response_format" in body, asked)
        if judged is not None:
            return judged
        digest = hashlib.sha256(body_key(body).encode()).hexdigest()
        words = self.words_by_model.get(body["model"], 0)
        padding = " ".join(f"w{digest[i % 64]}" for i in range(words + int(digest[11], 16) % 4))
        text = f"answer {digest[:10]} from {body['model']} quality={int(digest[10], 16) % 5 + 1}"
        return f"{text} {padding}" if words else text

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _no_such_model(self, model: str, key: str) -> None:
                with fake.lock:
                    fake.attempts.append((time.monotonic(), key, "no such model"))
                if fake.unknown_model == "404":
                    self._send(404, {"error": {"message": f"The model `{model}` does not exist or you do not have "
                                               "access to it.", "type": "invalid_request_error", "param": None,
                                               "code": "model_not_found"}})
                else:
                    self._send(400, {"object": "error", "message": f"The model `{model}` does not exist.",
                                     "type": "NotFoundError", "param": None, "code": 400})

            def do_GET(self) -> None:  # noqa: N802 - http.server's API
                with fake.lock:
                    fake.gets.append((self.path, (self.headers.get("Authorization") or "").startswith("Bearer ")))
                if fake.status is not None:
                    self._send(fake.status, {"error": {"message": f"status {fake.status}", "type": "test"}})
                elif self.path.rstrip("/") == "/v1/models" and fake.models is not None:
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "test"}
                                                                for m in fake.models]})
                else:
                    self._send(404, {"error": {"message": "not found", "type": "test"}})

            def do_POST(self) -> None:  # noqa: N802 - http.server's API
                if fake.status is not None:
                    self.rfile.read(int(self.headers["Content-Length"]))
                    self._send(fake.status, {"error": {"message": f"status {fake.status}", "type": "test"}})
                    return
                start = time.monotonic()
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if fake.dead:
                    self.close_connection = True
                    return
                key = body_key(body)
                user = body["messages"][-1]["content"]
                kind = "judge" if TEXT_BLOCK.search(user) or RESPONSE_BLOCK.search(user) else "generation"
                with fake.lock:
                    fake.requests.append(body)
                    fake.seen[key] = fake.seen.get(key, 0) + 1
                    attempt = fake.seen[key]
                    fake.asked[user] = fake.asked.get(user, 0) + 1
                    asked = fake.asked[user]
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    if fake.unknown_model != "any" and fake.models is not None and body["model"] not in fake.models:
                        self._no_such_model(body["model"], key)
                        return
                    m = FAULTS.search(user)
                    faults = m.group(1).split(",") if m else []
                    fault = faults[attempt - 1] if attempt <= len(faults) else None
                    failing = FAIL_MODEL.search(user)
                    if kind == "generation" and failing and failing.group(1) == body["model"]:
                        fault = "400"
                    with fake.lock:
                        fake.attempts.append((time.monotonic(), key, fault or "ok"))
                    if fault == "hang":
                        time.sleep(fake.hang_s)
                        self.close_connection = True
                        return
                    if fault == "drop":
                        self.close_connection = True
                        return
                    if fault in ("429", "500", "503", "400"):
                        headers = {"Retry-After": str(fake.retry_after_s)} if fault == "429" else {}
                        self._send(int(fault), {"error": {"message": f"injected {fault}", "type": "test"}}, headers)
                        return
                    if fake.latency_s:
                        time.sleep(fake.latency_s)
                    fake.gate.wait()
                    content = fake.reply(body, asked)
                    cached = 5 if "CACHED=5" in user else 0
                    prompt_tokens, completion_tokens = len(user) // 4 + 10, len(content) // 4 + 1
                    with fake.lock:
                        fake.paid.append(body)
                        fake.usages.append((body["model"], prompt_tokens, completion_tokens, cached))
                        fake.spans.append((start, time.monotonic(), body["model"], kind))
                    self._send(200, {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body["model"],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": content}}],
                        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                  "total_tokens": 0, "prompt_tokens_details": {"cached_tokens": cached}},
                    })
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        return Handler
