"""uf_experiments.generation.pool: which sampling.n models answer each prompt, and the per-completion generation
seeds."""

from __future__ import annotations

from collections import Counter

import pytest

from uf_experiments.generation.pool import generation_seed, sample_models

ROSTER = ["tiny_a", "tiny_b", "tiny_c", "tiny_d", "tiny_e", "tiny_f"]
PROMPTS = [f"prompt-{i:03d}" for i in range(200)]


@pytest.mark.parametrize(("size", "n"), [(s, n) for s in range(1, 7) for n in range(1, s + 1)])
def test_sample_models_returns_n_distinct_models_of_the_first_size(size, n):
    for prompt_id in PROMPTS[:50]:
        picked = sample_models(ROSTER, size, n, seed=42, prompt_id=prompt_id)
        assert len(picked) == n
        assert len(set(picked)) == n
        assert set(picked) <= set(ROSTER[:size])


def test_same_seed_and_prompt_give_the_same_models():
    for prompt_id in PROMPTS:
        first = sample_models(ROSTER, 4, 2, seed=42, prompt_id=prompt_id)
        again = sample_models(list(ROSTER), 4, 2, seed=42, prompt_id=prompt_id)
        assert first == again


def test_roster_may_be_a_tuple():
    assert sample_models(tuple(ROSTER), 4, 2, 42, "p") == sample_models(ROSTER, 4, 2, 42, "p")


def test_different_seeds_change_some_selections():
    changed = sum(
        sample_models(ROSTER, 6, 3, seed=1, prompt_id=p) != sample_models(ROSTER, 6, 3, seed=2, prompt_id=p)
        for p in PROMPTS
    )
    # 20 possible ordered triples-as-sets; two independent seeds agree on far fewer than half the prompts.
    assert changed > 100


def test_different_prompts_get_different_selections():
    assert len({tuple(sample_models(ROSTER, 6, 3, 42, p)) for p in PROMPTS}) > 20


@pytest.mark.parametrize(("size", "n"), [(2, 1), (4, 2), (5, 3), (6, 2), (6, 6)])
def test_every_model_of_the_pool_is_used_and_none_outside(size, n):
    counts = Counter(m for p in PROMPTS for m in sample_models(ROSTER, size, n, seed=42, prompt_id=p))
    assert set(counts) == set(ROSTER[:size])
    assert sum(counts.values()) == n * len(PROMPTS)
    # Roughly uniform: each model's share is n/size; none gets less than half of it over 200 prompts.
    expected = n * len(PROMPTS) / size
    assert min(counts.values()) > expected / 2


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("seed", [0, 42])
def test_nested_pools_agree_when_the_big_choice_fits_in_the_small_pool(seed, n):
    checked = 0
    for prompt_id in PROMPTS:
        for big in range(n, len(ROSTER) + 1):
            at_big = sample_models(ROSTER, big, n, seed, prompt_id)
            for small in range(n, big):
                if set(at_big) <= set(ROSTER[:small]):
                    assert sample_models(ROSTER, small, n, seed, prompt_id) == at_big, (prompt_id, small, big)
                    checked += 1
    assert checked > 100  # the property was exercised, not vacuously true


def test_growing_the_pool_never_drops_a_model_that_still_ranks_first():
    # The best-ranked model of the whole roster is picked by every pool that contains it.
    for prompt_id in PROMPTS:
        best = sample_models(ROSTER, 6, 1, 42, prompt_id)[0]
        for size in range(ROSTER.index(best) + 1, 7):
            assert best in sample_models(ROSTER, size, 2 if size >= 2 else 1, 42, prompt_id)


@pytest.mark.parametrize(
    ("size", "n"),
    [
        pytest.param(4, 5, id="n>size"),
        pytest.param(7, 2, id="size>roster"),
        pytest.param(4, 0, id="n=0"),
        pytest.param(4, -1, id="n<0"),
        pytest.param(0, 0, id="size=0"),
    ],
)
def test_sample_models_rejects_impossible_sizes(size, n):
    with pytest.raises(ValueError) as info:
        sample_models(ROSTER, size, n, seed=42, prompt_id="p")
    assert f"n ({n})" in str(info.value)
    assert f"size ({size})" in str(info.value)


def test_generation_seed_is_deterministic_and_depends_on_every_part():
    base = generation_seed(42, "p1", "tiny_a", 0)
    assert generation_seed(42, "p1", "tiny_a", 0) == base
    assert generation_seed(42, "p1", "tiny_a") == base  # index defaults to 0
    variants = {
        "seed": generation_seed(43, "p1", "tiny_a", 0),
        "prompt": generation_seed(42, "p2", "tiny_a", 0),
        "model": generation_seed(42, "p1", "tiny_b", 0),
        "index": generation_seed(42, "p1", "tiny_a", 1),
    }
    for part, value in variants.items():
        assert value != base, part


def test_generation_seeds_fit_in_31_bits_and_rarely_collide():
    seeds = [generation_seed(42, p, m, i) for p in PROMPTS for m in ROSTER for i in range(3)]
    assert all(isinstance(s, int) and 0 <= s < 2**31 for s in seeds)
    assert len(set(seeds)) == len(seeds)  # 3600 draws from 2**31: a collision would point at a broken key
