"""``tracking.secrets``: which keys count as secret, and scrubbing configs and ``key=value`` overrides."""

from __future__ import annotations

from typing import Any

import pytest

from uf_experiments.report.runs import parse_overrides
from uf_experiments.tracking.secrets import is_secret, scrub, scrub_overrides


@pytest.mark.parametrize(("key", "secret"), [
    ("api_key", True), ("OPENAI_API_KEY", True), ("apikey", True), ("hf_token", True), ("client_secret", True),
    ("password", True), ("Authorization", True),
    ("pool.size", False), ("model", False), ("seed", False),
    # the pattern errs on the safe side: any key naming tokens counts (as it always has)
    ("tokens_per_minute", True), ("max_new_tokens", True),
])
def test_is_secret(key: str, secret: bool):
    assert is_secret(key) is secret


@pytest.mark.parametrize(("config", "want"), [
    ({"api_key": "sk-1", "model": "m"}, {"model": "m"}),
    ({"engine": {"base_url": "http://x", "api_key": "sk-1"}, "seed": 1},
     {"engine": {"base_url": "http://x"}, "seed": 1}),
    ({"pool": [{"name": "a", "token": "t"}, {"name": "b"}]}, {"pool": [{"name": "a"}, {"name": "b"}]}),
    ({"a": {"b": {"password": "p", "c": 3}}}, {"a": {"b": {"c": 3}}}),
    ("plain", "plain"),
])
def test_scrub_removes_secret_keys_at_any_depth(config: Any, want: Any):
    assert scrub(config) == want


@pytest.mark.parametrize(("overrides", "want"), [
    (["pool.size=2", "judge.model.engine.api_key=sk-1"], ["pool.size=2", "judge.model.engine.api_key=***"]),
    (["+engine.api_key=sk-1", "++hf_token=x"], ["+engine.api_key=***", "++hf_token=***"]),
    (["~engine.api_key", "~principles"], ["~engine.api_key", "~principles"]),  # deleting a key reveals nothing
    (["sampling.n=3"], ["sampling.n=3"]),
])
def test_scrub_overrides_masks_secret_values(overrides: list[str], want: list[str]):
    assert scrub_overrides(overrides) == want


def test_a_table_leaves_secret_keys_out():
    assert parse_overrides(["pool.size=2", "+engine.api_key=sk-1", "~hf_token"]) == {"pool.size": "2"}
