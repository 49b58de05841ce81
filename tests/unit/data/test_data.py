"""uf_experiments.data.sources: the demo set, local files in every supported format, the shared row rules of
to_prompts (column mapping, empty / duplicate skipping with counts, stable ids, source fallback), and completions
a dataset already holds (openbmb/UltraFeedback's schema, an earlier run's dir, a mapped list column)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.helpers.uf_fixture import PROMPTS as UF_PROMPTS
from tests.helpers.uf_fixture import SYSTEM as UF_SYSTEM
from tests.helpers.uf_fixture import response as uf_response
from tests.helpers.uf_fixture import write_uf
from uf_experiments.config import ConfigError
from uf_experiments.core.records import GivenCompletion, Prompt
from uf_experiments.data.given import given_row_fields, reference_value
from uf_experiments.data.prompts import to_prompts
from uf_experiments.data.sources import load_prompts

SOURCES = {"ultrachat", "sharegpt", "evol_instruct", "truthful_qa", "false_qa", "flan"}

KNUCKLES = "What happens if you crack your knuckles a lot?"
FRENCH = "Translate 'good morning' into French."
ROWS: list[dict[str, Any]] = [
    {
        "prompt_id": "tq-1",
        "source": "truthful_qa",
        "instruction": KNUCKLES,
        "correct_answers": ["Nothing in particular happens", "It makes a sound"],
        "incorrect_answers": ["You will get arthritis"],
    },
    {"prompt_id": "flan-1", "source": "flan", "instruction": FRENCH},
]
EXPECTED = [
    Prompt(
        "tq-1",
        "truthful_qa",
        KNUCKLES,
        {"correct_answers": ["Nothing in particular happens", "It makes a sound"],
         "incorrect_answers": ["You will get arthritis"]},
    ),
    Prompt("flan-1", "flan", FRENCH, {}, index=1),
]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Write ``rows`` in the format named by the suffix, with the tool a user would use for it."""
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif suffix == ".json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(path)
    elif suffix == ".csv":
        fields = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("\n".join(str(r) for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def load_local(compose):
    """``load_local(path, "dataset.source=x", ...)``: load a local file through the composed dataset=local config."""

    def _load(path: Path, *overrides: str):
        cfg = compose(["dataset=local", f"dataset.path={path}", *overrides])
        return load_prompts(cfg.dataset)

    return _load


# ---- the demo set ----


def test_demo_set_covers_the_six_sources(compose):
    report = load_prompts(compose(["dataset=demo"]).dataset)

    assert len(report.prompts) >= 60
    assert {p.source for p in report.prompts} == SOURCES
    assert min(Counter(p.source for p in report.prompts).values()) >= 10
    assert len({p.prompt_id for p in report.prompts}) == len(report.prompts)
    assert report.rows == len(report.prompts)
    assert (report.skipped_empty, report.skipped_duplicate) == (0, 0)
    assert all(p.instruction == p.instruction.strip() and p.instruction for p in report.prompts)


def test_demo_limit_keeps_the_first_prompts(compose):
    everything = load_prompts(compose(["dataset=demo"]).dataset).prompts
    report = load_prompts(compose(["dataset=demo", "dataset.limit=5"]).dataset)
    sample = load_prompts(compose([]).dataset).prompts  # the default demo's 12: two per source
    assert sample == everything[:12] and len({p.source for p in sample}) == 6

    assert len(report.prompts) == 5
    assert report.prompts == everything[:5]


# ---- local files ----


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_local_file_round_trips_values_and_extras(tmp_path, load_local, suffix):
    report = load_local(write(tmp_path / f"prompts{suffix}", ROWS))

    assert report.prompts == EXPECTED
    assert (report.rows, report.skipped_empty, report.skipped_duplicate) == (2, 0, 0)


def test_local_csv_round_trips_values(tmp_path, load_local):
    rows = [{k: r[k] for k in ("prompt_id", "source", "instruction")} for r in ROWS]
    report = load_local(write(tmp_path / "prompts.csv", rows))

    assert report.prompts == [Prompt("tq-1", "truthful_qa", KNUCKLES, {}),
                              Prompt("flan-1", "flan", FRENCH, {}, index=1)]


def test_local_suffix_is_case_insensitive(tmp_path, load_local):
    report = load_local(write(tmp_path / "PROMPTS.jsonl", ROWS).rename(tmp_path / "PROMPTS.JSONL"))
    assert report.prompts == EXPECTED


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_local_column_mapping(tmp_path, load_local, suffix):
    rows = [{"id": "a1", "origin": "sharegpt", "prompt": "Write a haiku about rain."},
            {"id": "a2", "origin": "flan", "prompt": "List three prime numbers."}]
    report = load_local(
        write(tmp_path / f"mapped{suffix}", rows),
        "dataset.columns.instruction=prompt", "dataset.columns.prompt_id=id", "dataset.columns.source=origin",
    )
    assert report.prompts == [Prompt("a1", "sharegpt", "Write a haiku about rain."),
                              Prompt("a2", "flan", "List three prime numbers.", index=1)]


def test_local_instruction_mapping_alone(tmp_path, load_local):
    rows = [{"prompt": "Write a haiku about rain."}]
    report = load_local(write(tmp_path / "p.jsonl", rows), "dataset.columns.instruction=prompt",
                        "dataset.source=poems")
    assert [(p.source, p.instruction) for p in report.prompts] == [("poems", "Write a haiku about rain.")]


@pytest.mark.parametrize(
    ("rows", "overrides", "needles"),
    [
        pytest.param([{"question": "Why?"}], [], ["'instruction'", "question", "dataset.columns.instruction"],
                     id="default-column"),
        pytest.param([{"instruction": "Why?"}], ["dataset.columns.instruction=prompt"], ["'prompt'", "instruction"],
                     id="mapped-column"),
    ],
)
def test_local_missing_instruction_column_names_it(tmp_path, load_local, rows, overrides, needles):
    with pytest.raises(ConfigError) as info:
        load_local(write(tmp_path / "p.jsonl", rows), *overrides)
    message = str(info.value)
    assert "\n" not in message
    for needle in needles:
        assert needle in message


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_local_empty_and_duplicate_instructions_are_skipped_and_counted(tmp_path, load_local, suffix):
    instructions = ["Alpha?", "", "   ", "Alpha?", "  Alpha?  ", "Beta?", "\t\n", "beta?", "Beta?"]
    rows = [{"prompt_id": f"id{i}", "source": "s", "instruction": text} for i, text in enumerate(instructions)]
    report = load_local(write(tmp_path / f"p{suffix}", rows))

    assert [(p.prompt_id, p.instruction) for p in report.prompts] == [("id0", "Alpha?"), ("id5", "Beta?"),
                                                                      ("id7", "beta?")]
    assert report.rows == 9
    assert report.skipped_empty == 3
    assert report.skipped_duplicate == 3


def test_local_nonexistent_path(tmp_path, load_local):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(ConfigError) as info:
        load_local(missing)
    assert f"dataset.path={missing}" in str(info.value)
    assert "does not exist" in str(info.value)


def test_local_unsupported_suffix(tmp_path, load_local):
    path = write(tmp_path / "prompts.txt", ROWS)
    with pytest.raises(ConfigError) as info:
        load_local(path)
    message = str(info.value)
    assert "'.txt'" in message
    for suffix in (".jsonl", ".json", ".parquet", ".csv"):
        assert suffix in message


def test_local_missing_prompt_id_is_stable_across_loads_and_formats(tmp_path, load_local):
    rows = [{"source": "flan", "instruction": FRENCH}, {"source": "flan", "instruction": KNUCKLES}]
    first = load_local(write(tmp_path / "a.jsonl", rows)).prompts
    second = load_local(write(tmp_path / "b.jsonl", rows)).prompts
    as_csv = load_local(write(tmp_path / "c.csv", rows)).prompts

    ids = [p.prompt_id for p in first]
    assert ids == [p.prompt_id for p in second] == [p.prompt_id for p in as_csv]
    assert len(set(ids)) == 2
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        pytest.param([], "unknown", id="no-source-anywhere"),
        pytest.param(["dataset.source=my_label"], "my_label", id="dataset.source"),
    ],
)
def test_local_missing_source_falls_back(tmp_path, load_local, overrides, expected):
    report = load_local(write(tmp_path / "p.jsonl", [{"instruction": FRENCH}]), *overrides)
    assert [p.source for p in report.prompts] == [expected]


