"""The OpenAI-compatible engines: ``engine.py`` (``OpenAIEngine``: one request at a time, online) and ``batch.py``
(``OpenAIBatchEngine``: the Batch API, durable across re-runs, with ``format_status`` and ``BATCH_NOTICE``), over
what they share in ``client.py`` (connection settings, the key check, the request body, the rate limiter, the
circuit breaker); the online engine's HTTP path (``aiohttp`` + ``tenacity``) is ``chat.py``. The Batch API's
JSONL format is in ``batch_format.py``, its bookkeeping tables in ``batch_state.py``.

Importing this package is cheap: the ``openai`` SDK is imported only when the Batch API engine builds its client.
"""

from __future__ import annotations

from uf_experiments.engines.openai.batch import BATCH_NOTICE, OpenAIBatchEngine, format_status
from uf_experiments.engines.openai.client import Endpoint, chat_body
from uf_experiments.engines.openai.engine import OpenAIEngine

__all__ = ["BATCH_NOTICE", "Endpoint", "OpenAIBatchEngine", "OpenAIEngine", "chat_body", "format_status"]
