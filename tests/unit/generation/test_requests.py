"""Generation requests carry each pool member's own decoding settings where its config sets them (the default
demo's SmolLM2 members), and the run's ``sampling`` settings everywhere else."""

from __future__ import annotations

from tests.conftest import compose_config
from uf_experiments.config import resolve, typed, validate
from uf_experiments.core.records import Prompt
from uf_experiments.generation.requests import GenerationSpec, prompt_requests


def requests_for(overrides: list[str]) -> dict[str, tuple[int, float, float]]:
    cfg = compose_config(overrides)
    validate(resolve(cfg))
    spec = GenerationSpec.of(typed(cfg))
    prompt = Prompt(prompt_id="p1", source="flan", instruction="Name a colour.")
    return {r.model: (r.max_tokens, r.temperature, r.top_p) for r in prompt_requests(spec, prompt)}


def test_smollm2_members_sample_at_their_own_temperature_and_length():
    assert requests_for([]) == {"smollm2_t0_7": (128, 0.7, 1.0), "smollm2_t1_1": (128, 1.1, 1.0)}
    # a member's own setting wins over sampling.*; the ones it leaves unset follow sampling.*
    got = requests_for(["sampling.temperature=0.2", "sampling.top_p=0.9", "pool.models.smollm2_t1_1.max_new_tokens=32"])
    assert got == {"smollm2_t0_7": (128, 0.7, 0.9), "smollm2_t1_1": (32, 1.1, 0.9)}


def test_members_without_settings_follow_sampling():
    got = requests_for(["pool=tiny", "pool.size=2", "sampling.temperature=0.3", "sampling.max_new_tokens=20"])
    assert got == {"tiny_a": (20, 0.3, 1.0), "tiny_b": (20, 0.3, 1.0)}
