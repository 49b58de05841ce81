"""Principles: per-source distributions over 2,000 draws, variants, seeding, and the shipped options."""

from __future__ import annotations

from collections import Counter

import pytest
from omegaconf import OmegaConf

from uf_experiments.generation.principles import KNOWN, choose, name_of, variants

CONF = __import__("pathlib").Path(__file__).resolve().parents[3] / "conf" / "principles"


@pytest.mark.parametrize("option", ["paper_code", "paper_readme"])
def test_frequencies_follow_the_configured_distribution(option):
    dist = OmegaConf.to_container(OmegaConf.load(CONF / f"{option}.yaml").distribution)
    for source, weights in dist.items():
        draws = Counter(choose(dist, source, 42, f"p{i}", "model-a")[0] for i in range(2000))
        total = sum(weights.values())
        for principle, weight in weights.items():
            assert abs(draws[principle] / 2000 - weight / total) < 0.035, (option, source, principle, draws)
        assert set(draws) <= set(weights)


def test_paper_variants_differ_where_the_paper_does():
    code = OmegaConf.load(CONF / "paper_code.yaml").distribution
    readme = OmegaConf.load(CONF / "paper_readme.yaml").distribution
    assert dict(code.truthful_qa) == {"truthfulness": 0.5, "honesty": 0.45, "verbalized_calibration": 0.05}
    assert dict(readme.truthful_qa) == {"truthfulness": 1.0}
    assert dict(code.flan) == {"helpfulness": 0.8, "verbalized_calibration": 0.2}
    assert dict(code.evol_instruct) == dict(readme.evol_instruct) == {"helpfulness": 1.0}


def test_every_principle_has_several_variants_and_round_trips():
    for principle in KNOWN:
        assert len(variants(principle)) >= 3
        for text in variants(principle):
            assert name_of(text) == principle
    assert name_of(None) == "none" and name_of("something else") == "custom"
    assert all("Confidence:" in v for v in variants("verbalized_calibration"))


def test_seeded_per_completion_and_none_without_a_distribution():
    dist = {"ultrachat": {"helpfulness": 1, "honesty": 1}}
    assert choose(dist, "ultrachat", 1, "p", "m") == choose(dist, "ultrachat", 1, "p", "m")
    picks = {choose(dist, "ultrachat", 1, "p", f"m{i}") for i in range(40)}
    assert len({p for p, _ in picks}) == 2 and len(picks) > 2  # principles and variants both vary
    assert choose({}, "ultrachat", 1, "p", "m") == ("none", None)
    assert choose({"default": {"honesty": 1}}, "other-source", 1, "p", "m")[0] == "honesty"


def test_unknown_principle_is_rejected(compose):
    from uf_experiments.config import ConfigError, resolve, validate

    cfg = compose(["principles=paper_code", "+principles.distribution.flan.kindness=1"])
    with pytest.raises(ConfigError, match=r"^principles.distribution.flan: weights must be"):
        validate(resolve(cfg))
