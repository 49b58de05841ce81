"""Resolving a composed config, in place, before it is validated: a served pool's model names become typed model
configs, every roster member is named by its key, a null ``pool.size`` becomes the roster's length, a pre-0.2 engine
class path becomes today's, and ``batch=true`` (or a model's ``engine.batch: true``) moves an OpenAI-compatible
engine onto its Batch API twin. Idempotent: :func:`resolve` twice is :func:`resolve` once.

The engines are named only through their configs' ``_target_`` and the attributes their classes declare
(``batch_variant``), so this module imports no engine code.
"""

from __future__ import annotations

import inspect
import logging
from functools import cache
from typing import Any

from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf

from uf_experiments.config.schema import ConfigError, ModelConfig

log = logging.getLogger(__name__)

# Engine class paths before the package was split by role (0.1): a user's own YAML that still names one keeps working.
LEGACY_TARGETS = {
    "uf_experiments.engines.openai_engine.OpenAIEngine": "uf_experiments.engines.openai.engine.OpenAIEngine",
    "uf_experiments.engines.openai_batch.OpenAIBatchEngine": "uf_experiments.engines.openai.batch.OpenAIBatchEngine",
}


def canonical_target(target: str) -> str:
    """``target`` with a pre-0.2 engine class path replaced by today's."""
    return LEGACY_TARGETS.get(target, target)


def resolve(cfg: DictConfig) -> DictConfig:
    """In place (and returned): :func:`expand_pool`, legacy engine paths renamed, then :func:`apply_batch`."""
    expand_pool(cfg)
    for where, model in run_models(cfg):
        old = model.engine.get("_target_") if model.engine else None
        if old in LEGACY_TARGETS:
            log.warning("%s.engine._target_=%s has moved to %s; the old path still works", where, old,
                        LEGACY_TARGETS[old])
            model.engine["_target_"] = LEGACY_TARGETS[old]
    apply_batch(cfg)
    return cfg


def resolved(cfg: DictConfig) -> bool:
    """False for a config :func:`resolve` has plainly not seen (a served pool's list of names, a null
    ``pool.size``)."""
    models = cfg.pool.models
    return isinstance(models, DictConfig) and cfg.pool.size is not None


@cache
def schema_node(cls: type) -> DictConfig:
    """``OmegaConf.structured(cls)``, built once per class (ModelConfig 3-8 ms, a dozen times a run; RunConfig
    12-20 ms): ``OmegaConf.merge`` deep-copies its first argument, so merging onto it never changes it."""
    return OmegaConf.structured(cls)


def expand_pool(cfg: DictConfig) -> None:
    """In place: a served pool's model names become typed model configs on the pool's engine, every member is
    named by its roster key, and a null ``pool.size`` becomes the roster's length. Idempotent."""
    models = cfg.pool.models
    if isinstance(models, ListConfig):
        if not cfg.pool.engine or "_target_" not in cfg.pool.engine:
            raise ConfigError(f"pool '{cfg.pool.name}' lists model names but has no pool.engine to serve them")
        roster: dict[str, Any] = {}
        for name in models:
            if not isinstance(name, str) or not name:
                raise ConfigError(f"pool.models: {name!r} is not a model name; pass pool.models=[name1,name2]")
            if name in roster:
                raise ConfigError(f"pool.models lists {name} twice; pool members must be distinct")
            engine = OmegaConf.to_container(cfg.pool.engine, resolve=True)
            engine["base_url"] = cfg.pool.base_url or engine.get("base_url")
            spec = {"name": name, "path": name, "engine": engine, "price": cfg.pool.price,
                    "gpu_hour_usd": cfg.pool.gpu_hour_usd}
            roster[name] = OmegaConf.merge(schema_node(ModelConfig), spec)
        cfg.pool.models = roster
    elif models is None:
        cfg.pool.models = {}  # reported by validate() with the fix
    else:
        typed = {}
        for name, model in models.items():
            try:  # a member is named by its roster key, as in generation_models (gpt_4o_mini, not its dated id)
                typed[name] = OmegaConf.merge(schema_node(ModelConfig), model, {"name": name})
            except Exception as exc:  # noqa: BLE001 - reported with its key
                raise ConfigError(f"pool.models.{name}: {str(exc).splitlines()[0]}") from exc
        cfg.pool.models = typed
    if cfg.pool.size is None:
        cfg.pool.size = len(cfg.pool.models)


def run_models(cfg: DictConfig) -> list[tuple[str, Any]]:
    """(where, model config) of every model the run may call: the pool roster and the judge."""
    models = [(f"pool.models.{k}", m) for k, m in (cfg.pool.models or {}).items()]
    judge = OmegaConf.select(cfg, "judge.model", default=None)
    return models + ([("judge.model", judge)] if judge is not None else [])


def apply_batch(cfg: DictConfig) -> None:
    """In place: ``batch=true`` (every model) or a model's ``engine.batch: true`` moves an engine that has a Batch
    API twin (its class's ``batch_variant``: the OpenAI-compatible engine) onto that twin, keeping the kwargs it
    takes (base_url, timeout_s, max_retries, and any of its own) and dropping the rest (max_in_flight, per-minute
    limits). Its batch state goes into the request cache's file (``cache.path``). vLLM models are not affected.
    Idempotent."""
    for where, model in run_models(cfg):
        engine = model.engine
        if not engine:
            continue
        own = engine.get("batch")
        if own is not None:  # a switch, not an engine kwarg
            model.engine = {k: v for k, v in OmegaConf.to_container(engine, resolve=True).items() if k != "batch"}
            engine = model.engine
        if not (own or cfg.get("batch", False)):
            continue
        target = engine.get("_target_")
        cls = _engine_class(target)
        if cls is not None and getattr(cls, "kind", None) == "batch":
            continue  # already on the Batch API
        variant = getattr(cls, "batch_variant", None)
        if variant is None:
            if own:
                raise ConfigError(f"{where}.engine.batch=true: only an OpenAI-compatible engine can go through the "
                                  f"Batch API, not {target}; drop the override")
            continue  # batch=true leaves vLLM models alone
        takes = set(inspect.signature(engine_class(variant).__init__).parameters) - {"self", "path"}
        kwargs = {k: v for k, v in OmegaConf.to_container(engine, resolve=True).items() if k in takes}
        kwargs.setdefault("state_path", cfg.cache.get("url") or cfg.cache.path)
        model.engine = {"_target_": variant, **kwargs}


@cache
def engine_class(target: str) -> type:
    """The engine class an ``engine._target_`` names (a pre-0.2 path too): the one lookup resolving, validating
    and building engines share. Raises (ImportError, ValueError, ...) when it cannot be imported."""
    return get_class(canonical_target(target))


def _engine_class(target: Any) -> type | None:
    """:func:`engine_class`, or None when it cannot be imported (validate reports that)."""
    try:
        return engine_class(str(target))
    except Exception:  # noqa: BLE001 - validate() names the engine that cannot be imported
        return None


def uses_batch(cfg: DictConfig) -> bool:
    """True when any model of the run goes through the Batch API (after :func:`resolve`): the run then prints
    the Batch API notice first."""
    return any(m.engine and getattr(_engine_class(m.engine.get("_target_")), "kind", None) == "batch"
               for _, m in run_models(cfg))


