"""The run config's schema (registered in Hydra's ConfigStore), its cross-field checks, and the one
instantiate helper that turns a model config into an engine.

Type errors (``pool.size=abc``) and unknown keys fail while Hydra composes; the checks that need more than
one field (``sampling.n`` <= ``pool.size``) run in :func:`validate`, before anything is loaded or spent.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf


class ConfigError(ValueError):
    """A config that cannot run. The message is one line naming the key and the fix."""


class SetupError(ConfigError):
    """The environment lacks what the config needs (an API key, a Hugging Face token): the same for every cell of
    a sweep, so a sweep fails on it as a whole instead of skipping cells."""


class DatasetKind(Enum):
    demo = "demo"
    hub = "hub"
    local = "local"


class CompletionsSource(Enum):
    """Where a prompt's completions come from (``dataset.completions``)."""

    none = "none"  # the pool writes them (the dataset holds prompts only)
    auto = "auto"  # the dataset holds them; its columns say in which layout (see data.py)
    ultrafeedback = "ultrafeedback"  # openbmb/UltraFeedback's `completions` list of structs
    run = "run"  # an earlier run's rated.parquet (`generations`, `ratings`, ...)
    columns = "columns"  # a list column of responses: dataset.columns.responses=NAME


class JudgeOutput(Enum):
    json = "json"
    text = "text"


class SwapCombine(Enum):
    first = "first"
    mean = "mean"


class Recipe(Enum):
    h4 = "h4"
    mean_aspects = "mean_aspects"
    best_worst = "best_worst"


class Ties(Enum):
    keep = "keep"
    drop = "drop"


class TrackingBackend(Enum):
    wandb = "wandb"
    none = "none"


@dataclass
class PriceConfig:
    input_per_1m: float = 0.0  # USD per 1M prompt tokens
    output_per_1m: float = 0.0  # USD per 1M completion tokens
    cached_input_per_1m: float = 0.0  # USD per 1M cached prompt tokens
    batch_discount: float = 1.0  # the factor on all three through the OpenAI Batch API (OpenAI: 0.5)
    read_on: str | None = None  # the date the prices were read from the provider's page


@dataclass
class TinyConfig:
    seed: int = 0
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 2


@dataclass
class ModelConfig:
    name: str = MISSING  # what the run files call this model
    path: str | None = None  # HF hub id, local directory, or API model name; null with `tiny`
    tiny: TinyConfig | None = None  # build a tiny random-weight model offline instead of loading `path`
    engine: dict[str, Any] = field(default_factory=dict)  # `_target_` + engine kwargs (see conf/model/)
    env: dict[str, str] = field(default_factory=dict)  # environment set before the engine starts
    price: PriceConfig = field(default_factory=PriceConfig)
    gpu_hour_usd: float = 0.0  # self-hosted engines: charged on measured engine wall time


@dataclass
class PoolConfig:
    name: str = MISSING
    size: int | None = None  # use the first `size` models of the roster (null: all of them)
    # The roster, in order: model configs by name (from conf/model/ via the pool's defaults list), or, for a
    # served pool, a list of model names behind one OpenAI-compatible endpoint (pool.models=[a,b,c]).
    models: Any = None
    base_url: str | None = None  # served pool: the endpoint (null: OPENAI_BASE_URL)
    engine: dict[str, Any] = field(default_factory=dict)  # served pool: the engine every named member uses
    price: PriceConfig = field(default_factory=PriceConfig)  # served pool: the price of every member
    gpu_hour_usd: float = 0.0  # served pool: what the server's GPU costs per hour


@dataclass
class SamplingConfig:
    n: int = 2  # completions per prompt, each from a distinct model
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 1024


@dataclass
class PrinciplesConfig:
    name: str = "none"
    # source -> principle -> weight (normalised); `default` covers other sources; empty: no system prompt
    distribution: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class AspectConfig:
    name: str = MISSING
    template: str = MISSING  # file under uf_experiments/judge/templates/
    min_rating: int = 1
    max_rating: int = 5
    allow_na: bool = False  # honesty: "N/A" is a valid answer (stored as no rating)
    has_types: bool = False  # truthfulness / helpfulness: a `Type:` list before the rating
    per_completion: bool = False  # critique: one request per completion, judged alone (no side-by-side)
    system: str = "system.md"  # the system prompt template


