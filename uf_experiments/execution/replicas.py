"""A vLLM model under ``execution=ray``: :class:`ReplicaSet` is the model's engine as the run's worker sees it (the
seam of ``engines/base.py``), backed by ``engine.replicas`` Ray actors, each holding ``engine.num_gpus`` GPUs.

- A batch is split over the live replicas (data parallelism); each share is one call on one actor, whose whole
  result comes back at once (completions with token counts and engine seconds), so nothing is emitted twice.
- Ray places the actors (they wait for GPUs when the cluster has none free) and restarts a dead one up to
  ``execution.max_restarts`` times, re-running the call it was on (``max_task_retries=-1``).
- A replica whose restarts are used up is lost: its share goes to another live replica. With none left the run
  stops (:class:`ReplicasDown`, exit 3): the share's requests are not sent, so the same command resumes them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from collections.abc import Sequence
from typing import Any

from uf_experiments.core.records import Request
from uf_experiments.engines.base import Emit, EngineDown
from uf_experiments.execution.actor import ModelReplica, ReplicaLoadError
from uf_experiments.execution.placement import Placement, ReplicaRecord, import_ray

log = logging.getLogger(__name__)


class ReplicasDown(EngineDown):
    """Every replica of a model died and none can come back."""

    label = "replicas lost"


class ReplicaLoadFailed(EngineDown):
    """A replica could not load its model (the same on every node): the run stops as ``local`` does."""

    label = "could not be loaded"
    exit_code = 2  # EXIT_CONFIG

    def stop_reason(self) -> str:
        return f"{self.model} could not be loaded on node {self.where}: {self.reason}"


class Replica:
    def __init__(self, index: int, actor: Any, record: ReplicaRecord) -> None:
        self.index, self.actor, self.record = index, actor, record
        self.alive = True
        self.in_flight = 0


def _node_of(exc: BaseException, record: ReplicaRecord) -> str:
    """The node a dead replica was on: where it last answered, else what Ray's error names."""
    if record.node:
        return record.node
    found = re.search(r"node[ _]id:?\s*([0-9a-f]{16,})", str(exc), re.IGNORECASE)
    return found.group(1) if found else "unknown (it never answered)"


def split(requests: Sequence[Request], parts: int) -> list[list[Request]]:
    """``requests`` in ``parts`` contiguous shares as even as can be (no empty share)."""
    parts = max(1, min(parts, len(requests)))
    size, extra = divmod(len(requests), parts)
    out, at = [], 0
    for i in range(parts):
        n = size + (i < extra)
        out.append(list(requests[at : at + n]))
        at += n
    return out


class ReplicaSet:
    kind = "device"
    exclusive_device = False  # Ray holds the GPUs for it: no device slot
    linger_s = 0.0
    lazy_load = True  # the actors load the model on their first batch

    def __init__(self, model: Any, path: str, gpus: float, replicas: int, max_restarts: int,
                 placement: Placement) -> None:
        ray = import_ray()
        self.name, self.t0 = model.name, placement.t0
        self.max_batch = int(model.engine.get("chunk_size") or 4096)
        self.concurrency = replicas
        remote = ray.remote(ModelReplica).options(
            num_gpus=gpus, num_cpus=0 if gpus else 1, max_restarts=max_restarts, max_task_retries=-1)
        self.replicas = [Replica(i, remote.remote(model, path), placement.replica(model.name, gpus))
                         for i in range(replicas)]
        log.info("%s: %d replica(s) of %g GPU(s) asked of Ray", self.name, replicas, gpus)

    async def complete(self, requests: Sequence[Request], emit: Emit) -> None:
        live = [r for r in self.replicas if r.alive]
        live.sort(key=lambda r: r.in_flight)
        shares = split(requests, len(live))
        # every share settles before a fault is raised, so what the other replicas answered is emitted (and kept)
        results = await asyncio.gather(*(self._run(share, replica, emit)
                                         for share, replica in zip(shares, live, strict=False)),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _run(self, share: list[Request], replica: Replica, emit: Emit) -> None:
        from ray.exceptions import RayActorError

        while True:
            current = replica
            current.in_flight += 1
            try:
                completions, start, end, info = await replica.actor.run_batch.remote(share)
            except ReplicaLoadError as exc:
                raise ReplicaLoadFailed(self.name, _node_of(exc, replica.record), str(exc).splitlines()[-1]) from exc
            except RayActorError as exc:  # dead, its restarts used up (Ray re-ran the call on each restart)
                replica.alive = False
                reason = str(exc).splitlines()[0]
                replica.record.lost = reason
                others = [r for r in self.replicas if r.alive]
                node = _node_of(exc, replica.record)
                if not others:
                    raise ReplicasDown(self.name, f"node {node}",
                                       f"its last replica died and cannot be restarted ({reason})") from exc
                replica = min(others, key=lambda r: r.in_flight)
                log.warning("%s: replica on node %s lost (%s); its %d requests go to replica %d", self.name, node,
                            reason, len(share), replica.index)
                continue
            finally:
                current.in_flight -= 1
            new_process = info["pid"] not in replica.record.pids
            replica.record.ran(info, start, end, self.t0)
            if new_process:
                log.info("%s: replica %d on node %s, GPUs %s (pid %s%s)", self.name, replica.index, info["node"],
                         info["gpus"], info["pid"], ", restarted" if info.get("restarted") else "")
            for request, c in zip(share, completions, strict=True):  # the driver's own Request objects, in order
                emit(dataclasses.replace(c, request=request))
            return

    def close(self) -> None:
        """Kill the actors: their GPUs go to the models waiting for them."""
        import ray

        for r in self.replicas:
            try:
                ray.kill(r.actor)
            except Exception:  # noqa: BLE001 - already gone
                log.debug("%s: replica %d already gone", self.name, r.index, exc_info=True)
