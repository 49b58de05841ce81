"""The sweep in W&B, read back from the offline ``.wandb`` files: each cell's ``cell/`` numbers declared with
``define_metric``, and the ``compare`` run (table, plots, grid totals) that ends a ``-m`` sweep."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf

from tests.helpers.fake_openai import FakeJudge
from tests.helpers.wandb_reader import read_run
from tests.unit.report.test_compare import AGREEMENT, rows_of, summary, sweep  # noqa: F401 - `sweep` is a fixture
from uf_experiments.metrics import cell as metrics_cell
from uf_experiments.report import plots
from uf_experiments.report import sweep as report_sweep
from uf_experiments.report import table as report_table
from uf_experiments.tracking.null import tracking_enabled
from uf_experiments.tracking.wandb import WandbTracker, cell_metrics

REPO = Path(__file__).resolve().parents[2]
TRACKING = OmegaConf.create({"backend": "wandb", "project": "uf-test", "entity": None, "mode": "offline",
                             "group": None})


def only_run(wandb_dir: Path) -> dict[str, Any]:
    """The one offline run under ``wandb_dir``, read back. In this process ``run.finish()`` (wandb 0.31) can
    return before the ``.wandb`` file is flushed (seen: only its 7-byte header); ``wandb.teardown()`` stops the
    W&B service, which writes everything out."""
    import wandb

    wandb.teardown()
    runs = list(wandb_dir.glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1, runs
    return read_run(runs[0]) | {"dir": runs[0].parent}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


CELL_SUMMARY = summary(4, 0.0, 2.25, 0.0, 0.006, 0.0015, {"honesty": 0.2, "helpfulness": 0.4}, paid=0.001,
                       judge_usd=0.003, judged=6, agreement=AGREEMENT)
CELL_CONFIG = {"experiment": "demo", "pool": {"size": 4, "name": "tiny"}, "sampling": {"n": 2}}
CELL_VALUES = {"cell/pool_size": 4, "cell/sampling_n": 2, "cell/pairs": 4, "cell/tie_rate": 0.0,
               "cell/mean_margin": 2.25, "cell/parse_failure_rate": 0.0, "cell/flip_rate": 0.3,
               "cell/agree_honesty_kappa": 0.5, "cell/agree_honesty_exact": 0.25, "cell/agree_honesty_pairwise": 0.75,
               "cell/usd_total": 0.006, "cell/usd_paid": 0.001, "cell/usd_per_pair": 0.0015,
               "cell/pairs_per_usd": 666.6667, "cell/usd_per_1k_judged": 0.5}


def test_cell_metrics_are_the_compare_columns():
    assert cell_metrics(CELL_SUMMARY, CELL_CONFIG) == CELL_VALUES
    # unknown values are left out (no pairs: no $ per pair; no swap: no flip rate)
    got = cell_metrics(summary(0, None, None, 0.0, 0.004, None), {"pool": {"size": 2}})
    assert got == {"cell/pool_size": 2, "cell/pairs": 0, "cell/parse_failure_rate": 0.0, "cell/usd_total": 0.004,
                   "cell/usd_paid": 0.004, "cell/pairs_per_usd": 0.0}


def test_a_cell_run_declares_its_numbers_with_define_metric(tmp_path: Path):
    tracker = WandbTracker(TRACKING, tmp_path, CELL_CONFIG, "grp", "pool.size=4,sampling.n=2")
    try:
        tracker.log_summary(CELL_SUMMARY)
    finally:
        tracker.finish()
    run = only_run(tmp_path / "wandb")
    assert run["metrics"] == {
        "cell/pool_size": {"step_metric": None, "summary": [], "hidden": True},
        "cell/sampling_n": {"step_metric": None, "summary": [], "hidden": True},
        **{k: {"step_metric": "cell/pool_size", "summary": [], "hidden": False}
           for k in CELL_VALUES if k not in ("cell/pool_size", "cell/sampling_n")},
    }
    (step,) = [h for h in run["history"] if "cell/pairs" in h]  # logged once, all in one step
    assert {k: v for k, v in step.items() if k.startswith("cell/")} == CELL_VALUES
    # the summary holds each number flat (a runs-table column), beside every summary.json number
    assert {k: v for k, v in run["summary"].items() if k.startswith("cell/")} == CELL_VALUES
    assert run["summary"]["cost_usd/paid"] == 0.001 and run["summary"]["counts/pairs"] == 4
    assert run["config"]["pool"]["size"] == 4 and run["config"]["sampling"]["n"] == 2


def test_the_compare_run_has_the_table_the_plots_and_the_totals(sweep: Path):  # noqa: F811
    result, run_obj = report_sweep.sweep_end(sweep, TRACKING, "my-sweep")
    assert result.out == sweep / "compare"
    run = only_run(sweep / "compare" / "wandb")  # every file inside the sweep dir
    assert run_obj.id in run["dir"].name
    assert (run["group"], run["job_type"], run["name"]) == ("my-sweep", "compare", "compare")
    assert run["config"]["grid"] == {"pool.size": ["2", "3", "4", "10"], "sampling.n": ["1", "2", "5"],
                                     "judge.swap": ["true"]}
    assert run["config"]["cells"] == 5 and run["config"]["sweep_dir"] == str(sweep)

    header, records = report_table.table(rows_of(sweep))
    (table_step,) = [h for h in run["history"] if h.get("compare/_type") == "table-file"]
    table = json.loads((run["dir"] / "files" / table_step["compare/path"]).read_text())
    assert table["columns"] == header and table["data"] == records  # typed values, the skipped cell included
    assert [r[header.index("status")].split(":")[0] for r in table["data"]] == [
        "done", "done", "stopped", "skipped", "done"]

    (image_step,) = [h for h in run["history"] if "plots/usd_per_pair/_type" in h]
    for name in plots.PLOTS:
        key = f"plots/{Path(name).stem}"
        assert image_step[f"{key}/_type"] == "image-file" and image_step[f"{key}/format"] == "png"
        stored = run["dir"] / "files" / image_step[f"{key}/path"]
        assert sha256(stored) == sha256(sweep / "compare" / name) == image_step[f"{key}/sha256"]

    totals = {k.removeprefix("grid/"): v for k, v in run["summary"].items() if k.startswith("grid/")}
    assert totals == result.totals == json.loads((sweep / "compare" / "totals.json").read_text())
    assert (totals["cells"], totals["skipped"], totals["stopped"], totals["usd_total"], totals["usd_paid"]) == (
        5, 1, 1, 0.016, 0.007)


def test_no_compare_run_without_tracking_and_nothing_for_a_plan_sweep(sweep: Path, tmp_path: Path):  # noqa: F811
    result, run = report_sweep.sweep_end(sweep, None)
    assert run is None and not (sweep / "compare" / "wandb").exists()
    assert (sweep / "compare" / "compare.csv").is_file() and len(result.rows) == 5
    planned = tmp_path / "planned"
    (planned / "0_pool.size=2").mkdir(parents=True)
    (planned / "0_pool.size=2" / "plan.json").write_text("{}")
    assert report_sweep.sweep_end(planned, TRACKING) is None and not (planned / "compare").exists()
    assert not tracking_enabled(OmegaConf.create({"backend": "none"}))


# ----------------------------------------------------------------------------------------- a real `-m` sweep


def sweep_cli(server: FakeJudge, sweep_dir: Path, cache: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test", "WANDB_MODE": "offline"}
    env.pop("WANDB_API_KEY", None)
    cmd = [sys.executable, "-m", "uf_experiments", "-m", "pool=served", "pool.models=[gen-a,gen-b,gen-c]",
           "pool.size=2,3", "sampling.n=2", "pool.price.input_per_1m=100", "pool.price.output_per_1m=200",
           "judge=served", "judge.model.path=judge-x", "judge.output=json", "judge.model.price.input_per_1m=300",
           "aspect=[honesty]", "dataset.limit=4", f"cache.path={cache}", f"hydra.sweep.dir={sweep_dir}", *extra]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_a_sweep_ends_with_its_comparison_in_w_and_b(tmp_path: Path):
    cache = tmp_path / "cache.sqlite"
    with FakeJudge() as server:
        proc = sweep_cli(server, tmp_path / "sweep", cache)
        quiet = sweep_cli(server, tmp_path / "quiet", cache, "tracking=none")
        plan = sweep_cli(server, tmp_path / "plan", cache, "plan=true")
    sweep_dir = tmp_path / "sweep"
    cells = sorted(p for p in sweep_dir.iterdir() if p.is_dir() and p.name != "compare")
    assert [c.name.split("_")[0] for c in cells] == ["0", "1"]
    written = sorted(p.name for p in (sweep_dir / "compare").iterdir())
    assert written == sorted(["compare.csv", "compare.md", "totals.json", "wandb", *plots.PLOTS])
    assert "compare: 2 runs: " in proc.stdout and f"-> {sweep_dir / 'compare'}/" in proc.stdout

    run = only_run(sweep_dir / "compare" / "wandb")
    assert (run["group"], run["job_type"]) == ("sweep", "compare")  # the cells' group: the sweep dir's name
    table_step = next(h for h in run["history"] if h.get("compare/_type") == "table-file")
    table = json.loads((run["dir"] / "files" / table_step["compare/path"]).read_text())
    header = table["columns"]
    assert [r[header.index("pool.size")] for r in table["data"]] == ["2", "3"]
    for cell, row in zip(cells, table["data"], strict=False):
        cell_run = only_run(cell / "wandb")
        assert cell_run["group"] == "sweep"
        assert cell_run["summary"]["cell/pool_size"] == int(row[header.index("pool.size")])
        assert cell_run["summary"]["cell/pairs"] == row[header.index("pairs")]
        assert cell_run["metrics"]["cell/pairs"]["step_metric"] == "cell/pool_size"
        assert row[header.index("usd_paid")] == metrics_cell.costs(json.loads((cell / "summary.json").read_text())).paid
    assert table["data"][0][header.index("usd_paid")] > 0  # the first cell, on an empty cache, paid
    assert run["summary"]["grid/runs"] == 2 and run["summary"]["grid/pairs"] == sum(
        r[header.index("pairs")] for r in table["data"])

    assert (tmp_path / "quiet" / "compare" / "compare.csv").is_file()  # tracking=none: the files, no W&B run
    assert not (tmp_path / "quiet" / "compare" / "wandb").exists() and "compare: 2 runs" in quiet.stdout
    assert not (tmp_path / "plan" / "compare").exists() and "compare:" not in plan.stdout  # plan=true: nothing
    assert "plan: sweep total over 2 jobs" in plan.stdout
