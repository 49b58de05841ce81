"""The smallest Hydra app (no config files, no groups): benchmark (f)'s yardstick for start-up.

    python benchmarks/minimal_hydra_app.py --help
"""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path=None, config_name=None)
def app(cfg: DictConfig) -> None:
    print(cfg)


if __name__ == "__main__":
    app()
