"""A sweep through ``hydra/launcher=slurm_gpu`` on a real single-node SLURM cluster on this machine.

The fixture needs root: it installs Debian's ``slurmctld slurmd slurm-client munge`` when they are missing, then
runs munged, slurmctld and slurmd from a temp dir (their own key, socket, ports, state and logs; no systemd) and
stops them afterwards. The cells use a served pool on a local fake OpenAI server, so no vLLM runs in a job.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.fake_openai import FakeJudge, body_key

pytestmark = pytest.mark.slow
PACKAGES = ["slurmctld", "slurmd", "slurm-client", "munge"]
COMMANDS = ["munged", "slurmctld", "slurmd", "sinfo", "sbatch", "srun", "scancel"]
PARTITION = "uftest"


@dataclass(frozen=True)
class Cluster:
    conf: Path
    root: Path

    def env(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf), **extra}


def sh(*cmd: str, env: dict[str, str] | None = None, check: bool = True,
       timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
    return proc


def ensure_slurm_installed() -> None:
    """Install the Debian packages when a command is missing; skip (with the reason) when that is impossible."""
    if os.geteuid() != 0:
        pytest.skip("the single-node SLURM cluster needs root (it installs packages and runs the daemons)")
    if all(shutil.which(c) for c in COMMANDS):
        return
    if not shutil.which("apt-get"):
        pytest.skip(f"{', '.join(PACKAGES)} are not installed and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
    proc = sh(*install, env=env, check=False)
    if proc.returncode != 0:  # a stale package index: update once and retry
        sh("apt-get", "update", "-q", env=env, check=False)
        proc = sh(*install, env=env, check=False)
    # The commands count, not apt's exit code: without an init system a package's service start may fail after
    # its files are in place (this test starts its own daemons anyway).
    missing = [c for c in COMMANDS if not shutil.which(c)]
    if missing:
        pytest.skip(f"apt-get could not install {' '.join(PACKAGES)} (missing {', '.join(missing)}): "
                    f"{proc.stderr.strip()[-300:]}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_conf(root: Path) -> Path:
    """DESIGN §10's slurm.conf: this host with its CPUs and half its memory, one partition, paths in ``root``."""
    host = socket.gethostname().split(".")[0]
    mem_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    for sub in ("state", "spool"):
        (root / sub).mkdir()
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=uftest",
        f"SlurmctldHost={host}(127.0.0.1)",
        "SlurmUser=root",
        "SlurmdUser=root",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        f"AuthInfo=socket={root / 'munge.socket'}",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "MpiDefault=none",
        "JobAcctGatherType=jobacct_gather/none",
        "AccountingStorageType=accounting_storage/none",
        "ReturnToService=2",
        "MailProg=/bin/true",
        f"SlurmctldPort={free_port()}",
        f"SlurmdPort={free_port()}",
        f"StateSaveLocation={root / 'state'}",
        f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}",
        f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}",
        f"SlurmdLogFile={root / 'slurmd.log'}",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory={mem_mb // 2} State=UNKNOWN",
        f"PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ]))
    return conf


def stop(pid_file: Path, timeout_s: float = 30) -> None:
    """SIGTERM the daemon this fixture started (by its pid file), then wait for it to exit."""
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return
    try:
        os.kill(pid, 15)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(pid, 9)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    ensure_slurm_installed()
    root = tmp_path_factory.mktemp("slurm")
    root.chmod(0o700)
    key = root / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    conf = write_conf(root)
    cluster = Cluster(conf, root)
    pid_files = [root / "munged.pid", root / "slurmctld.pid", root / "slurmd.pid"]
    try:
        sh("munged", "--force", f"--key-file={key}", f"--socket={root / 'munge.socket'}",
           f"--pid-file={root / 'munged.pid'}", f"--log-file={root / 'munged.log'}",
           f"--seed-file={root / 'munge.seed'}")
        sh("slurmctld", "-f", str(conf), env=cluster.env())
        sh("slurmd", "-f", str(conf), env=cluster.env())
        state = ""
        deadline = time.monotonic() + 120  # generous: the machine is shared; idle usually comes within seconds
        while time.monotonic() < deadline:
            state = sh("sinfo", "-h", "-p", PARTITION, "-o", "%t", env=cluster.env(), check=False).stdout.strip()
            if state == "idle":
                break
            time.sleep(0.5)
        else:
            logs = "\n".join(f"{p.name}: {p.read_text()[-800:]}" for p in root.glob("*.log"))
            raise RuntimeError(f"the node never became idle (sinfo: {state!r})\n{logs}")
        yield cluster
    finally:
        sh("scancel", "-p", PARTITION, env=cluster.env(), check=False)
        for pid_file in reversed(pid_files):
            stop(pid_file)


def test_a_two_cell_sweep_runs_as_two_slurm_jobs(cluster, tmp_path):
    sweep = tmp_path / "sweep"
    marker = tmp_path / "setup-ran"
    with FakeJudge() as server:
        proc = subprocess.run(
            [sys.executable, "-m", "uf_experiments", "-m", "hydra/launcher=slurm_gpu",
             f"hydra.launcher.partition={PARTITION}", "hydra.launcher.gpus_per_node=0",
             "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
             f"hydra.launcher.setup=[\"echo $SLURM_JOB_ID >> {marker}\"]",  # the README's venv-activation hook
             "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "pool.size=2,3", "sampling.n=2", "dataset.limit=4",
             "judge=served", "judge.model.path=judge-x", "aspect=[overall_rating]", "tracking=none",
             f"cache.path={tmp_path / 'shared' / 'requests.sqlite'}", f"hydra.sweep.dir={sweep}"],
            cwd=tmp_path, capture_output=True, text=True, timeout=900,
            env=cluster.env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test"))
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])

    job_ids = marker.read_text().split()
    assert len(job_ids) == 2 and all(j.isdigit() for j in job_ids)  # each cell ran the setup lines in its own job
    assert len(list(sweep.glob(".submitit/*/*_log.out"))) == 2
    cells = sorted(p for p in sweep.iterdir() if p.is_dir() and p.name[0].isdigit())  # not compare/ or .submitit/
    assert [c.name.split("_", 1)[0] for c in cells] == ["0", "1"]
    engine_calls = 0
    for cell, size in zip(cells, (2, 3), strict=False):
        summary = json.loads((cell / "summary.json").read_text())
        rows = pq.read_table(cell / "rated.parquet").to_pylist()
        assert len(rows) == 4 and summary["counts"]["prompts"] == 4 and summary["counts"]["completions"] == 8
        assert {m for r in rows for m in r["generation_models"]} <= set(["gen-a", "gen-b", "gen-c"][:size])
        assert summary["counts"]["judged"] == 4 and summary["counts"]["parse_failures"] == 0
        engine_calls += summary["counts"]["engine_calls"]
    paid = [body_key(b) for b in server.paid]
    assert len(paid) == len(set(paid)) == engine_calls  # the shared cache: no request paid twice across the jobs


