"""Sharding a run and merging the shards back: disjoint, covering, equal to the unsharded run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.helpers.fake_openai import FakeJudge
from uf_experiments.data.sources import load_prompts

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("count", "limit"), [(2, None), (3, None), (5, 23), (7, 72)])
def test_shards_are_disjoint_and_cover_the_dataset(compose, count, limit):
    base = ["dataset.limit=null" if limit is None else f"dataset.limit={limit}"]
    whole = [p.prompt_id for p in load_prompts(compose(base).dataset).prompts]
    parts = [[p.prompt_id for p in load_prompts(compose([*base, f"dataset.shard.count={count}",
                                                         f"dataset.shard.index={i}"]).dataset).prompts]
             for i in range(count)]
    flat = [pid for part in parts for pid in part]
    assert len(flat) == len(set(flat)) == len(whole)  # disjoint
    assert set(flat) == set(whole)  # cover
    assert all(abs(len(a) - len(b)) <= 1 for a in parts for b in parts)  # balanced


def test_shard_index_out_of_range_is_rejected(compose):
    from uf_experiments.config import ConfigError, resolve, validate

    with pytest.raises(ConfigError, match=r"^dataset.shard.index=3 must be in 0..dataset.shard.count-1"):
        validate(resolve(compose(["dataset.shard.count=3", "dataset.shard.index=3"])))


def cli(*args: str, server: FakeJudge) -> subprocess.CompletedProcess:
    env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
    proc = subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


COMMON = ["pool=served", "pool.models=[gen-a,gen-b,gen-c,gen-d]", "sampling.n=3", "judge=served",
          "judge.model.path=judge-x", "judge.output=text", "judge.swap=true", "aspect=[honesty,truthfulness,critique]",
          "principles=paper_code", "dataset.limit=14", "tracking=none", "binarize.recipe=mean_aspects"]


@pytest.mark.slow
def test_merged_shards_equal_an_unsharded_run(tmp_path):
    with FakeJudge() as server:
        cli("-m", "uf_experiments", *COMMON, f"cache.path={tmp_path / 'c1.sqlite'}",
            f"hydra.run.dir={tmp_path / 'whole'}", server=server)
        cli("-m", "uf_experiments", "-m", *COMMON, "dataset.shard.count=3", "dataset.shard.index=0,1,2",
            f"cache.path={tmp_path / 'c2.sqlite'}", f"hydra.sweep.dir={tmp_path / 'shards'}", server=server)
        out = cli("-m", "uf_experiments.cli.merge", str(tmp_path / "merged"), str(tmp_path / "shards"),
                  server=server)
    assert "merged 3 shards" in out.stdout
    whole, merged = tmp_path / "whole", tmp_path / "merged"
    for name in ("rated.parquet", "preferences.parquet"):
        assert pq.read_table(merged / name).to_pylist() == pq.read_table(whole / name).to_pylist(), name
    a = json.loads((whole / "summary.json").read_text())
    b = json.loads((merged / "summary.json").read_text())
    assert b["counts"] == a["counts"]
    assert b["metrics"] == a["metrics"]
    for stage in ("generation", "judge"):
        for key in ("requests", "engine_calls", "prompt_tokens", "completion_tokens", "cost_usd"):
            assert b[stage][key] == a[stage][key], (stage, key)
    assert a["counts"]["rated_rows"] == 14 and a["counts"]["pairs"] > 0
    assert "flip_rate_by_aspect" in b["metrics"]


def test_merge_refuses_incomplete_or_mixed_shards(tmp_path):
    def fake_run(name: str, index: int, count: int, seed: int = 1) -> Path:
        d = tmp_path / name
        (d / ".hydra").mkdir(parents=True)
        (d / ".hydra" / "config.yaml").write_text(
            f"seed: {seed}\naspect: {{}}\nbinarize: {{score: null}}\n"
            f"dataset: {{shard: {{index: {index}, count: {count}}}}}\n")
        (d / "summary.json").write_text(json.dumps({"experiment": "x", "counts": {}}))
        return d

    from uf_experiments.cli.merge import main

    a, b = fake_run("a", 0, 3), fake_run("b", 1, 3)
    assert main([str(tmp_path / "out"), str(a), str(b)]) == 2  # shard 2 missing
    c = fake_run("c", 2, 3, seed=2)
    assert main([str(tmp_path / "out"), str(a), str(b), str(c)]) == 2  # another seed: not one run
