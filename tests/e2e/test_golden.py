"""The pipeline's results for a fixed seed stay what they were before the streaming scheduler replaced the
batch-stage runner: the same rated rows and pairs, value for value, with deterministic engines (a real HTTP
server on 127.0.0.1 whose answers depend only on the request).

``tests/e2e/golden/*.json`` were written by the batch-stage runner (commit bac9a1c) with
``UF_WRITE_GOLDEN=1 pytest tests/e2e/test_golden.py``; they are never rewritten by a passing run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.conftest import compose_config
from tests.helpers.fake_openai import FakeJudge

GOLDEN = Path(__file__).parent / "golden"
SOURCES = ["sharegpt", "flan", "evol_instruct", "truthful_qa", "false_qa", "ultra_chat"]
MARKERS = ["", "GARBLE_ONCE", "", "BIAS_FIRST", "", "QUOTE", "GARBLE_ALWAYS", ""]

CASES = {
    # text mode, re-asks (GARBLE_ONCE) and a failure kept as data (GARBLE_ALWAYS), typed aspects, N/A-able honesty
    "text": ["judge.output=text", "aspect=[instruction_following,honesty,truthfulness]", "sampling.n=3",
             "principles=paper_code"],
    # JSON mode, the swap pass averaged, the per-completion critique, mean_aspects binarization
    "json_swap": ["judge.output=json", "aspect=[helpfulness,critique]", "judge.swap=true", "judge.swap_combine=mean",
                  "sampling.n=2", "binarize.recipe=mean_aspects", "binarize.ties=keep"],
}


def write_prompts(path: Path) -> None:
    rows = [{"prompt_id": f"p{i:02d}", "source": SOURCES[i % len(SOURCES)],
             "instruction": f"Question {i}: explain topic {i * 7 % 13}. {MARKERS[i % len(MARKERS)]}"}
            for i in range(16)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def run_case(name: str, tmp_path: Path, server: FakeJudge) -> tuple[list[dict], list[dict]]:
    from uf_experiments.pipeline.run import run

    data = tmp_path / "prompts.jsonl"
    write_prompts(data)
    cfg = compose_config(["pool=served", "pool.models=[gen-a,gen-b,gen-c,gen-d]", "judge=served",
                          "judge.model.path=judge-x", "dataset=local", f"dataset.path={data}", "tracking=none",
                          f"cache.path={tmp_path / 'cache.sqlite'}", "seed=11", *CASES[name]])
    run(cfg, tmp_path / "run")
    rated = pq.read_table(tmp_path / "run" / "rated.parquet").to_pylist()
    prefs = pq.read_table(tmp_path / "run" / "preferences.parquet").to_pylist()
    return rated, prefs


@pytest.mark.parametrize("name", sorted(CASES))
def test_results_equal_the_batch_stage_runner(name, tmp_path, monkeypatch):
    with FakeJudge() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        rated, prefs = run_case(name, tmp_path, server)
    golden = GOLDEN / f"{name}.json"
    got = json.loads(json.dumps({"rated": rated, "preferences": prefs}))  # as JSON values, like the file
    if os.environ.get("UF_WRITE_GOLDEN"):
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    want = json.loads(golden.read_text())
    assert len(got["rated"]) == len(want["rated"]) == 16
    assert len(got["preferences"]) == len(want["preferences"]) > 0
    for mine, theirs in zip(got["rated"], want["rated"], strict=True):
        assert mine == theirs, mine["prompt_id"]
    assert got["preferences"] == want["preferences"]
