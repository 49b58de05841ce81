"""An in-process engine that answers at once, deterministically: what is left of a run's wall time is the
framework's own cost (benchmark (c)).

Use it as any model's engine through overrides (it runs in the CLI's process):

    pool=served 'pool.models=[m1,m2,m3,m4]' pool.engine._target_=benchmarks.fake_engine.FakeEngine
    judge=served judge.model.path=judge judge.model.engine._target_=benchmarks.fake_engine.FakeEngine

(``benchmarks`` must be importable: run from the checkout root or put it on ``PYTHONPATH``.) The engine is built
as ``_target_(path=<model name>, **other engine keys)``; keys meant for the OpenAI engine (base_url,
max_in_flight, timeout_s, ...) are accepted and ignored.

- a generation request gets a ~40-character text derived from (model, messages, seed);
- a judge request (its last message holds ``<text k>`` blocks) gets a valid rating of every text: JSON when
  ``request.response_format`` is set (``{"text_1": {"rating": r, "rationale": "..."}, ...}``), the paper's text
  format otherwise; a critique request (``<response>``) gets feedback and a score;
- usage is ~4 characters a token for the prompt and the completion.

It speaks both engine APIs: the batch one of the pre-streaming core (``generate(requests, on_result=None)``) and
the async seam of ``uf_experiments/engines/base.py`` (``max_batch``, ``concurrency``, ``exclusive_device``,
``linger_s``, ``async complete(requests, emit)``, ``close()``).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.server import rating_reply
from uf_experiments.core.records import Completion, Request, Usage

TEXT_TAG = re.compile(r"<text (\d+)>")


def _h(*parts: str) -> int:
    return int(hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).hexdigest(), 16)


def reply(req: Request) -> str:
    """The deterministic answer to ``req``."""
    user = req.messages[-1]["content"] if req.messages else ""
    seed = str(req.seed)
    if "<response>" in user:  # critique: one completion at a time
        score = _h(user, seed) % 10 + 1
        if req.response_format is not None:
            return json.dumps({"feedback": "clear enough", "overall_score": score})
        return f"### Feedback\nClear enough.\nOverall Score: {score}"
    labels = TEXT_TAG.findall(user)
    if not labels:
        return f"Answer {_h(req.model, user, seed):016x} from {req.model}: fine."[:64]
    n = max(int(k) for k in labels)
    typed = "Type:" in user or '"types"' in user
    ratings = [_h(user, seed, str(k)) % 5 + 1 for k in range(1, n + 1)]
    return rating_reply(ratings, req.response_format is not None, typed)


def answer(req: Request) -> Completion:
    text = reply(req)
    prompt_chars = sum(len(m["content"]) for m in req.messages)
    return Completion(req, text, Usage(prompt_chars // 4 + 1, len(text) // 4 + 1), "stop")


class FakeEngine:
    """Answers every request at once. ``max_batch``/``concurrency`` shape how the new scheduler feeds it."""

    exclusive_device = False
    linger_s = 0.0

    def __init__(self, path: str, max_batch: int = 256, concurrency: int = 1, **ignored: Any) -> None:
        self.path = path
        self.max_batch = max_batch
        self.concurrency = concurrency
        self.closed = False

    @staticmethod
    def check_config(engine_cfg: Any) -> str | None:
        """Nothing to check: no key, no endpoint."""
        return None

    # the pre-streaming batch API
    def generate(self, requests: Sequence[Request],
                 on_result: Callable[[Completion], None] | None = None) -> list[Completion]:
        out = []
        for r in requests:
            c = answer(r)
            if on_result is not None:
                on_result(c)
            out.append(c)
        return out

    # the async seam (uf_experiments/engines/base.py)
    async def complete(self, requests: Sequence[Request], emit: Callable[[Completion], None]) -> None:
        for r in requests:
            emit(answer(r))

    def close(self) -> None:
        self.closed = True
