"""Generation principles (the paper's system prompts): which one each completion is written under.

A principle is drawn per completion from the distribution of the prompt's source (``principles.distribution``,
source -> principle -> weight; ``default`` covers other sources), then one of that principle's system-prompt
variants (``uf_experiments/resources/principles/<name>.txt``, variants separated by blank lines). Both draws use
``random.Random`` seeded by (seed, prompt, model, sample index), so a completion keeps its principle when the pool
or ``sampling.n`` grows.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from functools import cache
from importlib import resources

from uf_experiments.config import PRINCIPLES

NONE = "none"
KNOWN = PRINCIPLES


@cache
def variants(principle: str) -> tuple[str, ...]:
    try:
        text = resources.files("uf_experiments.resources.principles").joinpath(f"{principle}.txt").read_text("utf-8")
    except FileNotFoundError as exc:
        raise ValueError(f"unknown principle '{principle}': use one of {', '.join(KNOWN)}") from exc
    return tuple(v.strip() for v in text.split("\n\n") if v.strip())


def choose(distribution: Mapping[str, Mapping[str, float]], source: str, seed: int, prompt_id: str, model: str,
           index: int = 0) -> tuple[str, str | None]:
    """(principle, system prompt) for one completion; ("none", None) when the distribution is empty."""
    weights = distribution.get(source) or distribution.get("default")
    if not weights:
        return NONE, None
    rng = random.Random(f"principle:{seed}:{prompt_id}:{model}:{index}")
    names = list(weights)
    principle = rng.choices(names, weights=[float(weights[n]) for n in names])[0]
    return principle, rng.choice(variants(principle))


def name_of(system_prompt: str | None) -> str:
    """The principle a system prompt is a variant of ("none" without one)."""
    if system_prompt is None:
        return NONE
    for principle in KNOWN:
        if system_prompt in variants(principle):
            return principle
    return "custom"
