"""execution=ray on a two-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, both nodes on
127.0.0.1 with one declared GPU each), joined with ``execution.address=127.0.0.1:PORT``: a model's two replicas land
on both nodes and share its requests, and one killed with ``kill -9`` mid-batch is restarted with nothing lost or
counted twice; API engines (a judge served on 127.0.0.1) stay in the run's process. Then a model whose only actor
dies with no restart left stops the run with exit 3, its files written and ``stopped`` naming model and node, and
the same command resumes it. The replicas run a model-free engine (tests/helpers/echo_engine.py) so that restarts
are cheap; tests/e2e/test_ray.py runs real vLLM models in actors."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.e2e.test_ray import cli, run_and_kill
from tests.helpers.fake_openai import FakeJudge

# one xdist group for every file that starts a Ray: two Rays with vLLM actors at once thrash two cores
pytestmark = [pytest.mark.slow, pytest.mark.vllm, pytest.mark.ray, pytest.mark.xdist_group("ray")]
REPO = Path(__file__).resolve().parents[2]
TOKEN = f"ray-cluster-{os.getpid()}"
SERVED_JUDGE = ["judge=served", "judge.model.path=judge-x", "pool.size=1", "sampling.n=1", "dataset.limit=4",
                "seed=7", "tracking=none"]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    saved = dict(os.environ)
    # the nodes' workers (the actors) inherit this environment: our marker, and the repo for tests.helpers
    path = os.pathsep.join(p for p in (str(REPO), saved.get("PYTHONPATH")) if p)
    os.environ.update(UF_RAY_TEST=TOKEN, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", PYTHONPATH=path)
    node = {"num_cpus": 1, "num_gpus": 1, "node_ip_address": "127.0.0.1", "object_store_memory": 100 * 2**20}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    c.add_node(**node)
    c.wait_for_nodes()
    try:
        yield c
    finally:
        c.shutdown()
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def judge():
    with FakeJudge() as server:
        yield {"OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


ECHO = ["pool.models.tiny_a.engine._target_=tests.helpers.echo_engine.EchoEngine"]  # a model-free engine


def test_replicas_land_on_both_nodes_and_share_the_requests(cluster, judge, tmp_path):
    """tiny_a's two replicas (an engine that answers after 3 s without a model, tests/helpers/echo_engine.py: Ray's
    placement is the subject here; tests/e2e/test_ray.py runs real vLLM models in actors); the first one seen
    running a batch is killed with ``kill -9`` and restarted by Ray, which re-runs its batch."""
    args = ["experiment=demo", "pool=tiny", *SERVED_JUDGE, "execution=ray", f"execution.address={cluster.address}",
            "pool.models.tiny_a.engine.replicas=2", *ECHO, "+pool.models.tiny_a.engine.delay_s=3"]
    proc = cli(args, tmp_path / "run", env=judge)
    out, killed, _ = run_and_kill(proc, TOKEN)
    assert killed is not None and proc.returncode == 0, out[-3000:]
    s = summary(tmp_path / "run")
    assert s["stopped"] is None and s["counts"]["rated_rows"] == 4
    (replicas,) = [s["placement"][m] for m in s["placement"]]  # only tiny_a: the served judge is no actor
    assert list(s["placement"]) == ["tiny_a"] and len(replicas) == 2
    assert len({r["node"] for r in replicas}) == 2  # two node ids: one replica on each node
    assert all(len(r["busy"]) >= 1 for r in replicas)  # both replicas ran a share of the requests
    assert sum(r["restarted"] for r in replicas) == 1  # the killed one came back
    assert all(killed not in r["pids"] for r in replicas)
    assert s["generation"]["engine_calls"] == s["generation"]["requests"] == 4  # the re-run share counted once
    with sqlite3.connect(f"{tmp_path / 'run'}.sqlite") as db:
        assert db.execute("SELECT COUNT(*) FROM completions WHERE model = 'tiny_a'").fetchone() == (4,)  # once each
    rows = pq.read_table(tmp_path / "run" / "rated.parquet").to_pylist()
    texts = [g for r in rows for g in r["generations"]]
    assert len(texts) == 4 and all(t.startswith("echo ") for t in texts)
    pids = {int(t.rsplit("pid=", 1)[1]) for t in texts}  # the process that answered each request
    assert killed not in pids and len(pids) == 2  # the killed actor's share was answered by its restart


def test_no_replica_left_stops_with_exit_3_and_the_same_command_resumes(cluster, judge, tmp_path):
    args = ["experiment=demo", "pool=tiny", *SERVED_JUDGE, "execution=ray", f"execution.address={cluster.address}",
            "execution.max_restarts=0", *ECHO, "+pool.models.tiny_a.engine.delay_s=3"]
    proc = cli(args, tmp_path / "run", env=judge)
    out, killed, _ = run_and_kill(proc, TOKEN)
    assert killed is not None
    assert proc.returncode == 3, out[-3000:]
    s = summary(tmp_path / "run")
    assert s["exit_code"] == 3
    assert s["stopped"].startswith("replicas lost: tiny_a at node "), s["stopped"]
    node = s["stopped"].split("at node ", 1)[1].split(":", 1)[0]
    assert node in {r["node"] for r in s["placement"]["tiny_a"]} | {"unknown (it never answered)"}
    assert (tmp_path / "run" / "rated.parquet").exists()  # files written with what it had
    assert s["counts"]["not_sent"] == 4 and s["generation"]["engine_calls"] == 0  # nothing counted as paid
    again = cli(args, tmp_path / "again", env=judge)
    out, _ = again.communicate(timeout=900)
    assert again.returncode == 0, out[-3000:]
    s = summary(tmp_path / "again")
    assert s["stopped"] is None and s["counts"]["rated_rows"] == 4
    rows = pq.read_table(tmp_path / "again" / "rated.parquet").to_pylist()
    assert [len(r["generations"]) for r in rows] == [1, 1, 1, 1]
