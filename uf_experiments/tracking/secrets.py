"""Secrets never leave the environment: the one pattern of a secret-looking key, and the scrubbing of a config
(``scrub``, for W&B) and of Hydra ``key=value`` overrides (``scrub_overrides``, for the dataset card; a table
leaves such keys out altogether with ``is_secret``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

SECRET_KEY = re.compile(r"(api[_-]?key|token|secret|password|authorization)", re.I)
MASK = "***"


def is_secret(key: Any) -> bool:
    """True when ``key`` looks like it names a secret (an API key, a token, a password...)."""
    return SECRET_KEY.search(str(key)) is not None


def scrub(value: Any) -> Any:
    """A copy of a plain config with every secret-looking key removed."""
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if not is_secret(k)}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    return value


def scrub_overrides(overrides: Sequence[str]) -> list[str]:
    """Hydra overrides with the value of every secret-looking ``key=value`` masked (``key=***``); the rest, and
    ``~key`` (which sets nothing), as they are."""
    out = []
    for o in overrides:
        key, sep, _ = o.partition("=")
        out.append(f"{key}={MASK}" if sep and is_secret(key) else o)
    return out
