"""The engine interface: a batch of requests in, one completion per request out, in the same order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from uf_experiments.records import Completion, Request


class Engine(Protocol):
    """Serves one model. Engines never raise for one bad request: the failure is on its Completion."""

    def generate(self, requests: Sequence[Request], on_result: Callable[[Completion], None] | None = None) -> list[Completion]:
        """Answer every request, in order. ``on_result`` sees each completion as soon as it exists (the request
        cache commits it there, so a killed run keeps everything answered before the kill)."""
        ...

    def close(self) -> None:
        """Release the model (GPU/CPU memory, processes). Safe to call twice."""
        ...
