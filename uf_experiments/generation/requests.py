"""Which generation requests a run sends: per prompt, ``sampling.n`` models of the pool, each under a principle."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from uf_experiments.config.schema import RunConfig
from uf_experiments.core.records import Prompt, Request
from uf_experiments.generation.pool import generation_seed, sample_models
from uf_experiments.generation.principles import choose as choose_principle


@dataclass(frozen=True)
class GenerationSpec:
    """What generation requests depend on, as plain values (read from the config once)."""

    roster: tuple[str, ...]
    size: int
    n: int
    seed: int
    distribution: dict[str, dict[str, float]]
    max_tokens: int
    temperature: float
    top_p: float
    # model -> (max_tokens, temperature, top_p) for pool members that set their own (conf/model/smollm2_*.yaml)
    decoding: dict[str, tuple[int, float, float]] = field(default_factory=dict)

    @classmethod
    def of(cls, cfg: RunConfig) -> GenerationSpec:
        s = cfg.sampling
        distribution = {source: dict(weights) for source, weights in cfg.principles.distribution.items()}
        run = (int(s.max_new_tokens), float(s.temperature), float(s.top_p))
        decoding = {}
        for name, model in cfg.pool.models.items():
            own = (getattr(model, "max_new_tokens", None), getattr(model, "temperature", None),
                   getattr(model, "top_p", None))
            if any(v is not None for v in own):
                decoding[name] = (
                    int(own[0]) if own[0] is not None else run[0],
                    float(own[1]) if own[1] is not None else run[1],
                    float(own[2]) if own[2] is not None else run[2],
                )
        return cls(tuple(cfg.pool.models), int(cfg.pool.size or 0), int(s.n), int(cfg.seed), distribution, *run,
                   decoding)

    def decoding_of(self, model: str) -> tuple[int, float, float]:
        """(max_tokens, temperature, top_p) for ``model``: its own where its config sets them, else ``sampling``'s."""
        return self.decoding.get(model, (self.max_tokens, self.temperature, self.top_p))


def prompt_requests(spec: GenerationSpec, prompt: Prompt) -> list[Request]:
    """One request per chosen model for ``prompt``, best rank first, each under its own principle's system
    prompt (if any); ``tag`` is the prompt id."""
    if prompt.given:  # the dataset holds its completions (experiment=rejudge): nothing to generate
        return []
    out = []
    user = {"role": "user", "content": prompt.instruction}
    for model in sample_models(spec.roster, spec.size, spec.n, spec.seed, prompt.prompt_id):
        _, system = choose_principle(spec.distribution, prompt.source, spec.seed, prompt.prompt_id, model, 0)
        max_tokens, temperature, top_p = spec.decoding_of(model)
        out.append(Request(
            model=model,
            messages=({"role": "system", "content": system}, user) if system else (user,),
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=generation_seed(spec.seed, prompt.prompt_id, model, 0),
            tag=prompt.prompt_id,
        ))
    return out


def generation_requests(cfg: RunConfig, prompts: Sequence[Prompt]) -> list[list[Request]]:
    """Every prompt's generation requests, in prompt order."""
    spec = GenerationSpec.of(cfg)
    return [prompt_requests(spec, p) for p in prompts]
