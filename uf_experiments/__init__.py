"""uf-experiments: UltraFeedback-style preference-data experiments driven by Hydra."""

from typing import Any


def package_version() -> str:
    """The installed distribution's version (pyproject.toml's), or ``0+unknown`` in a source tree that was never
    installed. ``uf-experiments --version``, ``summary.json`` and the W&B config all record it."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _distribution_version

    try:
        return _distribution_version("uf-experiments")
    except PackageNotFoundError:
        return "0+unknown"


def __getattr__(name: str) -> Any:
    """``__version__`` looked up when asked for (``importlib.metadata`` costs ~40 ms of every command's start-up)."""
    if name == "__version__":
        return package_version()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