def test_local_source_column_wins_over_dataset_source(tmp_path, load_local):
    rows = [{"source": "flan", "instruction": FRENCH}, {"source": None, "instruction": KNUCKLES}]
    report = load_local(write(tmp_path / "p.jsonl", rows), "dataset.source=fallback")
    assert [p.source for p in report.prompts] == ["flan", "fallback"]


def test_local_limit(tmp_path, load_local):
    report = load_local(write(tmp_path / "p.jsonl", ROWS), "dataset.limit=1")
    assert report.prompts == EXPECTED[:1]


# ---- to_prompts: the row rules, table-driven ----


def run(rows, columns=None, default_source=None, limit=None):
    return to_prompts(rows, columns or {}, default_source, limit, origin="the test rows")


@pytest.mark.parametrize(
    ("rows", "kwargs", "expected", "counts"),
    [
        pytest.param(
            [{"instruction": " Hi there "}], {"default_source": "x"},
            [("Hi there", "x")], (1, 0, 0), id="strips-whitespace",
        ),
        pytest.param(
            [{"instruction": ""}, {"instruction": "  "}, {"instruction": None}, {"instruction": "A"}],
            {}, [("A", "unknown")], (4, 3, 0), id="empty-and-none-skipped",
        ),
        pytest.param(
            [{"instruction": "A", "source": "s1"}, {"instruction": "A", "source": "s2"}, {"instruction": " A"}],
            {}, [("A", "s1")], (3, 0, 2), id="duplicates-keep-first-across-sources",
        ),
        pytest.param(
            [{"instruction": "", "source": "s"}, {"instruction": "A"}, {"instruction": "A"}, {"instruction": "B"},
             {"instruction": "C"}],
            {"limit": 2}, [("A", "unknown"), ("B", "unknown")], (4, 1, 1), id="limit-counts-kept-prompts",
        ),
        pytest.param(
            [{"q": "A", "src": "s"}], {"columns": {"instruction": "q", "source": "src"}},
            [("A", "s")], (1, 0, 0), id="mapped-columns",
        ),
        pytest.param(
            [{"instruction": "A", "source": ""}], {"default_source": "d"},
            [("A", "d")], (1, 0, 0), id="empty-source-uses-default",
        ),
    ],
)
def test_to_prompts_rules(rows, kwargs, expected, counts):
    report = run(rows, **kwargs)
    assert [(p.instruction, p.source) for p in report.prompts] == expected
    assert (report.rows, report.skipped_empty, report.skipped_duplicate) == counts


