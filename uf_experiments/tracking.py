"""Weights & Biases: one run per Hydra job, offline unless logged in, always finished."""

from __future__ import annotations

import logging
import netrc
import os
import re
from pathlib import Path
from typing import Any

from uf_experiments import package_version

log = logging.getLogger(__name__)
SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.I)


def scrub(value: Any) -> Any:
    """A copy of a plain config with every secret-looking key removed."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError):
        return False


class NullTracker:
    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None: ...
    def log_summary(self, summary: dict[str, Any]) -> None: ...
    def log_files(self, paths: list[Path]) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...


class WandbTracker:
    """A W&B run whose files live in ``run_dir/wandb``."""

    def __init__(self, cfg: Any, run_dir: Path, config: dict[str, Any], group: str | None, name: str) -> None:
        try:
            import wandb
        except ImportError as exc:
            raise ImportError(f"tracking=wandb needs wandb ({exc}): `pip install wandb`, or run with tracking=none") from exc
        self._wandb = wandb
        mode = cfg.mode or ("online" if logged_in() else "offline")
        os.environ["WANDB_DIR"] = str(run_dir)  # keep every W&B file inside the run dir
        for var, sub in (("WANDB_DATA_DIR", "data"), ("WANDB_CACHE_DIR", "cache"), ("WANDB_CONFIG_DIR", "config")):
            os.environ[var] = str(run_dir / "wandb" / sub)
        self.run = wandb.init(
            project=cfg.project,
            entity=cfg.entity,
            group=group,
            job_type=config.get("experiment"),
            name=name,
            mode=mode,
            dir=str(run_dir),
            config=scrub({**config, "version": package_version()}),  # which uf-experiments made this run
            reinit="finish_previous",
        )
        log.info("W&B run %s (%s) in %s", self.run.id, mode, run_dir / "wandb")

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        self.run.log({name: self._wandb.Table(columns=columns, data=rows)})

    def log_summary(self, summary: dict[str, Any]) -> None:
        for key, value in _flatten(summary).items():
            self.run.summary[key] = value

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


def start_tracker(cfg: Any, run_dir: Path, config: dict[str, Any], group: str | None, name: str) -> Any:
    if str(getattr(cfg.backend, "value", cfg.backend)) == "none":
        return NullTracker()
    return WandbTracker(cfg, run_dir, config, group, name)