@dataclass
class JudgeConfig:
    model: ModelConfig = MISSING
    output: JudgeOutput = JudgeOutput.json  # json: JSON-schema structured output; text: the paper's format
    temperature: float = 0.0
    top_p: float = 1.0
    max_new_tokens: int = 1024
    max_parse_retries: int = 2  # re-ask a (prompt, aspect) whose reply did not parse, then count it
    rationale_max_chars: int | None = None  # JSON mode: cap each rationale in the schema (keeps tiny judges short)
    swap: bool = False  # judge side-by-side aspects again in the reversed order; report the flip rate
    swap_combine: SwapCombine = SwapCombine.first  # first: keep the first order's ratings; mean: average both orders


@dataclass
class ShardConfig:
    index: int = 0  # dataset.shard.index=i: this job's share, 0 <= i < count
    count: int = 1  # dataset.shard.count=k: split the prompts into k disjoint shards (prompt i -> shard i % k)


@dataclass
class DatasetConfig:
    name: str = MISSING
    kind: DatasetKind = DatasetKind.demo
    repo_id: str | None = None  # kind=hub
    subset: str | None = None  # kind=hub: the dataset config name
    split: str = "train"
    path: str | None = None  # kind=local: .jsonl / .json / .parquet / .csv; kind=hub: a local copy instead of repo_id
    # our name -> the dataset's column (null: not mapped). Besides instruction, source, prompt_id and the world
    # knowledge columns: `responses` (a list column of completions to judge), `models`, `principles`,
    # `system_prompts` (list columns beside it)
    columns: dict[str, str | None] = field(default_factory=dict)
    completions: CompletionsSource = CompletionsSource.none  # none: the pool generates; else the dataset's are judged
    reference: dict[str, str | None] = field(default_factory=dict)  # aspect -> a list column of reference ratings
    source: str | None = None  # source label when the dataset has no source column
    limit: int | None = None  # keep the first N prompts
    shard: ShardConfig = field(default_factory=ShardConfig)


@dataclass
class BinarizeConfig:
    recipe: Recipe = Recipe.h4
    score: str | None = None  # an aspect name, or null for the mean of the rated aspects
    ties: Ties = Ties.drop


@dataclass
class TrackingConfig:
    backend: TrackingBackend = TrackingBackend.wandb
    project: str = "uf-experiments"
    entity: str | None = None
    mode: str | None = None  # null: online when logged in, offline otherwise; or "offline" / "online"
    group: str | None = None  # null: the sweep dir name for -m runs
    max_table_rows: int = 20000  # rows of the W&B tables (completions, pairs); the files always have all of them


@dataclass
class CacheConfig:
    enabled: bool = True  # cache.enabled=false: ask the engines every time (nothing is read or written)
    path: str = "outputs/cache/requests.sqlite"  # cache.path=...; relative to where you launch; shared by all runs
    claim_ttl_s: float = 600.0  # a parallel job's claim on a request lapses if not refreshed for this long


@dataclass
class PlanConfig:
    generation_output_tokens: int | None = None  # planning.generation_output_tokens=300 (null: sampling.max_new_tokens)
    judge_output_tokens: int | None = None  # planning.judge_output_tokens=400 (null: judge.max_new_tokens)
    pilot: int = 0  # planning.pilot=20: run the first 20 prompts for real, estimate from their output lengths


@dataclass
class OutputConfig:
    push_to_hub: str | None = None  # repo id; the rated and preference datasets are pushed there
    private: bool = True


