"""Per-prompt pool sampling: which ``sampling.n`` models answer each prompt.

Every roster model gets a rank for each prompt from ``random.Random(f"{seed}:{prompt_id}:{model}")``; a prompt is
answered by the ``n`` best-ranked models among the first ``pool.size`` of the roster. Because a model's rank does
not depend on the pool size, a smaller pool's choice is the larger pool's choice whenever the larger pool's
picks all lie in the smaller pool, and sweep cells share work through the request cache.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def rank_key(seed: int, prompt_id: str, model: str) -> float:
    return random.Random(f"{seed}:{prompt_id}:{model}").random()


def sample_models(roster: Sequence[str], size: int, n: int, seed: int, prompt_id: str) -> list[str]:
    """The ``n`` distinct models for one prompt, best rank first."""
    if not 1 <= n <= size <= len(roster):
        raise ValueError(f"need 1 <= n ({n}) <= size ({size}) <= roster ({len(roster)})")
    pool = roster[:size]
    return sorted(pool, key=lambda m: rank_key(seed, prompt_id, m))[:n]


def generation_seed(seed: int, prompt_id: str, model: str, index: int = 0) -> int:
    """The sampling seed of one completion: fixed by (seed, prompt, model, sample index)."""
    return random.Random(f"gen:{seed}:{prompt_id}:{model}:{index}").getrandbits(31)