def test_to_prompts_maps_extra_columns():
    rows = [{"instruction": "A", "answers": ["yes"], "world_knowledge": "Sky is blue.", "other": 1}]
    report = run(rows, {"correct_answers": "answers"})
    assert report.prompts[0].extras == {"correct_answers": ["yes"], "world_knowledge": "Sky is blue."}


def test_to_prompts_leaves_out_empty_world_knowledge():
    """UltraFeedback marks rows without reference answers with ["None"]: the judge must not read "Correct answers:
    None" as knowledge."""
    rows = [{"instruction": "A", "correct_answers": ["None"], "incorrect_answers": [], "world_knowledge": ""},
            {"instruction": "B", "correct_answers": ["None", "Zero"], "incorrect_answers": ["Five"]}]
    report = run(rows)
    assert report.prompts[0].extras == {"world_knowledge": ""}
    assert report.prompts[1].extras == {"correct_answers": ["None", "Zero"], "incorrect_answers": ["Five"]}


def test_to_prompts_stable_id_depends_on_source_and_instruction():
    ids = {
        (src, text): run([{"instruction": text, "source": src}]).prompts[0].prompt_id
        for src in ("a", "b") for text in ("X", "Y")
    }
    assert len(set(ids.values())) == 4
    assert run([{"instruction": "X", "source": "a"}]).prompts[0].prompt_id == ids[("a", "X")]


