"""Command line: ``uf-experiments [overrides]`` / ``python -m uf_experiments``. Thin on purpose."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from uf_experiments.config import ConfigError, register_configs

log = logging.getLogger("uf_experiments")

register_configs()
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")  # the Hydra config root, outside the package


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _app(cfg: DictConfig) -> None:
    from uf_experiments.runner import run

    try:
        run(cfg)
    except ConfigError as exc:
        log.error("config error: %s", exc)
        sys.exit(f"error: {exc}")


def main() -> None:
    _app()


if __name__ == "__main__":
    main()
