"""config.typed(): a composed, resolved, validated config comes through once as the RunConfig dataclass tree: model
rosters as ModelConfig, engine configs as plain dicts, enums as enums, overrides in place, the DictConfig untouched."""

from __future__ import annotations

from omegaconf import DictConfig

from uf_experiments.config import (
    AspectConfig,
    JudgeOutput,
    ModelConfig,
    Recipe,
    RunConfig,
    SwapCombine,
    TinyConfig,
    resolve,
    typed,
    validate,
)


def test_a_demo_config_comes_through_as_the_dataclass_tree(compose):
    cfg = compose(["pool=tiny", "pool.size=3", "sampling.n=2", "seed=7", "judge.output=text", "judge.swap=true",
                   "judge.swap_combine=mean", "aspect=[honesty,critique]", "dataset.limit=5", "budget_usd=2"])
    validate(resolve(cfg))
    config = typed(cfg)
    assert isinstance(config, RunConfig)
    assert list(config.pool.models) == list(cfg.pool.models) and config.pool.size == 3
    for name, model in config.pool.models.items():
        assert isinstance(model, ModelConfig) and model.name == name
        assert isinstance(model.tiny, TinyConfig)
        assert type(model.engine) is dict and model.engine["_target_"].endswith("VLLMEngine")
        assert type(model.engine["llm_kwargs"]) is dict
    assert isinstance(config.judge.model, ModelConfig) and config.judge.model.name == cfg.judge.model.name
    assert config.judge.output is JudgeOutput.text and config.judge.swap is True
    assert config.judge.swap_combine is SwapCombine.mean
    assert config.binarize.recipe is Recipe.h4
    assert list(config.aspect) == ["honesty", "critique"]
    assert all(isinstance(a, AspectConfig) for a in config.aspect.values())
    assert config.aspect["critique"].per_completion and config.aspect["honesty"].allow_na
    assert (config.seed, config.sampling.n, config.dataset.limit, config.budget_usd) == (7, 2, 5, 2.0)
    assert type(config.principles.distribution) is dict
    assert isinstance(cfg, DictConfig) and cfg.judge.output == JudgeOutput.text  # the composed config is untouched


def test_a_served_pool_becomes_model_configs(compose, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "x")
    cfg = compose(["pool=served", "pool.models=[gen-a,gen-b]", "judge=served", "judge.model.path=judge-x",
                   "pool.base_url=http://127.0.0.1:9/v1"])
    validate(resolve(cfg))
    config = typed(cfg)
    assert list(config.pool.models) == ["gen-a", "gen-b"]
    model = config.pool.models["gen-b"]
    assert isinstance(model, ModelConfig) and (model.name, model.path) == ("gen-b", "gen-b")
    assert model.engine["base_url"] == "http://127.0.0.1:9/v1"
    assert config.judge.model.path == "judge-x"
