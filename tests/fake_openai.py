"""A real HTTP server on 127.0.0.1 that speaks enough of the OpenAI chat-completions API to act as a judge.

It rates each text it is shown by the text's content (``quality=N`` inside the text, else 3), so a test can
check that ratings come back to the right completion whatever order they were shown in. It answers in the
paper's text format, or in JSON when the request carries ``response_format``. Markers in the shown texts
script misbehaviour: ``GARBLE_ONCE`` (the first reply for that request is unparseable), ``GARBLE_ALWAYS``,
``QUOTE`` (the rationale quotes the text on one line), ``BIAS_FIRST`` (the first shown text gets +1, capped).
It counts every request and keeps the bodies it was sent.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TEXT_BLOCK = re.compile(r"<text (\d+)>\n(.*?)\n</text \1>", re.S)
RESPONSE_BLOCK = re.compile(r"<response>\n(.*?)\n</response>", re.S)


def quality(text: str, hi: int = 5) -> int:
    m = re.search(r"quality=(\d+)", text)
    return min(int(m.group(1)), hi) if m else 3


class FakeJudge:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.seen: dict[str, int] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def __enter__(self) -> FakeJudge:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def reply(self, body: dict[str, Any]) -> str:
        user = body["messages"][-1]["content"]
        json_mode = "response_format" in body
        with self.lock:
            key = user
            self.seen[key] = self.seen.get(key, 0) + 1
            attempt = self.seen[key]
        if "GARBLE_ALWAYS" in user or ("GARBLE_ONCE" in user and attempt == 1):
            return "I cannot decide, sorry."
        critique = RESPONSE_BLOCK.search(user)
        if critique:
            score = quality(critique.group(1), 10)
            if json_mode:
                return json.dumps({"feedback": "fine", "overall_score": score})
            return f"### Feedback\nClear enough.\nOverall Score: {score}"
        texts = TEXT_BLOCK.findall(user)
        ratings = {int(k): quality(t) for k, t in texts}
        if "BIAS_FIRST" in user and ratings:
            ratings[1] = min(ratings[1] + 1, 5)
        typed = "Type:" in user or '"types"' in user
        if json_mode:
            out = {}
            for k, t in texts:
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

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        judge = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with judge.lock:
                    judge.requests.append(body)
                content = judge.reply(body)
                payload = json.dumps({
                    "id": f"chatcmpl-{len(judge.requests)}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": content}}],
                    "usage": {"prompt_tokens": len(body["messages"][-1]["content"]) // 4,
                              "completion_tokens": len(content) // 4,
                              "total_tokens": 0,
                              "prompt_tokens_details": {"cached_tokens": 0}},
                }).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        return Handler
