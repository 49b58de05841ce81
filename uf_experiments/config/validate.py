"""The checks a schema cannot express, on a resolved config (:func:`uf_experiments.config.resolve`), before anything
is loaded or spent: each raises :class:`ConfigError` (or :class:`SetupError`) with one line naming the key and the
fix. Nothing here changes the config it checks.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

from omegaconf import DictConfig

from uf_experiments.config.resolve import engine_class, resolved
from uf_experiments.config.schema import PRINCIPLES, ConfigError, DatasetKind, SetupError, enum_value


def validate(cfg: DictConfig) -> None:
    """The checks a schema cannot express, on a resolved config. Raises ConfigError with one line."""
    if not resolved(cfg):
        raise ValueError("validate() checks a resolved config: call uf_experiments.config.resolve(cfg) first")
    roster = list(cfg.pool.models)
    source = enum_value(cfg.dataset.get("completions", "none"))
    if source != "none":
        if roster:
            raise ConfigError(
                f"dataset.completions={source} judges the completions the dataset holds, so pool '{cfg.pool.name}' "
                "would never be used: pass pool=none (experiment=rejudge does)"
            )
    else:
        if not roster and cfg.pool.name == "none":
            raise ConfigError(
                f"pool=none generates nothing, and dataset '{cfg.dataset.name}' holds no completions to judge "
                "(dataset.completions=none): pass dataset.completions=auto to judge the dataset's own, or pick a pool"
            )
        if not roster:
            raise ConfigError(
                f"pool '{cfg.pool.name}' has no models: pass pool.models=[name1,name2] (a served pool) "
                "or add `/model@models.NAME: NAME` to the pool's defaults; to judge completions a dataset already "
                "holds, use experiment=rejudge"
            )
        if not 1 <= cfg.pool.size <= len(roster):
            raise ConfigError(f"pool.size={cfg.pool.size} must be between 1 and {len(roster)} "
                              f"(the roster of pool '{cfg.pool.name}')")
        if not 1 <= cfg.sampling.n <= cfg.pool.size:
            raise ConfigError(f"sampling.n={cfg.sampling.n} must be between 1 and pool.size={cfg.pool.size} "
                              "(n distinct models per prompt)")
    _validate_given_columns(cfg, source)
    if not 0 <= cfg.dataset.shard.index < cfg.dataset.shard.count:
        raise ConfigError(f"dataset.shard.index={cfg.dataset.shard.index} must be in 0..dataset.shard.count-1 "
                          f"(count={cfg.dataset.shard.count})")
    if cfg.dataset.limit is not None and cfg.dataset.limit < 1:
        raise ConfigError(f"dataset.limit={cfg.dataset.limit} must be a positive number of prompts, or null for all")
    if not cfg.aspect:
        raise ConfigError("no judge aspect selected: pass e.g. aspect=[overall_rating]")
    for source, weights in cfg.principles.distribution.items():
        unknown = [p for p in weights if p not in PRINCIPLES]
        if unknown or any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
            raise ConfigError(f"principles.distribution.{source}: weights must be >= 0 with a positive sum, over "
                              f"{', '.join(PRINCIPLES)} (got {dict(weights)})")
    if cfg.budget_usd is not None and not (math.isfinite(cfg.budget_usd) and cfg.budget_usd >= 0):
        raise ConfigError(f"budget_usd={cfg.budget_usd} must be a number of dollars >= 0, e.g. budget_usd=5 "
                          "(or null for no budget)")
    if cfg.judge.max_parse_retries < 0:
        raise ConfigError(f"judge.max_parse_retries={cfg.judge.max_parse_retries} must be >= 0")
    if cfg.binarize.score is not None and cfg.binarize.score not in cfg.aspect:
        raise ConfigError(
            f"binarize.score={cfg.binarize.score} is not a selected aspect ({', '.join(cfg.aspect)}): "
            "pick one of them or null for the aspect mean"
        )
    if cfg.dataset.kind == DatasetKind.hub and not cfg.dataset.repo_id and not cfg.dataset.path:
        raise ConfigError("dataset.repo_id is required for a hub dataset: dataset.repo_id=OWNER/NAME "
                          "(or dataset.path=FILE for a local copy)")
    if cfg.dataset.kind == DatasetKind.local and not cfg.dataset.path:
        raise ConfigError("dataset.path is required for a local dataset: dataset.path=/path/to/prompts.jsonl")
    models = [*((f"pool.models.{k}", m) for k, m in cfg.pool.models.items()), ("judge.model", cfg.judge.model)]
    for where, model in models:
        if not model.engine or "_target_" not in model.engine:
            raise ConfigError(f"{where}.engine needs a _target_ (an engine class, see conf/model/)")
        if model.path is None and model.tiny is None and model.packaged is None:
            raise ConfigError(f"{where} needs a path (hub id, local dir or API model name), a tiny or a packaged spec")
        problem = _engine_problem(model.engine)
        if problem:
            raise SetupError(f"{where} ({model.name}): {problem}")
        _validate_placement(where, model.engine)
    _validate_execution(cfg.execution)
    _validate_cache_url(cfg.cache.get("url"))
    if cfg.output.push_to_hub:
        from huggingface_hub import get_token

        if not get_token():
            raise SetupError(f"output.push_to_hub={cfg.output.push_to_hub} needs a Hugging Face token: "
                              "set HF_TOKEN or run `hf auth login`")


def _validate_cache_url(url: str | None) -> None:
    """``cache.url`` is a ``postgresql://`` URL without a password (the password would land in .hydra/, W&B and
    the logs: it comes from PGPASSWORD or ~/.pgpass)."""
    from uf_experiments.core.dburl import has_password, is_url, redact

    if not url:
        return
    if not is_url(url):
        raise ConfigError("cache.url must be a PostgreSQL URL: pass cache.url=postgresql://USER@HOST:PORT/DB (or "
                          "null for the SQLite file cache.path)")
    if has_password(url):
        raise SetupError(f"cache.url={redact(url)} (password removed) carries a password: drop it from the URL and "
                         "export PGPASSWORD or put it in ~/.pgpass")


def check_cache_path(path: str | os.PathLike[str]) -> None:
    """The request cache file can be created and written (its directory is created as the cache would); else a
    ConfigError naming ``cache.path`` and the fix. Writes nothing that stays."""
    from pathlib import Path

    file = Path(path).expanduser()
    fix = "pass a writable cache.path=DIR/requests.sqlite (or cache.enabled=false)"
    if file.is_dir():
        raise ConfigError(f"cache.path={path} is a directory: {fix}")
    blocker = next((p for p in file.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise ConfigError(f"cache.path={path} cannot be written ({blocker} is a file, not a directory): {fix}")
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        if file.exists():
            with file.open("ab"):
                pass
        else:
            with tempfile.NamedTemporaryFile(dir=file.parent, prefix=".uf-write-check-"):
                pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cache.path={path} cannot be written ({reason}): {fix}") from exc


def _validate_given_columns(cfg: DictConfig, source: str) -> None:
    """The mapped completion columns fit ``dataset.completions``."""
    columns = cfg.dataset.get("columns") or {}
    responses = columns.get("responses")
    listed = [k for k in ("models", "principles", "system_prompts") if columns.get(k)]
    reference = {a: c for a, c in (cfg.dataset.get("reference") or {}).items() if c}
    first_ref = next((f"dataset.reference.{a}={c}" for a, c in reference.items()), "")
    if source == "none" and (responses or reference):
        given = f"dataset.columns.responses={responses}" if responses else first_ref
        raise ConfigError(f"{given} maps completions to judge, but dataset.completions=none generates new ones: "
                          "use experiment=rejudge (or dataset.completions=columns pool=none)")
    if source == "columns" and not responses:
        raise ConfigError("dataset.completions=columns needs the list column of responses: "
                          "dataset.columns.responses=NAME")
    if source in ("ultrafeedback", "run") and (responses or reference):
        given = f"dataset.columns.responses={responses}" if responses else first_ref
        raise ConfigError(f"{given} is for a dataset with a list column of responses; dataset.completions={source} "
                          "reads the completions and their ratings from its own layout: drop it, or pass "
                          "dataset.completions=columns")
    if (listed or reference) and not responses:
        key = f"dataset.columns.{listed[0]}={columns[listed[0]]}" if listed else first_ref
        raise ConfigError(f"{key} goes with a list column of responses: add dataset.columns.responses=NAME")


def _validate_placement(where: str, engine: Any) -> None:
    """``engine.num_gpus`` and ``engine.replicas`` (execution=ray) are numbers Ray can place."""
    gpus, replicas = engine.get("num_gpus"), engine.get("replicas")
    if gpus is not None and (isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0
                             or (gpus > 1 and gpus != int(gpus))):
        raise ConfigError(f"{where}.engine.num_gpus={gpus} must be a fraction of one GPU (0.15) or a whole number "
                          f"of GPUs (2), e.g. {where}.engine.num_gpus=1")
    if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1):
        raise ConfigError(f"{where}.engine.replicas={replicas} must be a whole number >= 1, e.g. "
                          f"{where}.engine.replicas=2")


def _validate_execution(execution: Any) -> None:
    """The execution knobs (conf/execution/)."""
    if enum_value(execution.backend) != "ray":
        return
    import importlib.util

    if importlib.util.find_spec("ray") is None:
        raise SetupError('execution=ray needs Ray: pip install "uf-experiments[ray]" (or pip install "ray>=2.60"), '
                         "or run with execution=local")
    if execution.address and (execution.num_gpus is not None or execution.num_cpus is not None):
        raise ConfigError(f"execution.address={execution.address} joins a running Ray cluster, whose nodes declare "
                          "their own GPUs and CPUs: drop execution.num_gpus / execution.num_cpus (or the address)")
    if execution.num_gpus is not None and execution.num_gpus < 0:
        raise ConfigError(f"execution.num_gpus={execution.num_gpus} must be >= 0 (or null to detect the GPUs)")
    if execution.max_restarts < 0:
        raise ConfigError(f"execution.max_restarts={execution.max_restarts} must be >= 0 (e.g. 1)")


def _engine_problem(engine: Any) -> str | None:
    """Ask the engine class (``check_config``, when it has one) whether it can start, e.g. that its key is set."""
    try:
        cls = engine_class(str(engine["_target_"]))
    except Exception as exc:  # noqa: BLE001 - reported as a config error
        return f"engine {engine['_target_']} cannot be imported ({exc})"
    check = getattr(cls, "check_config", None)
    return check(engine) if check else None


