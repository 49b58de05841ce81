"""The engine interface: a batch of requests in, one completion per request out, in the same order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from uf_experiments.records import Completion, Request


class Engine(Protocol):
    """Serves one model. Engines never raise for one bad request: the failure is on its Completion."""

    def generate(self, requests: Sequence[Request], on_done: Callable[[int], None] | None = None) -> list[Completion]:
        """Answer every request; ``on_done(k)`` reports k more finished requests (for progress bars)."""
        ...

    def close(self) -> None:
        """Release the model (GPU/CPU memory, processes). Safe to call twice."""
        ...
