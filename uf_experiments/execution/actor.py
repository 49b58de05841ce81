"""What runs inside a Ray actor (``execution=ray``): one copy of one model's engine. It loads the model on its
first batch (so the load counts as busy GPU time, as on ``local``), answers whole batches with the engine's blocking
call and says where it ran. It never opens the request cache: the driver commits what it returns."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from uf_experiments.core.records import Completion, Request
from uf_experiments.engines.base import run_sync
from uf_experiments.engines.build import build_engine


class ReplicaLoadError(RuntimeError):
    """The model could not be loaded in the actor (a bad path, too little memory): not worth a restart."""


class ModelReplica:
    """A Ray actor class (``ray.remote(ModelReplica)``): one replica of one model."""

    def __init__(self, model: Any, path: str) -> None:
        self.model, self.path = model, path
        self.engine: Any = None

    def run_batch(self, requests: Sequence[Request]) -> tuple[list[Completion], float, float, dict[str, Any]]:
        """(completions in request order, start and end of the call as ``time.time()``, where it ran)."""
        start = time.time()
        if self.engine is None:
            try:
                self.engine = build_engine(self.model, self.path)
            except Exception as exc:  # noqa: BLE001 - re-raised with its type named, the driver stops the run
                raise ReplicaLoadError(f"{type(exc).__name__}: {exc}") from None
        blocking = getattr(self.engine, "complete_sync", None)
        out = blocking(list(requests)) if blocking is not None else run_sync(self.engine, list(requests))
        return out, start, time.time(), self.info()

    def info(self) -> dict[str, Any]:
        import ray

        context = ray.get_runtime_context()
        return {"node": context.get_node_id(), "gpus": list(ray.get_gpu_ids()), "pid": os.getpid(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "restarted": bool(context.was_current_actor_reconstructed)}

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()
            self.engine = None
