"""The tracker of ``tracking=none``: every call does nothing; and the test for when tracking is on."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from uf_experiments.config.schema import enum_value


def tracking_enabled(cfg: Any) -> bool:
    """True unless the tracking config's ``backend`` is ``none``."""
    return enum_value(cfg.backend) != "none"


class NullTracker:
    """A tracker that records nothing (``tracking=none``)."""

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None: ...
    def log_summary(self, summary: dict[str, Any]) -> None: ...
    def log_cell_metrics(self, summary: dict[str, Any]) -> None: ...
    def log_images(self, images: Mapping[str, Path]) -> None: ...
    def log_files(self, paths: list[Path]) -> None: ...
    def finish(self, exit_code: int = 0) -> None: ...
