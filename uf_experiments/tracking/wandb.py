"""Weights & Biases: one run per Hydra job, offline unless logged in, always finished (``start_tracker``); and
one ``compare`` run per ``-m`` sweep (``log_comparison``). ``wandb`` itself is imported when a run starts.

Each job's run carries, besides every ``summary.json`` number, the numbers its sweep is compared on under
``cell/`` (``CELL_X`` and ``cell_metrics``), logged once as history with ``define_metric``: see
``WandbTracker.log_cell_metrics`` for what that gives in W&B and what it cannot.
"""

from __future__ import annotations

import logging
import netrc
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uf_experiments import package_version
from uf_experiments.core import logs
from uf_experiments.core.rundir import dig
from uf_experiments.metrics.cell import summary_metrics
from uf_experiments.tracking.null import NullTracker, tracking_enabled
from uf_experiments.tracking.secrets import scrub

log = logging.getLogger(__name__)


def logged_in() -> bool:
    """True when W&B has an API key (``WANDB_API_KEY`` or ``~/.netrc``): runs go online unless ``mode`` says."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


CELL_X = {"cell/pool_size": ("pool", "size"), "cell/sampling_n": ("sampling", "n")}  # key -> config path


def cell_metrics(summary: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The numbers a sweep's cells are compared on, as ``cell/<name>``: ``CELL_X`` from the config, then the
    columns of ``uf-experiments-compare`` (pairs, tie rate, margin, parse-failure and flip rates, agreement,
    attributed and paid $, $ per pair, pairs per $, $ per 1k judged). Unknown values are left out."""
    out: dict[str, Any] = {key: dig(config, *path) for key, path in CELL_X.items()}
    out.update({f"cell/{k}": v for k, v in summary_metrics(dict(summary)).items()})
    return {k: v for k, v in out.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class WandbTracker:
    """A W&B run whose files live in ``run_dir/wandb``."""

    def __init__(self, cfg: Any, run_dir: Path, config: dict[str, Any], group: str | None, name: str,
                 job_type: str | None = None) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ImportError(f"tracking=wandb needs wandb ({exc}): `pip install wandb`, "
                              "or run with tracking=none") from exc
        self._wandb = wandb
        self._config = config
        mode = cfg.mode or ("online" if logged_in() else "offline")
        os.environ["WANDB_DIR"] = str(run_dir)  # keep every W&B file inside the run dir
        for var, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config")):
            os.environ[var] = str(run_dir / "wandb" / sub)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=group,
            job_type=job_type or config.get("experiment"),
            name=name,
            mode=mode,
            dir=str(run_dir),
            config=scrub({**config, "version": package_version()}),  # which uf-experiments made this run
            reinit="finish_previous",
            # a quiet console (log_level=info): no history/summary block at finish; where the run is saved is said
            settings=wandb.Settings(quiet=logs.quiet()),
        )
        log.info("W&B run %s (%s) in %s", self.run.id, mode, run_dir / "wandb")

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({name: self._wandb.Table(columns=columns, data=rows)})

    def log_summary(self, summary: dict[str, Any]) -> None:
        """Every number of ``summary`` in ``run.summary`` (nested keys joined by ``/``), then
        ``log_cell_metrics``."""
        for key, value in _flatten(summary).items():
            self.run.summary[key] = value
        self.log_cell_metrics(summary)

    def log_cell_metrics(self, summary: dict[str, Any]) -> None:
        """``cell_metrics`` declared with ``define_metric`` and logged once as history.

        What ``define_metric`` can do here (wandb 0.31, checked by reading the run file back):
        - it shapes only metrics logged with ``run.log``; a value set straight into ``run.summary`` is left as it
          is. So the cell's numbers are logged as one history step under short ``cell/`` names, and their summary
          values (W&B's runs-table columns, and what parallel-coordinates axes offer) are those numbers;
        - ``step_metric="cell/pool_size"``: the workspace's automatic chart of each ``cell/`` metric has the pool
          size on its x axis, one point per cell, so a sweep's runs side by side read as the metric against
          pool.size; ``cell/pool_size`` and ``cell/sampling_n`` are ``hidden`` (no chart of the axis itself);
        - no ``summary=`` aggregation: with one step it adds nothing, and an explicit one (even ``"last"``) stores
          the value nested (``{"last": v}``, a ``cell/pairs.last`` column) instead of as the flat number.
        What it cannot do: no SDK call pins columns in the runs table or adds a parallel-coordinates panel; those
        are picked once in the W&B UI (the ``cell/`` columns, next to the config's ``pool.size``/``sampling.n``).
        """
        values = cell_metrics(summary, self._config)
        x = "cell/pool_size" if "cell/pool_size" in values else None
        for key in values:
            if key in CELL_X:
                self.run.define_metric(key, hidden=True)
            else:
                self.run.define_metric(key, step_metric=x)
        if values:
            self.run.log(values)

    def log_images(self, images: Mapping[str, Path]) -> None:
        """Image files (PNG plots) as ``wandb.Image`` under their keys, in one step."""
        self.run.log({key: self._wandb.Image(str(path), caption=Path(path).name) for key, path in images.items()})

    def log_files(self, paths: list[Path]) -> None:
        """The run-dir files as one artifact, ``run-files-<run id>`` (directories, e.g. the HF dataset, whole)."""
        artifact = self._wandb.Artifact(name=f"run-files-{self.run.id}", type="run-files")
        for path in paths:
            if path.is_dir():
                artifact.add_dir(str(path), name=path.name)
            elif path.exists():
                artifact.add_file(str(path), name=path.name)
        self.run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[key] = v
    return out


def start_tracker(cfg: Any, run_dir: Path, config: dict[str, Any], group: str | None, name: str,
                  job_type: str | None = None) -> WandbTracker | NullTracker:
    """The job's tracker: a ``WandbTracker`` unless ``tracking=none`` (then a ``NullTracker``)."""
    if not tracking_enabled(cfg):
        return NullTracker()
    return WandbTracker(cfg, run_dir, config, group, name, job_type)


def log_comparison(cfg: Any, out: Path, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                   images: Mapping[str, Path], totals: Mapping[str, Any], group: str | None,
                   config: dict[str, Any]) -> Any:
    """One W&B run for a compared sweep, in the sweep's ``group`` with job_type ``compare``, its files in
    ``out/wandb``: the compare table (``wandb.Table`` ``compare`` of ``columns`` and ``rows``, typed values), the
    PNG plots (``images``: W&B key -> file), and the grid's totals in the summary (``grid/<key>``). The values
    come computed (``report.sweep`` builds them). Returns the finished run (None with ``tracking=none``)."""
    if not tracking_enabled(cfg):
        return None
    tracker = WandbTracker(cfg, out, config, group, "compare", job_type="compare")
    exit_code = 1
    try:
        tracker.log_table("compare", list(columns), [list(r) for r in rows])
        tracker.log_images(images)
        for key, value in _flatten({"grid": dict(totals)}).items():
            tracker.run.summary[key] = value
        exit_code = 0
    finally:
        tracker.finish(exit_code)
    return tracker.run
