"""engines/build.py: the kind each engine class declares (never a substring of its class path), the cache name
that keeps request caches made before the package was split by role, and pre-0.2 ``_target_`` paths."""

from __future__ import annotations

import json
import logging

import pytest
from omegaconf import OmegaConf

from uf_experiments.config import resolve, validate
from uf_experiments.engines.build import build_engine, engine_kind, is_api_engine, is_batch_engine
from uf_experiments.engines.cache import engine_identity

OPENAI = "uf_experiments.engines.openai.engine.OpenAIEngine"
BATCH = "uf_experiments.engines.openai.batch.OpenAIBatchEngine"
VLLM = "uf_experiments.engines.vllm_engine.VLLMEngine"
OLD_OPENAI = "uf_experiments.engines.openai_engine.OpenAIEngine"  # the class path before 0.2


class OpenAILookingEngine:
    """An engine whose class path says "openai" but that declares no kind: not an API engine."""


FAKE = f"{__name__}.OpenAILookingEngine"


@pytest.mark.parametrize(("target", "kind", "api", "batch"), [
    (OPENAI, "api", True, False),
    (BATCH, "batch", True, True),
    (VLLM, "device", False, False),
    (FAKE, None, False, False),
    (OLD_OPENAI, "api", True, False),
    ("no.such.Engine", None, False, False),
])
def test_the_kind_is_what_the_class_declares(target, kind, api, batch):
    engine = {"_target_": target}
    assert engine_kind(engine) == kind
    assert is_api_engine(engine) is api
    assert is_batch_engine(OmegaConf.create({"engine": engine})) is batch


def test_cache_identities_are_the_ones_made_before_the_split():
    """The identity string (hashed into every cache key) still names the pre-0.2 class, for the plain, the Batch
    API and the legacy path alike, so a request cache filled by 0.1 answers a run of today."""
    before = json.dumps({"engine": OLD_OPENAI, "path": "gpt-x", "base_url": "http://127.0.0.1:9/v1"}, sort_keys=True)
    for target in (OPENAI, BATCH, OLD_OPENAI):
        assert engine_identity({"_target_": target, "base_url": "http://127.0.0.1:9/v1"}, "gpt-x") == before
    vllm = engine_identity({"_target_": VLLM, "llm_kwargs": {"dtype": "float32"}}, "/m")
    assert vllm == json.dumps({"engine": VLLM, "path": "/m", "dtype": "float32"}, sort_keys=True)


def test_a_legacy_target_in_a_users_config_is_renamed_with_a_note(compose, caplog, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    cfg = compose(["judge=gpt-4o", f"judge.model.engine._target_={OLD_OPENAI}"])
    with caplog.at_level(logging.WARNING, logger="uf_experiments.config.resolve"):
        validate(resolve(cfg))
    assert cfg.judge.model.engine._target_ == OPENAI
    assert f"judge.model.engine._target_={OLD_OPENAI} has moved to {OPENAI}" in caplog.text
    engine = build_engine(OmegaConf.create({"engine": {"_target_": OLD_OPENAI}, "env": {}, "tiny": None,
                                            "path": "gpt-x"}))
    assert type(engine).__module__ + "." + type(engine).__qualname__ == OPENAI and engine.model == "gpt-x"


def test_validate_checks_and_never_rewrites(compose):
    served = compose(["pool=served", "pool.models=[a,b]"])
    with pytest.raises(ValueError, match=r"^validate\(\) checks a resolved config: call"):
        validate(served)
    cfg = resolve(compose(["pool=tiny", "pool.size=3", "sampling.n=2"]))
    before = OmegaConf.to_yaml(cfg)
    validate(cfg)
    assert OmegaConf.to_yaml(cfg) == before
    assert resolve(cfg) is cfg and OmegaConf.to_yaml(cfg) == before  # resolving twice is resolving once
