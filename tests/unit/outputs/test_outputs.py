"""The run's files: rows reach rated.parquet in dataset order whatever order they finish in, with a fixed schema;
preferences/ is a HF dataset, written by a child process (or here, when the child is gone)."""

from __future__ import annotations

from types import SimpleNamespace

import pyarrow.parquet as pq
from datasets import load_from_disk

from uf_experiments.core.records import Pair
from uf_experiments.outputs.writer import DatasetSaver, OutputWriter, rated_schema

ASPECTS = {"honesty": SimpleNamespace(per_completion=False), "critique": SimpleNamespace(per_completion=True)}


def row(i: int) -> dict:
    return {"prompt_id": f"p{i}", "prompt_index": i, "source": "flan", "instruction": f"q{i}", "principles": ["none"],
            "system_prompts": [None], "generations": [f"a{i}", f"b{i}"], "generation_models": ["m1", "m2"],
            "judge_model": "j", "ratings": {"honesty": [None, 4], "critique": [7, 8]},
            "rationales": {a: ["x", "y"] for a in ASPECTS}, "types": {a: [[], []] for a in ASPECTS},
            "judge_order": {a: [1, 0] for a in ASPECTS}, "parse_status": {a: "ok" for a in ASPECTS},
            "judge_raw": {a: ["raw"] for a in ASPECTS}}


def pair(i: int) -> Pair:
    return Pair(f"p{i}", f"q{i}", f"b{i}", f"a{i}", 8.0, 7.0, "m2", "m1")


def write(tmp_path, saver):
    writer = OutputWriter(tmp_path, rated_schema(ASPECTS, float_ratings=True), saver)
    for i in (2, 0, 3, 1):  # finished out of order
        writer.add(i, row(i), [pair(i)] if i != 3 else [])
    writer.skip(4)
    return writer.close()


def test_rows_in_dataset_order_and_a_loadable_hf_dataset_from_the_child(tmp_path):
    saver = DatasetSaver()
    assert write(tmp_path, saver) == (4, 3)
    assert saver.proc.returncode == 0  # the child wrote preferences/
    rated = pq.read_table(tmp_path / "rated.parquet")
    assert rated.column("prompt_id").to_pylist() == ["p0", "p1", "p2", "p3"]
    # the fixed schema: side-by-side ratings are floats with swap_combine=mean, critique's stay integers
    ratings = str(rated.schema.field("ratings").type)
    assert ratings == "struct<honesty: list<element: double>, critique: list<element: int64>>"
    prefs = load_from_disk(str(tmp_path / "preferences"))
    assert prefs["prompt_id"] == ["p0", "p1", "p2"] and prefs[0]["chosen"] == [{"role": "assistant", "content": "b0"}]


def test_without_its_child_the_hf_dataset_is_written_here(tmp_path):
    saver = DatasetSaver()
    saver.close()  # the child is gone (killed)
    assert write(tmp_path, saver) == (4, 3)
    assert load_from_disk(str(tmp_path / "preferences"))["prompt_id"] == ["p0", "p1", "p2"]
