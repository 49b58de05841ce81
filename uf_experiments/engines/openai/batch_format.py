"""The OpenAI Batch API's file format: the JSONL input lines and files the Batch API engine uploads
(:func:`input_line`, :func:`input_file`; each line's ``custom_id`` is the request's cache key and its body what the
online engine would send) and the output and error files it downloads (:func:`parse_line`, :func:`read_output`,
one :class:`LineResult` per line). vLLM's ``run_batch`` reads and writes the same format.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from uf_experiments.core.records import Request, Usage
from uf_experiments.engines.openai.client import chat_body

ENDPOINT = "/v1/chat/completions"


def input_line(custom_id: str, body: Mapping[str, Any]) -> str:
    """One line of a batch input file (without the newline)."""
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": body},
                      ensure_ascii=False, separators=(",", ":"))


def input_file(model: str, keyed: Iterable[tuple[str, Request]]) -> str:
    """A whole batch input file: one line per (custom_id, request)."""
    return "".join(input_line(k, chat_body(model, r)) + "\n" for k, r in keyed)


@dataclass(frozen=True)
class LineResult:
    """One request's outcome in a batch's output or error file."""

    text: str | None
    usage: Usage = Usage()
    finish_reason: str | None = None
    error: str | None = None
    retry: bool = True  # a failure worth another batch (a reply without content is final)

    @property
    def paid(self) -> bool:
        """An answer, or a billed reply without content: kept until emitted."""
        return self.text is not None or self.usage.prompt_tokens + self.usage.completion_tokens > 0


def error_reason(err: Any) -> str | None:
    if not err:
        return None
    if isinstance(err, str):
        return err
    if isinstance(err, Mapping):
        if "error" in err:  # an error response body
            return error_reason(err["error"])
        message = err.get("message") or json.dumps(err, sort_keys=True)
        code = err.get("code")
        return f"{code}: {message}" if isinstance(code, str) and code else str(message)
    return str(err)


def parse_line(obj: Mapping[str, Any]) -> tuple[str, LineResult]:
    """(custom_id, outcome) of one output- or error-file line (OpenAI's format; vLLM's ``run_batch`` too)."""
    response = obj.get("response") or {}
    status = response.get("status_code")
    body = response.get("body") or {}
    if obj.get("error") or status != 200 or not body.get("choices"):
        reason = error_reason(obj.get("error")) or error_reason(body.get("error")) or "no reply in the batch output"
        client_error = isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429)
        return obj["custom_id"], LineResult(None, error=f"HTTP {status}: {reason}" if status else reason,
                                            retry=not client_error)  # a 4xx would fail again
    choice = body["choices"][0]
    u = body.get("usage") or {}
    details = u.get("prompt_tokens_details") or {}
    usage = Usage(u.get("prompt_tokens") or 0, u.get("completion_tokens") or 0, details.get("cached_tokens") or 0)
    text = (choice.get("message") or {}).get("content")
    finish = choice.get("finish_reason")
    if text is None:
        return obj["custom_id"], LineResult(None, usage, finish, f"no content in the reply (finish_reason={finish})",
                                            retry=False)
    return obj["custom_id"], LineResult(text, usage, finish)


def read_output(*texts: str) -> dict[str, LineResult]:
    """Every line of a batch's output and error files, by custom_id."""
    out: dict[str, LineResult] = {}
    for text in texts:
        for raw in text.splitlines():
            if raw.strip():
                cid, res = parse_line(json.loads(raw))
                if res.text is not None or cid not in out:
                    out[cid] = res
    return out
