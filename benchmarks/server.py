"""A local OpenAI-compatible chat-completions server with an injected latency, for benchmarks (a), (b), (b2), (e).

Every ``POST .../chat/completions`` sleeps ``latency_s`` (or, with ``sigma`` > 0, a lognormal draw with that
median, seeded per request) and answers deterministically:
- a judge request (its last message holds ``<text k>`` blocks: ours as ``<text k>\\n...\\n</text k>``,
  distilabel's UltraFeedback as ``<text k> ...``) gets a rating per text, in JSON when the request carries
  ``response_format`` (``{"text_1": {"rating": r, "rationale": "..."}, ...}``), else in the paper's text format
  (``#### Output for Text k`` / ``Rating:`` / ``Rationale:``, sections separated by a blank line, which both our
  parser and distilabel's accept);
- any other request gets a short text (~60 characters) derived from (model, messages, seed);
- with ``"stream": true`` the same reply comes as server-sent events (usage too with ``stream_options``).

The server logs each request's start and end (``time.perf_counter`` of this process), model and kind, so a
benchmark can compute the request span and the requests in flight. ``GET .../models`` lists the model names it
was given (for an engine that probes the endpoint before spending).

Standalone: ``python -m benchmarks.server --port 8000 --latency-ms 200`` (Ctrl-C to stop).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT_TAG = re.compile(r"<text (\d+)>")


@dataclass(frozen=True)
class Logged:
    start: float
    end: float
    model: str
    kind: str  # "generation" or "judge"
    status: int


def _digest(*parts: Any) -> int:
    return int(hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12], 16)


def judge_reply(user: str, json_mode: bool, seed: Any) -> str | None:
    """A parseable rating of every ``<text k>`` in ``user``, or None when it is not a judge request."""
    labels = sorted({int(k) for k in TEXT_TAG.findall(user)})
    if not labels:
        return None
    n = labels[-1]
    typed = "Type:" in user or '"types"' in user
    return rating_reply([_digest(user, k, seed) % 5 + 1 for k in range(1, n + 1)], json_mode, typed)


def rating_reply(ratings: Sequence[int], json_mode: bool, typed: bool) -> str:
    """A judge's reply giving text k the rating ``ratings[k-1]``: JSON (``text_k`` keys) or the paper's text
    format, with the ``Type:`` fields of truthfulness / helpfulness when ``typed``."""
    if json_mode:
        out: dict[str, Any] = {}
        for k, r in enumerate(ratings, 1):
            item: dict[str, Any] = {"rating": r, "rationale": f"text {k} is adequate"}
            if typed:
                item = {"types": [], "type_rationale": "none", **item}
            out[f"text_{k}"] = item
        return json.dumps(out)
    sections = []
    for k, r in enumerate(ratings, 1):
        lines = [f"#### Output for Text {k}"]
        if typed:
            lines += ["Type: None", "Rationale: nothing to flag"]
        lines += [f"Rating: {r}", f"Rationale: text {k} is adequate"]
        sections.append("\n".join(lines))
    return "\n\n".join(sections)


def generation_reply(body: dict[str, Any]) -> str:
    h = _digest(body.get("model"), body.get("messages"), body.get("seed"))
    return f"Answer {h:012x} from {body.get('model')}: short and deterministic."


class LatencyServer:
    """``with LatencyServer(latency_s=0.2, models=[...]) as s: ... s.base_url ... s.log``."""

    def __init__(self, latency_s: float = 0.2, models: Sequence[str] = (), port: int = 0, backlog: int = 1024,
                 sigma: float = 0.0) -> None:
        self.latency_s = latency_s
        self.sigma = sigma  # > 0: heavy-tailed latency, lognormal with median latency_s (see latency())
        self.models = list(models)
        self.log: list[Logged] = []
        self.lock = threading.Lock()

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            # hundreds of clients may connect at once: with http.server's default listen backlog (5) the kernel
            # drops their SYNs and they retry after a second, which measures the server, not the client
            request_queue_size = backlog

        self.server = Server(("127.0.0.1", port), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> LatencyServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def latency(self, body: dict[str, Any]) -> float:
        """This request's latency: ``latency_s``, or with ``sigma`` > 0 a lognormal draw with median ``latency_s``
        (``latency_s * exp(sigma * Z)``), seeded by the request (model, messages, seed), so a retry or a re-run
        waits the same and both tools see the same distribution: output lengths and queues vary, as on real APIs."""
        if self.sigma <= 0:
            return self.latency_s
        rng = random.Random(_digest(body.get("model"), body.get("messages"), body.get("seed")))
        return rng.lognormvariate(math.log(self.latency_s), self.sigma)

    def reset(self) -> None:
        with self.lock:
            self.log.clear()

    def snapshot(self) -> list[Logged]:
        with self.lock:
            return list(self.log)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        srv = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, head: dict[str, Any], content: str, usage: dict[str, int], with_usage: bool) -> None:
                """The reply as server-sent events (``stream: true``): the text in one delta, then the end."""
                chunk = {**head, "object": "chat.completion.chunk"}
                events = [
                    {**chunk, "choices": [{"index": 0, "delta": {"role": "assistant", "content": content},
                                           "finish_reason": None}]},
                    {**chunk, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                ]
                if with_usage:
                    events.append({**chunk, "choices": [], "usage": usage})
                data = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
                raw = data.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:  # noqa: N802 - http.server's API
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "bench"} for m in srv.models]})
                elif "/models/" in self.path:
                    name = self.path.rsplit("/models/", 1)[1]
                    self._send(200, {"id": name, "object": "model", "created": 0, "owned_by": "bench"})
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "bench"}})

            def do_POST(self) -> None:  # noqa: N802 - http.server's API
                start = time.perf_counter()
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if not self.path.rstrip("/").endswith("chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}", "type": "bench"}})
                    return
                messages = body.get("messages") or [{"content": ""}]
                user = str(messages[-1].get("content", ""))
                judged = judge_reply(user, "response_format" in body, body.get("seed"))
                content = judged if judged is not None else generation_reply(body)
                if srv.latency_s:
                    time.sleep(srv.latency(body))
                prompt_chars = sum(len(str(m.get("content", ""))) for m in messages)
                usage = {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(content) // 4 + 1,
                         "total_tokens": prompt_chars // 4 + len(content) // 4 + 2}
                head = {"id": f"chatcmpl-{start:.6f}", "created": int(time.time()), "model": body.get("model")}
                if body.get("stream"):
                    self._stream(head, content, usage, bool((body.get("stream_options") or {}).get("include_usage")))
                else:
                    self._send(200, {**head, "object": "chat.completion", "usage": usage,
                                     "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                                                  "message": {"role": "assistant", "content": content}}]})
                end = time.perf_counter()
                with srv.lock:
                    srv.log.append(Logged(start, end, str(body.get("model")),
                                          "judge" if judged is not None else "generation", 200))

        return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--latency-ms", type=float, default=200)
    ap.add_argument("--models", nargs="*", default=[])
    ap.add_argument("--latency-sigma", type=float, default=0.0, help="> 0: lognormal latency, median --latency-ms")
    args = ap.parse_args()
    with LatencyServer(args.latency_ms / 1000, args.models, args.port, sigma=args.latency_sigma) as s:
        print(f"serving {s.base_url} with {args.latency_ms:.0f} ms latency", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
