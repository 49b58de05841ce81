"""What every part of a run's stream shares (:class:`RunContext`): the typed run config, where it writes, the
request cache, the tracker, the stop state, the budget meter, the progress display, the two stages' stats and where
engines run.
``Run``, the ``Scheduler`` and every ``ModelWorker`` take it instead of a long argument list."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uf_experiments.config.schema import RunConfig
from uf_experiments.core.status import StopState
from uf_experiments.engines.cache import RequestCache
from uf_experiments.execution import Execution, LocalExecution
from uf_experiments.metrics.summary import StageStats
from uf_experiments.pipeline.budget import Meter
from uf_experiments.pipeline.progress import Progress


@dataclass(frozen=True)
class RunContext:
    config: RunConfig
    run_dir: Path
    cache: RequestCache | None
    tracker: Any  # tracking.wandb: WandbTracker or NullTracker
    card_config: dict[str, Any]  # the composed config as plain values (enums as strings): the dataset card's input
    stop: StopState
    meter: Meter
    progress: Progress
    gen_stats: StageStats = field(default_factory=StageStats)
    judge_stats: StageStats = field(default_factory=StageStats)
    execution: Execution = field(default_factory=LocalExecution)  # where engines run (execution=local | ray)