def test_to_prompts_no_rows_is_an_error():
    with pytest.raises(ConfigError) as info:
        run([])
    assert "the test rows has no rows" in str(info.value)


def test_to_prompts_missing_instruction_column_lists_the_columns():
    with pytest.raises(ConfigError) as info:
        run([{"prompt": "A", "answer": "B"}])
    assert "no column 'instruction'" in str(info.value)
    assert "prompt, answer" in str(info.value)


def test_to_prompts_keeps_a_zero_prompt_id():
    report = run([{"prompt_id": 0, "instruction": "A"}, {"prompt_id": 1, "instruction": "B"}])
    assert [p.prompt_id for p in report.prompts] == ["0", "1"]


def test_local_csv_integer_ids_stay_integers_when_one_is_missing(tmp_path, load_local):
    rows = [{"prompt_id": 1, "instruction": "A"}, {"prompt_id": "", "instruction": "B"},
            {"prompt_id": 3, "instruction": "C"}]
    report = load_local(write(tmp_path / "p.csv", rows))
    assert [report.prompts[0].prompt_id, report.prompts[2].prompt_id] == ["1", "3"]


def test_to_prompts_all_empty_is_an_error_naming_the_column():
    with pytest.raises(ConfigError) as info:
        run([{"instruction": ""}, {"instruction": None}])
    assert str(info.value) == ("the test rows: all 2 rows have an empty 'instruction', nothing to run: check the data, "
                               "or map another column with dataset.columns.instruction=NAME")


def test_an_unparseable_file_is_one_line(tmp_path, load_local):
    bad = tmp_path / "p.csv"
    bad.write_bytes(b'instruction\n"unclosed\n')
    with pytest.raises(ConfigError) as info:
        load_local(bad)
    message = str(info.value)
    assert message.startswith(f"dataset.path={bad} cannot be read as csv (") and "\n" not in message
    assert message.endswith("): fix the file or pass another")


def test_hub_errors_name_the_key_to_fix(tmp_path):
    """hub_error() on what `datasets` really raises: a wrong split (from a local file: the same loader code)."""
    from datasets import load_dataset

    from uf_experiments.data.sources import hub_error

    path = write(tmp_path / "p.jsonl", [{"instruction": "A"}])
    with pytest.raises(ValueError) as info:
        load_dataset("json", data_files=str(path), split="tst")
    assert hub_error("me/data", None, "tst", info.value) == (
        "dataset.split=tst of me/data: Unknown split \"tst\". Should be one of ['train']. (fix dataset.split)")


def test_check_inputs_checks_the_cache_path_unless_planning(tmp_path, compose):
    from uf_experiments.data.sources import check_inputs

    blocker = tmp_path / "a-file"
    blocker.write_text("")
    cfg = compose(["dataset.limit=3", f"cache.path={blocker}/requests.sqlite"])
    with pytest.raises(ConfigError) as info:
        check_inputs(cfg)
    assert str(info.value) == (f"cache.path={blocker}/requests.sqlite cannot be written ({blocker} is a file, not a "
                               "directory): pass a writable cache.path=DIR/requests.sqlite (or cache.enabled=false)")
    assert len(check_inputs(compose(["dataset.limit=3", f"cache.path={blocker}/r.sqlite", "plan=true"])).prompts) == 3
    assert len(check_inputs(compose(["dataset.limit=3", f"cache.path={blocker}/r.sqlite",
                                     "cache.enabled=false"])).prompts) == 3
    ok = tmp_path / "new" / "dir" / "requests.sqlite"
    assert len(check_inputs(compose(["dataset.limit=3", f"cache.path={ok}"])).prompts) == 3
    assert ok.parent.is_dir() and list(ok.parent.iterdir()) == []  # the check leaves nothing behind


