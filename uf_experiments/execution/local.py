"""The :class:`Execution` seam and ``execution=local``: every engine in this process, as before Ray."""

from __future__ import annotations

from typing import Any, Protocol

from uf_experiments.config.schema import RunConfig, enum_value
from uf_experiments.engines.build import build_engine, engine_attr


class Execution(Protocol):
    """Builds each model's engine somewhere and says what the worker in front of it needs to know."""

    def exclusive(self, model: Any) -> bool:
        """True when the model's engine must take the run's device slot (one such engine loaded at a time)."""
        ...

    def build(self, model: Any, path: str) -> Any:
        """The model's engine (the seam of ``engines/base.py``)."""
        ...

    def gpus(self, model: Any) -> float:
        """The GPUs one copy of the model's engine holds: its engine time is charged ``gpu_hour_usd`` x this."""
        ...

    def placement(self) -> dict[str, Any] | None:
        """``summary.json`` ``placement`` (None: not written)."""
        ...

    def close(self) -> None: ...


class LocalExecution:
    """``execution=local``: engines in this process; a vLLM engine takes the device slot."""

    def exclusive(self, model: Any) -> bool:
        return bool(engine_attr(model.engine, "exclusive_device", False))

    def build(self, model: Any, path: str) -> Any:
        return build_engine(model, path)

    def gpus(self, model: Any) -> float:
        return 1.0

    def placement(self) -> dict[str, Any] | None:
        return None

    def close(self) -> None:
        return None


def start_execution(config: RunConfig, t0_wall: float) -> Execution:
    """The run's execution: local, or Ray started (or joined) now. ``t0_wall`` (``time.time()``) is the run's
    start, from which ``placement`` measures its busy intervals."""
    if enum_value(config.execution.backend) == "ray":
        from uf_experiments.execution.cluster import RayExecution

        return RayExecution.start(config, t0_wall)
    return LocalExecution()
