"""Command line: ``uf-experiments [overrides]`` / ``python -m uf_experiments``. Thin on purpose."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import json

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from uf_experiments.config import ConfigError, register_configs

log = logging.getLogger("uf_experiments")

register_configs()


def short_dirname(name: str, limit: int = 120) -> str:
    """A run dir name from the overrides, shortened with a hash when many overrides would pass the file-name
    limit (255 bytes)."""
    import hashlib

    if len(name) <= limit:
        return name
    return f"{name[: limit - 10]}~{hashlib.sha256(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("uf_short", short_dirname, replace=True)
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the Hydra config root, outside the package


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _app(cfg: DictConfig) -> None:
    from uf_experiments.runner import run

    try:
        run(cfg)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        sys.exit(f"error: {exc}")


class PlanTotalCallback(Callback):
    """After a ``-m ... plan=true`` sweep: print and save (``plan_total.json``) the grid total of the jobs' plans."""

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        from uf_experiments.costs import sweep_total

        sweep = Path(config.hydra.sweep.dir)
        plans = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/plan.json"))]
        if not plans:
            return
        grid = sweep_total(plans)
        (sweep / "plan_total.json").write_text(json.dumps(grid, indent=2))
        t = grid["total"]
        print(f"plan: sweep total over {grid['jobs']} jobs: {t['requests']} requests ({t['cached']} cached, "
              f"{t['to_send']} to send), ~{t['est_prompt_tokens']:,} prompt + {t['est_output_tokens']:,} output "
              f"tokens, est ${t['est_usd']:.4f}  -> {sweep / 'plan_total.json'}")


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