def test_sigterm_to_a_running_slurm_job_stops_the_cell_cleanly_and_the_resubmitted_cell_pays_nothing_twice(
        cluster, tmp_path):
    """What SLURM does before preemption: SIGTERM to the job. The cell writes its files and says why, exit 143;
    the same cell submitted again finishes from the shared cache and pays for nothing twice."""
    marker = tmp_path / "job-ids"
    cache = tmp_path / "shared" / "requests.sqlite"

    def command(sweep: Path) -> list[str]:
        return [sys.executable, "-m", "uf_experiments", "-m", "hydra/launcher=slurm_gpu",
                f"hydra.launcher.partition={PARTITION}", "hydra.launcher.gpus_per_node=0",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1", "hydra.launcher.timeout_min=10",
                f"hydra.launcher.setup=[\"echo $SLURM_JOB_ID >> {marker}\"]",
                "pool=served", "pool.models=[gen-a,gen-b,gen-c]", "pool.size=3", "pool.engine.max_in_flight=1",
                "sampling.n=2", "dataset.limit=10", "judge=served", "judge.model.path=judge-x",
                "judge.model.engine.max_in_flight=1", "aspect=[overall_rating]", "tracking=none",
                f"cache.path={cache}", f"hydra.sweep.dir={sweep}"]

    with FakeJudge(latency_s=0.3) as server:
        env = cluster.env(OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="sk-test")
        proc = subprocess.Popen(command(tmp_path / "first"), cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 300
        while len(server.paid) < 6 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None and marker.exists(), "the job ended before it could be signalled"
        job = marker.read_text().split()[0]
        sh("scancel", "--signal=TERM", job, env=cluster.env())
        proc.communicate(timeout=300)
        assert proc.returncode == 143  # the sweep exits with its cell's code (the job itself ended normally)
        first = {body_key(b) for b in server.paid}
        cell = next(p for p in (tmp_path / "first").iterdir() if p.is_dir() and p.name[0].isdigit())
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["stopped"] == "interrupted by SIGTERM" and summary["exit_code"] == 143
        assert (cell / "rated.parquet").exists() and (cell / "preferences.parquet").exists()
        assert summary["counts"]["engine_calls"] == len(first)  # every answer it got, it kept and counted

        n = len(server.paid)
        again = subprocess.run(command(tmp_path / "second"), cwd=tmp_path, env=env, capture_output=True, text=True,
                               timeout=900)
        assert again.returncode == 0, again.stderr[-3000:]
        resumed = {body_key(b) for b in server.paid[n:]}
    assert not first & resumed  # nothing paid twice
    cell = next(p for p in (tmp_path / "second").iterdir() if p.is_dir() and p.name[0].isdigit())
    done = json.loads((cell / "summary.json").read_text())
    assert done["stopped"] is None and done["counts"]["rated_rows"] == 10
    assert done["counts"]["cache_hits"] >= len(first)
