"""Which generation requests a run sends: per prompt, ``sampling.n`` models of the pool, each under a principle."""

from __future__ import annotations

from collections.abc import Sequence

from omegaconf import DictConfig

from uf_experiments.pool import generation_seed, sample_models
from uf_experiments.principles import choose as choose_principle
from uf_experiments.records import Prompt, Request


def prompt_requests(cfg: DictConfig, prompt: Prompt, roster: Sequence[str]) -> list[Request]:
    """One request per chosen model for ``prompt``, best rank first, each under its own principle's system
    prompt (if any); ``tag`` is the prompt id."""
    out = []
    user = {"role": "user", "content": prompt.instruction}
    for model in sample_models(roster, cfg.pool.size, cfg.sampling.n, cfg.seed, prompt.prompt_id):
        _, system = choose_principle(cfg.principles.distribution, prompt.source, cfg.seed, prompt.prompt_id, model, 0)
        out.append(Request(
            model=model,
            messages=({"role": "system", "content": system}, user) if system else (user,),
            max_tokens=cfg.sampling.max_new_tokens,
            temperature=cfg.sampling.temperature,
            top_p=cfg.sampling.top_p,
            seed=generation_seed(cfg.seed, prompt.prompt_id, model, 0),
            tag=prompt.prompt_id,
        ))
    return out


def generation_requests(cfg: DictConfig, prompts: Sequence[Prompt]) -> list[list[Request]]:
    """Every prompt's generation requests, in prompt order."""
    roster = list(cfg.pool.models)
    return [prompt_requests(cfg, p, roster) for p in prompts]
