"""What the pool is asked: which ``sampling.n`` of the first ``pool.size`` models answer each prompt
(:mod:`~uf_experiments.generation.pool`), the principle each completion is written under
(:mod:`~uf_experiments.generation.principles`), and the generation requests themselves
(:mod:`~uf_experiments.generation.requests`). Every choice is seeded by ``seed`` and a stable key."""

from uf_experiments.generation.pool import generation_seed, sample_models
from uf_experiments.generation.principles import choose, name_of
from uf_experiments.generation.requests import generation_requests

__all__ = ["choose", "generation_requests", "generation_seed", "name_of", "sample_models"]
