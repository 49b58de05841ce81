"""What every benchmark shares: the trees it compares, running our CLI as a subprocess, prompt files, tables.

A benchmark always measures the checkout it lives in ("current") and, with ``--ref REV`` or ``--ref-src DIR``, a
reference checkout ("ref") with the identical workload in the same invocation. ``--ref REV`` exports that
revision with ``git archive`` into ``outputs/bench/ref-<sha>/`` (a plain directory, reused by later invocations;
no ``git worktree`` is created, so nothing needs cleaning up). A tree runs with ``PYTHONPATH=<tree>:<this
checkout>`` and ``cwd=<tree>``: the CLI imports that tree's package and finds its Hydra ``conf/`` next to it,
while ``benchmarks.fake_engine`` still comes from this checkout (an old tree has no ``benchmarks/``).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent.parent  # the checkout these benchmarks live in ("current")


@dataclass(frozen=True)
class Tree:
    label: str  # "current" or "ref"
    root: Path
    rev: str  # a commit (or "dirty"/"unknown") for the record

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        paths = [str(self.root)] + ([str(HERE)] if self.root != HERE else [])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "PYTHONUNBUFFERED": "1",
               "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
               "WANDB_MODE": "disabled", "TQDM_MININTERVAL": "1"}
        env.update(extra or {})
        return env


def git(*args: str, cwd: Path = HERE) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def describe(root: Path) -> str:
    """The commit of a checkout (``+dirty`` with uncommitted changes to tracked files), for the record."""
    marker = root / ".bench-rev"  # an export made by export_rev (it sits inside this repo's outputs/)
    if marker.exists():
        return marker.read_text().strip()
    try:
        if Path(git("rev-parse", "--show-toplevel", cwd=root)).resolve() != root.resolve():
            return "unknown"
        rev = git("rev-parse", "--short", "HEAD", cwd=root)
        dirty = git("status", "--porcelain", "--untracked-files=no", cwd=root)
        return rev + ("+dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def export_rev(rev: str) -> Path:
    """``rev`` of this repository as a plain directory under outputs/bench/ (created once, then reused)."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    dest = HERE / "outputs" / "bench" / f"ref-{sha[:12]}"
    if not (dest / ".bench-rev").exists():
        dest.mkdir(parents=True, exist_ok=True)
        blob = subprocess.run(["git", "archive", "--format=tar", sha], cwd=HERE, check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
            tar.extractall(dest)
        (dest / ".bench-rev").write_text(sha[:12] + "\n")
    return dest


def add_tree_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ref", help="a git revision to measure side by side (e.g. bac9a1c, the pre-streaming core)")
    parser.add_argument("--ref-src", type=Path, help="or: a directory holding the reference checkout")
    parser.add_argument("--only", choices=["current", "ref"], help="measure only one of the two trees")
    parser.add_argument("--out", type=Path, help="where run dirs, logs and results.json go "
                        "(default: outputs/bench/<benchmark>/<time>)")


def trees(args: argparse.Namespace) -> list[Tree]:
    out = []
    if args.only != "ref":
        out.append(Tree("current", HERE, describe(HERE)))
    if args.ref or args.ref_src:
        root = args.ref_src.resolve() if args.ref_src else export_rev(args.ref)
        if not (root / "uf_experiments").is_dir() or not (root / "conf").is_dir():
            sys.exit(f"error: {root} is not a checkout of uf-experiments (no uf_experiments/ and conf/)")
        if args.only != "current":
            out.append(Tree("ref", root, describe(root)))
    if not out:
        sys.exit("error: --only ref needs --ref REV or --ref-src DIR")
    return out


def out_dir(args: argparse.Namespace, name: str) -> Path:
    out = args.out or HERE / "outputs" / "bench" / name / time.strftime("%Y-%m-%d_%H-%M-%S")
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


# ---------------------------------------------------------------- prompts


def write_prompts(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` distinct deterministic instructions (~100-200 characters) as jsonl (instruction, source, prompt_id)."""
    if path.exists() and sum(1 for _ in path.open()) == n:
        return path
    topics = ["rivers", "prime numbers", "sourdough", "the French revolution", "compilers", "tides", "chess openings",
              "photosynthesis", "jazz harmony", "glaciers", "public key cryptography", "bees", "volcanoes", "tax law"]
    asks = ["Explain {t} to a curious twelve-year-old in three short paragraphs.",
            "Write a limerick about {t}, then explain the joke.",
            "List five common misconceptions about {t} and correct each one briefly.",
            "Summarise the history of {t} in under one hundred words.",
            "Compare {t} with something from everyday life and say where the comparison breaks down."]
    sources = ["ultrachat", "sharegpt", "evol_instruct", "truthful_qa", "false_qa", "flan"]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for i in range(n):
            h = int(hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(), 16)
            text = asks[h % len(asks)].format(t=topics[(h >> 8) % len(topics)]) + f" (case {i})"
            row = {"prompt_id": f"p{i:06d}", "source": sources[i % len(sources)], "instruction": text}
            f.write(json.dumps(row) + "\n")
    return path


# ---------------------------------------------------------------- running


@dataclass
class Proc:
    returncode: int
    wall_s: float
    cpu_s: float  # user + system CPU time of the process (robust when other work shares the cores)
    maxrss_mib: float  # peak resident set of the process (and the children it waited for)
    log: Path
    loadavg: float  # the 1-minute load average when it ended (how busy the machine was)


def run_measured(cmd: Sequence[str], cwd: Path, env: dict[str, str], log: Path, timeout_s: float | None = None) -> Proc:
    """Run ``cmd`` to completion; its wall time, CPU time and peak RSS (``wait4``'s rusage of that one child)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(list(cmd), cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        deadline = None if timeout_s is None else t0 + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.05)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return Proc(proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, log,
                os.getloadavg()[0])


def uf_cli(tree: Tree, overrides: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "uf_experiments", *overrides]


def read_summary(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "summary.json"
    if not path.exists():
        raise RuntimeError(f"no summary.json in {run_dir}: the run failed, see its log")
    return json.loads(path.read_text())


def stage_wall(summary: dict[str, Any]) -> float:
    """The run's own wall time (load through writing files): ``wall_time_s.total``, else the sum of the stages."""
    wall = summary.get("wall_time_s") or {}
    if "total" in wall:
        return float(wall["total"])
    return float(sum(v for v in wall.values() if isinstance(v, (int, float))))


def total_requests(summary: dict[str, Any]) -> int:
    return int(summary["generation"]["requests"]) + int(summary["judge"]["requests"])


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ---------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) // 1024 // 1024
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "loadavg": os.getloadavg(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "python": sys.version.split()[0]}


def fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return "-"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def table(title: str, rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(header)]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False)))  # noqa: E731
    out = [title, line(header), line(["-" * w for w in widths]), *(line(r) for r in cells)]
    return "\n".join(out)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def save(out: Path, name: str, payload: dict[str, Any]) -> Path:
    path = out / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2, default=str))
    return path
