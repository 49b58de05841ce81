"""A run dir as the post-hoc code (report, dataset card) reads it back: Hydra's record of the job
(``.hydra/overrides.yaml``, ``.hydra/config.yaml``), and ``dig``, the one lookup into nested plain dicts (a
composed config or a ``summary.json``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

SUMMARY = "summary.json"


def dig(node: Any, *keys: str, default: Any = None) -> Any:
    """``node[k1][k2]...``, or ``default`` where a key is missing, a level is not a mapping, or the value is None."""
    for k in keys:
        node = node.get(k) if isinstance(node, Mapping) else None
    return default if node is None else node


def hydra_overrides(run_dir: Path) -> list[str]:
    """The job's command-line overrides, from Hydra's ``.hydra/overrides.yaml`` ([] when there is none)."""
    path = Path(run_dir) / ".hydra" / "overrides.yaml"
    return [str(o) for o in yaml.safe_load(path.read_text()) or []] if path.is_file() else []


def hydra_config_value(run_dir: Path, *keys: str) -> Any:
    """A value of the job's composed config (``.hydra/config.yaml``), or None."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    return dig(yaml.safe_load(path.read_text()) if path.is_file() else None, *keys)
