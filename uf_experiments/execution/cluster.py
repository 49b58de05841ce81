"""``execution=ray``: Ray started for the run (on 127.0.0.1 unless told otherwise) or joined (``execution.address``),
each vLLM model's engine a :class:`~uf_experiments.execution.replicas.ReplicaSet` of actors, API engines in this
process; :mod:`.placement` records where every replica ran and when it was busy (``summary.json`` ``placement``)."""

from __future__ import annotations

import logging
import os
import socket
from typing import Any

from uf_experiments.config.schema import ConfigError, RunConfig, enum_value
from uf_experiments.engines.build import DEVICE, build_engine, engine_kind
from uf_experiments.execution.placement import Placement, import_ray
from uf_experiments.execution.replicas import ReplicaSet

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def num_gpus(engine_cfg: Any) -> float:
    """GPUs one replica holds: ``engine.num_gpus``, else tensor_parallel_size x pipeline_parallel_size."""
    given = engine_cfg.get("num_gpus")
    if given is not None:
        return float(given)
    kwargs = engine_cfg.get("llm_kwargs") or {}
    return float(int(kwargs.get("tensor_parallel_size") or 1) * int(kwargs.get("pipeline_parallel_size") or 1))


def replicas(engine_cfg: Any) -> int:
    return int(engine_cfg.get("replicas") or 1)


def _probe(address: str) -> None:
    """A ``HOST:PORT`` address answers on TCP (else Ray would retry for minutes): ConfigError naming the fix."""
    if address == "auto" or ":" not in address or address.startswith(("ray://", "http")):
        return
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except (OSError, ValueError) as exc:
        raise ConfigError(f"execution.address={address}: no Ray cluster answers there ({exc}); start one with "
                          "`ray start --head` and pass its GCS address, execution.address=auto on its head node, "
                          "or drop execution.address to start Ray for the run") from exc


def _node_ip(config: RunConfig) -> str | None:
    """The driver's address: given, or loopback for a Ray this run starts or a cluster on loopback."""
    execution = config.execution
    if execution.node_ip_address:
        return execution.node_ip_address
    address = execution.address
    if address is None:
        return "127.0.0.1"
    host = address.rsplit(":", 1)[0].strip("[]") if ":" in address else address
    return "127.0.0.1" if host in LOOPBACK else None


class RayExecution:
    """``execution=ray``: vLLM models in Ray actors, everything else as on ``local``."""

    def __init__(self, config: RunConfig, t0_wall: float) -> None:
        self.config = config
        self.max_restarts = int(config.execution.max_restarts)
        self.record = Placement(t0_wall)

    @classmethod
    def start(cls, config: RunConfig, t0_wall: float) -> RayExecution:
        """Start Ray for the run (``execution.address=null``) or join the cluster at ``execution.address``, then
        check that every vLLM model fits on some node (Ray would wait forever for GPUs no node has)."""
        # Before Ray is imported: a loopback address stays loopback (else Ray swaps 127.0.0.1 for this machine's
        # interface address, where a cluster on 127.0.0.1 does not answer).
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        ray = import_ray()
        execution = config.execution
        kwargs: dict[str, Any] = {"include_dashboard": False,
                                  "log_to_driver": enum_value(config.log_level) == "debug",
                                  "_node_ip_address": _node_ip(config)}
        if execution.address is None:
            # "local": a new Ray for this run, never a stale one named by /tmp/ray/ray_current_cluster
            kwargs.update(address="local", num_gpus=execution.num_gpus, num_cpus=execution.num_cpus)
        else:
            _probe(execution.address)
            kwargs["address"] = execution.address
        try:
            ray.init(**kwargs)
        except ConnectionError as exc:
            raise ConfigError(f"execution.address={execution.address}: no Ray cluster answers there ({exc}); start "
                              "one with `ray start --head`, or drop execution.address") from exc
        self = cls(config, t0_wall)
        try:
            self._check_fits(ray)
        except BaseException:
            ray.shutdown()
            raise
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        log.info("Ray %s: %d node(s), %g GPUs, %g CPUs", "started on " + str(kwargs["_node_ip_address"])
                 if execution.address is None else "joined at " + execution.address, len(nodes),
                 sum(n["Resources"].get("GPU", 0) for n in nodes), sum(n["Resources"].get("CPU", 0) for n in nodes))
        return self

    def _check_fits(self, ray: Any) -> None:
        largest = max((n["Resources"].get("GPU", 0.0) for n in ray.nodes() if n.get("Alive")), default=0.0)
        config = self.config
        pool = list(config.pool.models.items())[: config.pool.size or None]
        models = [(f"pool.models.{k}", m) for k, m in pool] + [("judge.model", config.judge.model)]
        for where, model in models:
            if engine_kind(model.engine) != DEVICE:
                continue
            gpus = num_gpus(model.engine)
            if gpus > largest:
                fix = ("declare GPUs with execution.num_gpus=N (CPU machines too)" if largest == 0
                       else f"lower {where}.engine.num_gpus, or add a node with {gpus:g} GPUs")
                raise ConfigError(f"{where}.engine.num_gpus={gpus:g}: no node of the Ray cluster has that many "
                                  f"GPUs (the largest has {largest:g}): {fix}")

    def exclusive(self, model: Any) -> bool:
        return False  # Ray's scheduler decides who holds which GPU: the device slot is not used

    def build(self, model: Any, path: str) -> Any:
        if engine_kind(model.engine) != DEVICE:
            return build_engine(model, path)
        return ReplicaSet(model, path, num_gpus(model.engine), replicas(model.engine), self.max_restarts,
                          self.record)

    def gpus(self, model: Any) -> float:
        return num_gpus(model.engine) if engine_kind(model.engine) == DEVICE else 1.0

    def placement(self) -> dict[str, Any] | None:
        return self.record.to_dict()

    def close(self) -> None:
        import ray

        if ray.is_initialized():
            ray.shutdown()  # a Ray this run started stops; a joined cluster keeps running
