"""The Batch API's JSONL format: input lines and files, output and error lines."""

from __future__ import annotations

import json

from uf_experiments.core.records import Request, Usage
from uf_experiments.engines.openai.batch_format import (
    ENDPOINT,
    LineResult,
    error_reason,
    input_file,
    input_line,
    parse_line,
    read_output,
)
from uf_experiments.engines.openai.client import chat_body


def req(i: int) -> Request:
    return Request("gpt-x", ({"role": "user", "content": f"question {i} é"},), 16, 1.0, 1.0, i)


def ok_line(cid: str, text: str | None, finish: str = "stop", cached: int = 0) -> dict:
    body = {"choices": [{"message": {"content": text}, "finish_reason": finish}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": cached}}}
    return {"custom_id": cid, "response": {"status_code": 200, "body": body}, "error": None}


def test_input_file_round_trip():
    requests = [req(0), req(1)]
    text = input_file("gpt-x", [("k0", requests[0]), ("k1", requests[1])])
    lines = text.splitlines()
    assert text.endswith("\n") and len(lines) == 2 and "é" in text  # one compact UTF-8 line per request
    assert lines[0] == input_line("k0", chat_body("gpt-x", requests[0]))
    for line, key, r in zip(lines, ("k0", "k1"), requests, strict=True):
        obj = json.loads(line)
        assert obj == {"custom_id": key, "method": "POST", "url": ENDPOINT, "body": chat_body("gpt-x", r)}


def test_an_answered_line():
    cid, res = parse_line(ok_line("k0", "fine", cached=2))
    assert cid == "k0" and res == LineResult("fine", Usage(7, 3, 2), "stop")
    assert res.paid and res.retry


def test_failed_lines_say_why_and_whether_to_ask_again():
    server = {"custom_id": "a", "response": {"status_code": 500, "body": {"error": {"message": "boom"}}}}
    _, res = parse_line(server)
    assert res.text is None and res.error == "HTTP 500: boom" and res.retry and not res.paid
    refused = {"custom_id": "b", "response": {"status_code": 400, "body": {"error": {"message": "bad", "code": "x"}}}}
    assert parse_line(refused)[1].error == "HTTP 400: x: bad" and not parse_line(refused)[1].retry
    limited = {"custom_id": "c", "response": {"status_code": 429, "body": {}}}
    assert parse_line(limited)[1].retry  # a rate limit is worth another batch
    expired = {"custom_id": "d", "response": None, "error": {"code": "batch_expired", "message": "expired"}}
    assert parse_line(expired)[1] == LineResult(None, error="batch_expired: expired")


def test_a_reply_without_content_is_final_but_paid():
    _, res = parse_line(ok_line("k", None, finish="length"))
    assert res.error == "no content in the reply (finish_reason=length)" and not res.retry and res.paid


def test_read_output_prefers_an_answer_over_an_error_line():
    out = "\n".join(json.dumps(x) for x in (ok_line("a", "A"), ok_line("b", "B"))) + "\n\n"
    err = json.dumps({"custom_id": "a", "response": {"status_code": 500, "body": {}}}) + "\n" + json.dumps(
        {"custom_id": "c", "response": {"status_code": 500, "body": {}}})
    got = read_output(out, err)
    assert {k: r.text for k, r in got.items()} == {"a": "A", "b": "B", "c": None}


def test_error_reason_shapes():
    assert error_reason(None) is None and error_reason("plain") == "plain"
    assert error_reason({"error": {"message": "m"}}) == "m"
    assert error_reason({"code": 5, "message": "m"}) == "m"  # a non-string code is left out
    assert error_reason({"other": 1}) == '{"other": 1}'