# ---- completions a dataset holds (dataset.completions, experiment=rejudge) ----

@pytest.fixture
def load_rejudge(compose):
    """``load_rejudge(path, "dataset.columns.responses=x", ...)``: load through experiment=rejudge's dataset."""

    def _load(path: Path, *overrides: str):
        cfg = compose(["experiment=rejudge", f"dataset.path={path}", *overrides])
        return load_prompts(cfg.dataset)

    return _load


@pytest.mark.parametrize(
    ("value", "expected"),
    [("4", 4.0), (" 5 ", 5.0), (3, 3.0), (7.5, 7.5), ("7.5", 7.5), ("0", 0.0), ("N/A", None), ("", None),
     (None, None), ("four", None), (float("nan"), None), (True, None), ([4], None)],
)
def test_reference_value(value, expected):
    assert reference_value(value) == expected


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_ultrafeedback_schema_loads_completions_and_reference_ratings(tmp_path, load_rejudge, suffix):
    report = load_rejudge(write_uf(tmp_path / f"uf{suffix}"))

    assert report.layout == "ultrafeedback"
    assert (report.rows, report.skipped_empty, report.skipped_duplicate) == (6, 1, 1)
    assert (report.skipped_few_completions, report.dropped_empty_completions) == (1, 3)
    assert [(p.source, p.instruction) for p in report.prompts] == [(u["source"], u["instruction"]) for u in UF_PROMPTS]
    assert [p.index for p in report.prompts] == [0, 1, 2]
    assert report.prompts[0].extras == {}  # ["None"]: UltraFeedback's placeholder for no reference answers
    p2 = report.prompts[1]
    assert p2.extras == {"correct_answers": UF_PROMPTS[1]["correct_answers"],
                         "incorrect_answers": UF_PROMPTS[1]["incorrect_answers"]}
    assert p2.given == (
        GivenCompletion(uf_response(1, 0, 3), "alpaca-7b", "helpfulness", UF_SYSTEM["helpfulness"],
                        {"instruction_following": 3.0, "honesty": 3.0, "truthfulness": 3.0, "helpfulness": 3.0,
                         "critique": 3.0}),
        GivenCompletion(uf_response(1, 1, 3), "gpt-4", "honesty", UF_SYSTEM["honesty"],
                        {"instruction_following": 4.0, "honesty": None, "truthfulness": 3.0, "helpfulness": 3.0,
                         "critique": 3.0}),  # honesty "N/A" is no rating
        GivenCompletion(uf_response(1, 2, 5), "llama-2-13b-chat", "truthfulness", UF_SYSTEM["truthfulness"],
                        {"instruction_following": 5.0, "honesty": 4.0, "truthfulness": 5.0, "helpfulness": 3.0,
                         "critique": 5.0}),
        GivenCompletion(uf_response(1, 3, 2), "wizardlm-7b", "verbalized_calibration",
                        UF_SYSTEM["verbalized_calibration"],
                        {"instruction_following": 1.0, "honesty": 2.0, "truthfulness": 2.0, "helpfulness": 3.0,
                         "critique": 2.0}),
    )
    assert [g.reference["critique"] for g in report.prompts[2].given] == [4.0, 1.0, 3.0, 7.5]  # overall_score
    assert given_row_fields(p2) == {
        "principles": ["helpfulness", "honesty", "truthfulness", "verbalized_calibration"],
        "system_prompts": [UF_SYSTEM[k] for k in ("helpfulness", "honesty", "truthfulness", "verbalized_calibration")],
        "generations": [g.text for g in p2.given],
        "generation_models": ["alpaca-7b", "gpt-4", "llama-2-13b-chat", "wizardlm-7b"],
    }