@dataclass
class RunConfig:
    experiment: str = "demo"
    seed: int = 42
    dataset: DatasetConfig = MISSING
    pool: PoolConfig = MISSING
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    principles: PrinciplesConfig = field(default_factory=PrinciplesConfig)
    judge: JudgeConfig = MISSING
    aspect: dict[str, AspectConfig] = field(default_factory=dict)
    binarize: BinarizeConfig = field(default_factory=BinarizeConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    cache: CacheConfig = field(default_factory=CacheConfig)
    plan: bool = False  # plan=true: print requests, tokens and $ per stage and model; call no model
    planning: PlanConfig = field(default_factory=PlanConfig)
    budget_usd: float | None = None  # budget_usd=5: stop sending before the run could spend more
    batch: bool = False  # batch=true: every OpenAI-compatible model goes through the Batch API (half price, <= 24 h)
    stop_grace_s: float = 30.0  # after a stop (signal, endpoint down, budget): wait this long for requests in flight
    progress_interval_s: float = 5.0  # without a terminal: one progress line this often
    output: OutputConfig = field(default_factory=OutputConfig)


# Overrides that change where files go or how a run is watched, not what it does: left out of W&B run names,
# compare's columns and the sweep's run-dir names (conf/config.yaml hydra.job.config.override_dirname).
NON_DEFINING_OVERRIDES = ("experiment", "plan", "planning.", "cache.", "hydra.", "tracking.", "output.")


def defines_run(override: str) -> bool:
    """False for an override (``key=value`` or ``+key=value``) of :data:`NON_DEFINING_OVERRIDES`."""
    key = override.lstrip("+~").split("=", 1)[0]
    return not any(key == p or (p.endswith(".") and key.startswith(p)) for p in NON_DEFINING_OVERRIDES)


def side_by_side(aspects: Any) -> list[str]:
    """The aspects a mean score averages: the side-by-side ones (1-5); per-completion aspects (``critique``, 1-10)
    count only when named (``binarize.score``) or when they are all there is."""
    names = list(aspects)
    return [a for a in names if not _get(aspects[a], "per_completion")] or names


def _get(node: Any, key: str) -> Any:
    return node.get(key) if isinstance(node, dict) else getattr(node, key, None)


OPENAI_ENGINE = "uf_experiments.engines.openai_engine.OpenAIEngine"
BATCH_ENGINE = "uf_experiments.engines.openai_batch.OpenAIBatchEngine"


def register_configs() -> None:
    ConfigStore.instance().store(name="config_schema", node=RunConfig)


def expand_pool(cfg: DictConfig) -> None:
    """In place: a served pool's model names become typed model configs on the pool's engine, every member is
    named by its roster key, and a null ``pool.size`` becomes the roster's length. Idempotent."""
    from omegaconf import ListConfig

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
            roster[name] = OmegaConf.merge(OmegaConf.structured(ModelConfig), spec)
        cfg.pool.models = roster
    elif models is None:
        cfg.pool.models = {}  # reported by validate() with the fix
    else:
        typed = {}
        for name, model in models.items():
            try:  # a member is named by its roster key, as in generation_models (gpt_4o_mini, not its dated id)
                typed[name] = OmegaConf.merge(OmegaConf.structured(ModelConfig), model, {"name": name})
            except Exception as exc:  # noqa: BLE001 - reported with its key
                raise ConfigError(f"pool.models.{name}: {str(exc).splitlines()[0]}") from exc
        cfg.pool.models = typed
    if cfg.pool.size is None:
        cfg.pool.size = len(cfg.pool.models)
    apply_batch(cfg)


def _run_models(cfg: DictConfig) -> list[tuple[str, Any]]:
    """(where, model config) of every model the run may call: the pool roster and the judge."""
    models = [(f"pool.models.{k}", m) for k, m in (cfg.pool.models or {}).items()]
    judge = OmegaConf.select(cfg, "judge.model", default=None)
    return models + ([("judge.model", judge)] if judge is not None else [])


def apply_batch(cfg: DictConfig) -> None:
    """In place: ``batch=true`` (every model) or a model's ``engine.batch: true`` switches an OpenAI-compatible
    engine to the Batch API engine, keeping the kwargs it takes (base_url, timeout_s, max_retries, and any of
    its own) and dropping the rest (max_in_flight, per-minute limits). Its batch state goes into the request
    cache's file (``cache.path``). vLLM models are not affected. Idempotent."""
    import inspect

    from hydra.utils import get_class

    takes = None
    for where, model in _run_models(cfg):
        engine = model.engine
        if not engine:
            continue
        own = engine.get("batch")
        if own is not None:  # a switch, not an engine kwarg
            model.engine = {k: v for k, v in OmegaConf.to_container(engine, resolve=True).items() if k != "batch"}
            engine = model.engine
        target = engine.get("_target_")
        if not (own or cfg.get("batch", False)) or target == BATCH_ENGINE:
            continue
        if target != OPENAI_ENGINE:
            if own:
                raise ConfigError(f"{where}.engine.batch=true: only the OpenAI-compatible engine ({OPENAI_ENGINE}) "
                                  f"can go through the Batch API, not {target}; drop the override")
            continue  # batch=true leaves vLLM models alone
        if takes is None:
            takes = set(inspect.signature(get_class(BATCH_ENGINE).__init__).parameters) - {"self", "path"}
        kwargs = {k: v for k, v in OmegaConf.to_container(engine, resolve=True).items() if k in takes}
        kwargs.setdefault("state_path", cfg.cache.path)
        model.engine = {"_target_": BATCH_ENGINE, **kwargs}


def is_api_engine(engine: Any) -> bool:
    """An engine config served through an OpenAI-compatible API (the plain or the Batch API engine): priced per
    token, probed before a run, limited by its endpoint."""
    return "openai" in str(engine.get("_target_", "")).lower()


def is_batch_engine(model: Any) -> bool:
    """True when this model's requests go through the Batch API (after :func:`apply_batch`)."""
    return bool(model.engine) and model.engine.get("_target_") == BATCH_ENGINE


def uses_batch(cfg: DictConfig) -> bool:
    """True when any model of the run goes through the Batch API: the runner then prints
    ``engines.openai_batch.BATCH_NOTICE`` first."""
    return any(is_batch_engine(m) for _, m in _run_models(cfg))


def _value(value: Any) -> str:
    return str(getattr(value, "value", value))


def completions_given(cfg: DictConfig) -> bool:
    """True when the dataset holds the completions (``dataset.completions`` is not ``none``): nothing is generated."""
    return _value(cfg.dataset.get("completions", "none")) != "none"


def validate(cfg: DictConfig) -> None:
    """The checks a schema cannot express (after :func:`expand_pool`). Raises ConfigError with one line."""
    expand_pool(cfg)
    roster = list(cfg.pool.models)
    source = _value(cfg.dataset.get("completions", "none"))
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
    from uf_experiments.principles import KNOWN

    for source, weights in cfg.principles.distribution.items():
        unknown = [p for p in weights if p not in KNOWN]
        if unknown or any(w < 0 for w in weights.values()) or not sum(weights.values()) > 0:
            raise ConfigError(f"principles.distribution.{source}: weights must be >= 0 with a positive sum, over "
                              f"{', '.join(KNOWN)} (got {dict(weights)})")
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
        if model.path is None and model.tiny is None:
            raise ConfigError(f"{where} needs a path (hub id, local dir or API model name) or a tiny spec")
        problem = _engine_problem(model.engine)
        if problem:
            raise SetupError(f"{where} ({model.name}): {problem}")
    if cfg.output.push_to_hub:
        from huggingface_hub import get_token

        if not get_token():
            raise SetupError(f"output.push_to_hub={cfg.output.push_to_hub} needs a Hugging Face token: "
                              "set HF_TOKEN or run `hf auth login`")


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


def _engine_problem(engine: Any) -> str | None:
    """Ask the engine class (``check_config``, when it has one) whether it can start, e.g. that its key is set."""
    from hydra.utils import get_class

    try:
        cls = get_class(engine["_target_"])
    except Exception as exc:  # noqa: BLE001 - reported as a config error
        return f"engine {engine['_target_']} cannot be imported ({exc})"
    check = getattr(cls, "check_config", None)
    return check(engine) if check else None


def resolve_model_path(model: DictConfig | ModelConfig) -> str:
    """The directory or id the engine loads: a tiny model is built (or taken from its cache) first."""
    if model.tiny is not None:
        from uf_experiments.tiny import TinySpec, build_tiny_model

        tiny = model.tiny if isinstance(model.tiny, TinyConfig) else TinyConfig(**OmegaConf.to_container(model.tiny))
        return str(build_tiny_model(TinySpec(tiny.seed, tiny.hidden_size, tiny.num_layers, tiny.num_heads)))
    return str(model.path)


def build_engine(model: DictConfig, path: str | None = None) -> Any:
    """The one instantiate helper: set the model's env, then ``model.engine._target_(path=..., **kwargs)``."""
    from hydra.utils import instantiate

    for key, value in model.env.items():
        os.environ[key] = str(value)
    return instantiate(model.engine, path=path or resolve_model_path(model), _convert_="all")
