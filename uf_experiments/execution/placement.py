"""Where each replica of each model ran and when it was busy (``summary.json`` ``placement``), and Ray's import."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

INSTALL_HINT = 'execution=ray needs Ray: pip install "uf-experiments[ray]" (or "ray>=2.60")'


def import_ray() -> Any:
    try:
        import ray
    except ImportError as exc:  # validate() says so before the run; this is for scripts
        raise ImportError(INSTALL_HINT) from exc
    return ray


@dataclass
class ReplicaRecord:
    """Where one replica ran and when it was busy (seconds from the run's start)."""

    num_gpus: float
    node: str | None = None
    gpus: list[Any] = field(default_factory=list)
    cuda_visible_devices: str | None = None  # what the actor's process saw (Ray sets it from ``gpus``)
    busy: list[list[float]] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)  # each process (incarnation) of the actor that answered a batch
    restarted: bool = False  # Ray restarted the actor (it died: OOM, preemption, kill -9) and it ran again
    lost: str | None = None  # why the replica was given up (its restarts used up)

    def ran(self, info: dict[str, Any], start: float, end: float, t0: float) -> None:
        self.node, self.gpus = info["node"], list(info["gpus"])
        self.cuda_visible_devices = info.get("cuda_visible_devices")
        self.restarted = self.restarted or bool(info.get("restarted"))
        if info["pid"] not in self.pids:
            self.pids.append(info["pid"])
        self.busy.append([round(start - t0, 3), round(end - t0, 3)])

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "gpus": self.gpus, "num_gpus": self.num_gpus,
                "cuda_visible_devices": self.cuda_visible_devices, "busy": self.busy,
                "pids": self.pids, "restarted": self.restarted, "lost": self.lost}


class Placement:
    """``summary.json`` ``placement``: model name -> its replicas' records."""

    def __init__(self, t0_wall: float) -> None:
        self.t0 = t0_wall
        self.models: dict[str, list[ReplicaRecord]] = {}

    def replica(self, model: str, gpus: float) -> ReplicaRecord:
        record = ReplicaRecord(gpus)
        self.models.setdefault(model, []).append(record)
        return record

    def to_dict(self) -> dict[str, Any]:
        return {name: [r.to_dict() for r in records] for name, records in self.models.items()}