def test_ultrafeedback_parquet_and_jsonl_give_the_same_prompts(tmp_path, load_rejudge):
    from_parquet = load_rejudge(write_uf(tmp_path / "a.parquet")).prompts
    assert from_parquet == load_rejudge(write_uf(tmp_path / "a.jsonl")).prompts


def test_ultrafeedback_limit_counts_judgeable_prompts(tmp_path, load_rejudge):
    report = load_rejudge(write_uf(tmp_path / "uf.jsonl"), "dataset.limit=2")
    assert [p.instruction for p in report.prompts] == [u["instruction"] for u in UF_PROMPTS[:2]]


def test_ultrafeedback_raw_release_quirks(tmp_path, load_rejudge):
    """An annotation left as an empty list (GPT-4's reply never parsed), a missing overall_score, a 0 rating."""
    comps = [{"model": "m1", "principle": "helpfulness", "custom_system_prompt": "Be helpful.",
              "response": "First answer.", "overall_score": None,
              "annotations": {"instruction_following": [], "honesty": {"Rating": "0", "Rationale": "?"},
                              "truthfulness": [{"Rating": "4", "Rationale": "ok"}], "helpfulness": None}},
             {"model": None, "principle": "", "custom_system_prompt": None, "response": "Second answer.",
              "overall_score": "6", "annotations": {}}]
    rows = [{"source": "sharegpt", "instruction": "Hi?", "completions": comps}]
    report = load_rejudge(write(tmp_path / "raw.jsonl", rows))
    assert report.prompts[0].given == (
        GivenCompletion("First answer.", "m1", "helpfulness", "Be helpful.",
                        {"instruction_following": None, "honesty": 0.0, "truthfulness": 4.0, "helpfulness": None,
                         "critique": None}),
        GivenCompletion("Second answer.", "unknown", None, None,
                        {"instruction_following": None, "honesty": None, "truthfulness": None, "helpfulness": None,
                         "critique": 6.0}),
    )


def test_ultrafeedback_explicit_layout_without_completions_is_an_error(tmp_path, load_rejudge):
    with pytest.raises(ConfigError) as info:
        load_rejudge(write(tmp_path / "p.jsonl", ROWS), "dataset.completions=ultrafeedback")
    message = str(info.value)
    assert "no column 'completions' for dataset.completions=ultrafeedback" in message
    assert "prompt_id, source, instruction" in message


def test_auto_without_completions_names_the_fix(tmp_path, load_rejudge):
    with pytest.raises(ConfigError) as info:
        load_rejudge(write(tmp_path / "p.jsonl", ROWS))
    assert "holds no completions" in str(info.value)
    assert "dataset.columns.responses=NAME" in str(info.value)


def test_a_hub_dataset_reads_its_local_copy_from_dataset_path(tmp_path, compose):
    """dataset.path on a hub dataset (here: openbmb/UltraFeedback's prompts) reads the file instead of the hub."""
    cfg = compose(["dataset=ultrafeedback", f"dataset.path={write_uf(tmp_path / 'uf.parquet')}"])
    report = load_prompts(cfg.dataset)
    assert report.layout is None  # prompts only: the pool writes the completions
    p1, p2, p3 = (u["instruction"] for u in UF_PROMPTS)
    assert [p.instruction for p in report.prompts] == [p1, p2, "Name a prime number.", p3]  # one response is enough
    assert all(p.given == () for p in report.prompts)
    assert (report.skipped_empty, report.skipped_duplicate, report.skipped_few_completions) == (1, 1, 0)


# ---- an earlier run of ours ----


