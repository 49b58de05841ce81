"""uf_experiments.data: the demo set, local files in every supported format, and the shared row rules of
to_prompts (column mapping, empty / duplicate skipping with counts, stable ids, source fallback)."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from uf_experiments.config import ConfigError
from uf_experiments.data import load_prompts, to_prompts
from uf_experiments.records import Prompt

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
    report = load_prompts(compose([]).dataset)

    assert len(report.prompts) >= 60
    assert {p.source for p in report.prompts} == SOURCES
    assert min(Counter(p.source for p in report.prompts).values()) >= 10
    assert len({p.prompt_id for p in report.prompts}) == len(report.prompts)
    assert report.rows == len(report.prompts)
    assert (report.skipped_empty, report.skipped_duplicate) == (0, 0)
    assert all(p.instruction == p.instruction.strip() and p.instruction for p in report.prompts)


def test_demo_limit_keeps_the_first_prompts(compose):
    everything = load_prompts(compose([]).dataset).prompts
    report = load_prompts(compose(["dataset.limit=5"]).dataset)

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


def test_a_local_directory_or_unparseable_file_is_one_line(tmp_path, load_local):
    with pytest.raises(ConfigError, match=r"^dataset.path=.* is not a file: pass a .jsonl"):
        load_local(tmp_path)
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

    from uf_experiments.data import hub_error

    path = write(tmp_path / "p.jsonl", [{"instruction": "A"}])
    with pytest.raises(ValueError) as info:
        load_dataset("json", data_files=str(path), split="tst")
    assert hub_error("me/data", None, "tst", info.value) == (
        "dataset.split=tst of me/data: Unknown split \"tst\". Should be one of ['train']. (fix dataset.split)")


def test_check_inputs_checks_the_cache_path_unless_planning(tmp_path, compose):
    from uf_experiments.data import check_inputs

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
