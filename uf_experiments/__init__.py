"""uf-experiments: UltraFeedback-style preference-data experiments driven by Hydra."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _distribution_version


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's), or ``0+unknown`` in a source tree that was never
    installed. ``uf-experiments --version``, ``summary.json`` and the W&B config all record it."""
    try:
        return _distribution_version("uf-experiments")
    except PackageNotFoundError:
        return "0+unknown"


__version__ = package_version()