def run_rows() -> list[dict[str, Any]]:
    """rated.parquet rows in the README's layout: a judged row, a row whose honesty reply never parsed, and a row
    left with one generation (its other generation failed)."""

    def row(pid, index, instruction, gens, models, principles, systems, ratings, status):
        return {
            "prompt_id": pid, "prompt_index": index, "source": "flan", "instruction": instruction,
            "principles": principles, "system_prompts": systems, "generations": gens, "generation_models": models,
            "judge_model": "tiny_judge", "ratings": ratings,
            "rationales": {a: [None if v is None else "why" for v in vs] for a, vs in ratings.items()},
            "types": {a: [[] for _ in vs] for a, vs in ratings.items()},
            "judge_order": {a: list(range(len(vs))) for a, vs in ratings.items()},
            "parse_status": status, "judge_raw": {a: ["raw"] for a in ratings},
        }

    return [
        row("id-7", 7, "Say hi.", ["Hi!", "Hello there."], ["tiny_a", "tiny_b"], ["helpfulness", None],
            ["Be helpful.", None], {"honesty": [None, 4], "helpfulness": [5, 2]},
            {"honesty": "ok", "helpfulness": "ok"}),
        row("id-9", 9, "Count to 3.", ["1 2 3", "one two", "1, 2, 3"], ["tiny_c", "tiny_a", "tiny_b"],
            [None, None, "honesty"], [None, None, "Be honest."],
            {"honesty": [None, None, None], "helpfulness": [4, 1, 4]},
            {"honesty": "failed after 3 attempts: no rating", "helpfulness": "ok"}),
        row("id-11", 11, "Name a colour.", ["Red."], ["tiny_d"], [None], [None], {"honesty": [3], "helpfulness": [3]},
            {"honesty": "ok", "helpfulness": "ok"}),
    ]


def write_run(run_dir: Path) -> Path:
    from datasets import Dataset

    run_dir.mkdir(parents=True)
    Dataset.from_list(run_rows()).to_parquet(str(run_dir / "rated.parquet"))
    (run_dir / "summary.json").write_text("{}")
    return run_dir


EXPECTED_RUN = [
    Prompt("id-7", "flan", "Say hi.", index=0, given=(
        GivenCompletion("Hi!", "tiny_a", "helpfulness", "Be helpful.", {"honesty": None, "helpfulness": 5.0}),
        GivenCompletion("Hello there.", "tiny_b", None, None, {"honesty": 4.0, "helpfulness": 2.0}))),
    Prompt("id-9", "flan", "Count to 3.", index=1, given=(
        GivenCompletion("1 2 3", "tiny_c", None, None, {"honesty": None, "helpfulness": 4.0}),
        GivenCompletion("one two", "tiny_a", None, None, {"honesty": None, "helpfulness": 1.0}),
        GivenCompletion("1, 2, 3", "tiny_b", "honesty", "Be honest.", {"honesty": None, "helpfulness": 4.0}))),
]


@pytest.mark.parametrize("target", ["dir", "file"])
def test_a_run_dir_is_judged_again_with_its_ratings_as_the_reference(tmp_path, load_rejudge, target):
    run_dir = write_run(tmp_path / "runs" / "12-00-00_demo")
    report = load_rejudge(run_dir if target == "dir" else run_dir / "rated.parquet")

    assert report.layout == "run"
    assert report.prompts == EXPECTED_RUN  # the run's prompt ids are kept
    assert (report.rows, report.skipped_few_completions, report.dropped_empty_completions) == (3, 1, 0)


def test_a_directory_without_rated_parquet_is_an_error(tmp_path, load_rejudge):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError) as info:
        load_rejudge(tmp_path / "empty")
    assert f"dataset.path={tmp_path / 'empty'} is a directory without rated.parquet" in str(info.value)


# ---- any dataset with a list column of responses ----

