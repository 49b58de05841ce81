"""Engines are the only code that talks to a model.

- ``base.py``: the seam every engine implements (``Engine``: ``complete(requests, emit)`` streaming one
  ``Completion`` per request; ``EngineDown`` for a run-level fault; ``run_sync`` to drive one outside a scheduler);
- ``build.py``: engines from their model configs (the class a config names declares its ``kind`` and
  ``cache_name``);
- ``cache.py``: the durable request cache (SQLite, shared by parallel jobs through claims);
- ``sqlite.py``: the SQLite plumbing ``cache.py`` and the Batch API's bookkeeping share;
- ``vllm_engine.py``: vLLM in process (holds the device while loaded);
- ``openai/``: the OpenAI-compatible engines, online and through the Batch API.

Importing this package is cheap (no model library, no SDK).
"""

from __future__ import annotations

from uf_experiments.engines.base import Emit, Engine, EngineDown, run_sync

__all__ = ["Emit", "Engine", "EngineDown", "run_sync"]
