"""The composed run config as the dataclass tree :mod:`uf_experiments.config.schema` defines, built once after
:func:`~uf_experiments.config.resolve.resolve` and :func:`~uf_experiments.config.validate.validate`: the pipeline
reads plain attributes (a DictConfig lookup costs ~100 us on the per-request path), model rosters are
``dict[str, ModelConfig]``, engine configs plain dicts, enums stay enums."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from uf_experiments.config.resolve import schema_node
from uf_experiments.config.schema import ModelConfig, RunConfig


def typed(cfg: DictConfig) -> RunConfig:
    """``cfg`` (composed, resolved, validated) as a :class:`RunConfig`; interpolations resolved, ``cfg`` untouched."""
    merged = OmegaConf.merge(schema_node(RunConfig), cfg)
    config = OmegaConf.to_object(merged)
    assert isinstance(config, RunConfig)
    config.pool.models = {name: _model(m) for name, m in (config.pool.models or {}).items()}
    return config


def _model(model: Any) -> ModelConfig:
    """A roster member (``pool.models`` is untyped in the schema: a served pool lists names before resolve)."""
    if isinstance(model, ModelConfig):
        return model
    return OmegaConf.to_object(OmegaConf.merge(schema_node(ModelConfig), model))  # type: ignore[return-value]