MAPPED = [
    {"question": "Best pet?", "outputs": ["A cat.", "A dog.", "  "], "generators": ["m-a", "m-b", "m-c"],
     "gpt4_honesty": [4, "N/A", 2], "gpt4_help": ["5", None, 1]},
    {"question": "Capital of France?", "outputs": ["Paris.", "Lyon."], "generators": ["m-b", ""],
     "gpt4_honesty": [5, 1], "gpt4_help": [5.0, 2.5]},
    {"question": "Only one?", "outputs": ["Yes."], "generators": ["m-a"], "gpt4_honesty": [3], "gpt4_help": [3]},
]
MAPPING = ("dataset.columns.instruction=question", "dataset.columns.responses=outputs",
           "dataset.columns.models=generators", "dataset.source=mine",
           "dataset.reference.honesty=gpt4_honesty", "dataset.reference.helpfulness=gpt4_help")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_mapped_list_column_of_responses(tmp_path, load_rejudge, suffix):
    rows = MAPPED if suffix == ".jsonl" else [  # parquet columns hold one type: the ratings as strings
        r | {"gpt4_honesty": [None if v is None else str(v) for v in r["gpt4_honesty"]],
             "gpt4_help": [None if v is None else str(v) for v in r["gpt4_help"]]} for r in MAPPED]
    report = load_rejudge(write(tmp_path / f"mapped{suffix}", rows), *MAPPING)

    assert report.layout == "columns"
    assert [(p.source, p.instruction) for p in report.prompts] == [("mine", "Best pet?"),
                                                                   ("mine", "Capital of France?")]
    assert report.prompts[0].given == (
        GivenCompletion("A cat.", "m-a", reference={"honesty": 4.0, "helpfulness": 5.0}),
        GivenCompletion("A dog.", "m-b", reference={"honesty": None, "helpfulness": None}),
    )  # the whitespace-only third response is dropped
    assert report.prompts[1].given == (
        GivenCompletion("Paris.", "m-b", reference={"honesty": 5.0, "helpfulness": 5.0}),
        GivenCompletion("Lyon.", "unknown", reference={"honesty": 1.0, "helpfulness": 2.5}),
    )
    assert (report.skipped_few_completions, report.dropped_empty_completions) == (1, 1)


def test_a_mapped_list_column_alone(tmp_path, load_rejudge):
    report = load_rejudge(write(tmp_path / "m.jsonl", MAPPED), "dataset.columns.instruction=question",
                          "dataset.columns.responses=outputs")
    assert report.prompts[1].given == (GivenCompletion("Paris."), GivenCompletion("Lyon."))


@pytest.mark.parametrize(
    ("change", "needles"),
    [
        pytest.param({"outputs": "A cat."}, ["row 1", "dataset.columns.responses=outputs must be a list column", "str"],
                     id="not-a-list"),
        pytest.param({"generators": ["m-a"]},
                     ["row 1", "dataset.columns.models=generators has 1 values for 3 responses"],
                     id="models-too-short"),
        pytest.param({"gpt4_honesty": [1, 2]}, ["row 1", "dataset.reference.honesty=gpt4_honesty has 2 values"],
                     id="ratings-too-short"),
    ],
)
def test_a_mapped_list_column_that_does_not_fit(tmp_path, load_rejudge, change, needles):
    rows = [MAPPED[0] | change, *MAPPED[1:]]
    with pytest.raises(ConfigError) as info:
        load_rejudge(write(tmp_path / "m.jsonl", rows), *MAPPING)
    for needle in needles:
        assert needle in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["dataset.columns.responses=answers"], "no column 'answers' for dataset.completions=columns"),
        (["dataset.columns.responses=outputs", "dataset.reference.honesty=gpt4_honest"],
         "no column for dataset.reference.honesty=gpt4_honest"),
        (["dataset.columns.responses=outputs", "dataset.columns.models=model"],
         "no column for dataset.columns.models=model"),
    ],
)
def test_a_mapped_column_the_data_lacks_is_named(tmp_path, load_rejudge, overrides, needle):
    with pytest.raises(ConfigError) as info:
        load_rejudge(write(tmp_path / "m.jsonl", MAPPED), "dataset.columns.instruction=question", *overrides)
    assert needle in str(info.value)
    assert "question, outputs, generators" in str(info.value)
