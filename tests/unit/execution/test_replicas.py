"""execution=ray's pieces on a real Ray (started here on 127.0.0.1 with 4 declared GPUs) with a real engine class
that needs no model (tests/helpers/echo_engine.py): requests spread over replicas, a dead replica's share goes to
another, a restarted actor re-runs its batch, a model with no replica left stops the run naming model and node,
and a model that fits on no node is refused before anything starts."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from uf_experiments.config import ConfigError, resolve, typed, validate
from uf_experiments.config.schema import ModelConfig
from uf_experiments.core.records import Completion, Request
from uf_experiments.execution.cluster import RayExecution, num_gpus
from uf_experiments.execution.placement import Placement
from uf_experiments.execution.replicas import ReplicasDown, split

REPO = Path(__file__).resolve().parents[3]
# with the e2e Ray tests: one Ray at a time on the machine (tests/e2e/test_ray.py)
pytestmark = pytest.mark.xdist_group("ray")


def requests(n: int, model: str = "echo") -> list[Request]:
    return [Request(model, ({"role": "user", "content": f"question {i}"},), 8, 1.0, 1.0, i) for i in range(n)]


@pytest.mark.parametrize("n, parts, sizes", [(10, 2, [5, 5]), (5, 2, [3, 2]), (1, 3, [1]), (7, 3, [3, 2, 2]),
                                             (4, 1, [4])])
def test_a_batch_is_split_in_even_contiguous_shares(n, parts, sizes):
    reqs = requests(n)
    shares = split(reqs, parts)
    assert [len(s) for s in shares] == sizes
    assert [r for s in shares for r in s] == reqs


@pytest.mark.parametrize("engine, gpus", [
    ({}, 1.0),
    ({"llm_kwargs": {"tensor_parallel_size": 4}}, 4.0),
    ({"llm_kwargs": {"tensor_parallel_size": 2, "pipeline_parallel_size": 2}}, 4.0),
    ({"num_gpus": 0.15, "llm_kwargs": {"tensor_parallel_size": 1}}, 0.15),
    ({"num_gpus": 2, "llm_kwargs": {"tensor_parallel_size": 4}}, 2.0),
])
def test_gpus_per_replica_default_to_tensor_times_pipeline_parallel(engine, gpus):
    assert num_gpus(engine) == gpus


@pytest.mark.parametrize("override, message", [
    ("pool.models.tiny_b.engine.num_gpus=1.5", "pool.models.tiny_b.engine.num_gpus=1.5 must be a fraction of one GPU"),
    ("pool.models.tiny_b.engine.num_gpus=-1", "pool.models.tiny_b.engine.num_gpus=-1 must be"),
    ("pool.models.tiny_b.engine.replicas=0", "pool.models.tiny_b.engine.replicas=0 must be a whole number >= 1"),
    ("execution.max_restarts=-1", "execution.max_restarts=-1 must be >= 0"),
])
def test_bad_placement_knobs_are_refused_with_the_key(compose, override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        validate(resolve(compose(["execution=ray", "pool=tiny", override])))


def test_joining_a_cluster_does_not_declare_its_gpus(compose):
    cfg = compose(["execution=ray", "execution.address=127.0.0.1:6379", "execution.num_gpus=4"])
    with pytest.raises(ConfigError, match=r"execution\.address=127\.0\.0\.1:6379 joins a running Ray cluster"):
        validate(resolve(cfg))


def test_the_documented_overrides_compose(compose):
    cfg = compose(["experiment=demo", "pool=tiny", "judge=tiny", "execution=ray", "execution.num_gpus=4",
                   "pool.models.tiny_b.engine.num_gpus=2", "pool.models.tiny_b.engine.replicas=2",
                   "execution.address=null"])
    validate(resolve(cfg))
    config = typed(cfg)
    assert config.execution.backend.value == "ray" and config.execution.num_gpus == 4
    assert config.pool.models["tiny_b"].engine["num_gpus"] == 2 and config.pool.models["tiny_b"].engine["replicas"] == 2
    assert typed(compose([])).execution.backend.value == "local"  # the default


def test_an_address_where_no_cluster_answers_is_refused_at_once(compose):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = compose(["execution=ray", f"execution.address=127.0.0.1:{port}", "pool=tiny", "judge=tiny"])
    validate(resolve(cfg))
    with pytest.raises(ConfigError, match=rf"execution\.address=127\.0\.0\.1:{port}: no Ray cluster answers there"):
        RayExecution.start(typed(cfg), time.time())


def test_ray_is_imported_only_for_execution_ray():
    import subprocess
    import sys

    code = ("import sys; import uf_experiments.pipeline.run, uf_experiments.execution; "
            "from uf_experiments.execution import LocalExecution, start_execution; print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# ---------------------------------------------------------------------------------------------------------- real Ray

@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)  # actors import tests.helpers
    ray.init(address="local", num_cpus=2, num_gpus=4, include_dashboard=False, _node_ip_address="127.0.0.1",
             log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()
        os.environ["PYTHONPATH"] = path


def echo_model(delay_s: float = 0.0) -> ModelConfig:
    return ModelConfig(name="echo", path="echo-path",
                       engine={"_target_": "tests.helpers.echo_engine.EchoEngine", "delay_s": delay_s,
                               "num_gpus": 1, "replicas": 2})


def run(engine, reqs, kill_pid: int | None = None, after_s: float = 0.0):
    """Every completion ``engine.complete`` emits; optionally ``kill -9`` a pid ``after_s`` into the call."""
    got: list[Completion] = []

    async def main():
        call = asyncio.ensure_future(engine.complete(reqs, got.append))
        if kill_pid is not None:
            await asyncio.sleep(after_s)
            os.kill(kill_pid, signal.SIGKILL)
        await call

    asyncio.run(main())
    return got


def pid_of(c: Completion) -> int:
    return int(c.text.rsplit("pid=", 1)[1])


def replica_set(replicas: int, max_restarts: int, delay_s: float = 0.0):
    from uf_experiments.execution.replicas import ReplicaSet

    placement = Placement(time.time())
    return ReplicaSet(echo_model(delay_s), "echo-path", 1.0, replicas, max_restarts, placement), placement


@pytest.mark.slow
@pytest.mark.ray
def test_requests_are_spread_over_replicas_each_on_its_own_gpu(ray_local):
    engine, placement = replica_set(2, 0)
    try:
        reqs = requests(10)
        got = run(engine, reqs)
        # each of the driver's own Request objects exactly once (the actors' copies are mapped back)
        assert len(got) == 10 and sorted(id(c.request) for c in got) == sorted(id(r) for r in reqs)
        assert len({pid_of(c) for c in got}) == 2  # both replicas answered
        records = placement.to_dict()["echo"]
        assert len(records) == 2 and all(len(r["busy"]) == 1 and r["num_gpus"] == 1.0 for r in records)
        assert sorted(g for r in records for g in r["gpus"]) == sorted({g for r in records for g in r["gpus"]})
        assert all(len(r["gpus"]) == 1 for r in records) and all(r["node"] for r in records)
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.ray
def test_a_dead_replica_s_share_goes_to_another(ray_local):
    engine, placement = replica_set(2, 0, delay_s=2.0)
    try:
        warm = run(engine, requests(2))
        victim = pid_of(warm[0])
        reqs = requests(8)
        got = run(engine, reqs, kill_pid=victim, after_s=0.5)
        assert sorted(id(c.request) for c in got) == sorted(id(r) for r in reqs)  # every request once
        assert {pid_of(c) for c in got} == {pid_of(warm[1])}  # all answered by the survivor
        lost = [r for r in placement.to_dict()["echo"] if r["lost"]]
        assert len(lost) == 1 and victim in lost[0]["pids"]
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.ray
def test_a_killed_actor_is_restarted_and_its_batch_runs_again(ray_local):
    engine, placement = replica_set(1, 1, delay_s=2.0)
    try:
        victim = pid_of(run(engine, requests(1))[0])
        reqs = requests(4)
        got = run(engine, reqs, kill_pid=victim, after_s=0.5)
        assert sorted(id(c.request) for c in got) == sorted(id(r) for r in reqs)
        assert len({pid_of(c) for c in got}) == 1 and pid_of(got[0]) != victim
        (record,) = placement.to_dict()["echo"]
        assert record["restarted"] is True and record["pids"] == [victim, pid_of(got[0])] and record["lost"] is None
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.ray
def test_no_replica_left_stops_naming_model_and_node(ray_local):
    engine, placement = replica_set(1, 0, delay_s=2.0)
    try:
        victim = pid_of(run(engine, requests(1))[0])
        node = placement.to_dict()["echo"][0]["node"]
        with pytest.raises(ReplicasDown) as info:
            run(engine, requests(3), kill_pid=victim, after_s=0.5)
        assert info.value.exit_code == 3
        reason = info.value.stop_reason()
        assert reason.startswith(f"replicas lost: echo at node {node}: its last replica died")
    finally:
        engine.close()


@pytest.mark.slow
@pytest.mark.ray
def test_a_model_no_node_can_hold_is_refused_before_it_starts(ray_local, compose):
    cfg = compose(["execution=ray", "pool=tiny", "pool.models.tiny_b.engine.num_gpus=8"])
    validate(resolve(cfg))
    execution = RayExecution(typed(cfg), time.time())
    with pytest.raises(ConfigError, match=r"pool\.models\.tiny_b\.engine\.num_gpus=8: no node of the Ray cluster has "
                                          r"that many GPUs \(the largest has 4\)"):
        execution._check_fits(ray_local)
