"""``uf-experiments-compare`` on hand-written run dirs: exact table values, the plots' inputs, valid PNGs, errors."""

from __future__ import annotations

import csv
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from uf_experiments import compare

REPO = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREFS_SCHEMA = pa.schema([("prompt_id", pa.string()), ("score_chosen", pa.float64()), ("score_rejected", pa.float64())])


def make_run(path: Path, overrides: list[str], summary: dict[str, Any], rated: list[dict] | None = None,
             prefs: list[tuple[float, float]] | None = ()) -> Path:
    """A run dir as runner.py writes it, reduced to what compare reads (``prefs=None``: no preferences.parquet)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (path / "summary.json").write_text(json.dumps(summary))
    if rated is not None:
        pq.write_table(pa.Table.from_pylist(rated), path / "rated.parquet")
    if prefs is None:
        return path
    pq.write_table(pa.Table.from_pylist([{"prompt_id": f"p{i}", "score_chosen": c, "score_rejected": r}
                                         for i, (c, r) in enumerate(prefs)], schema=PREFS_SCHEMA),
                   path / "preferences.parquet")
    return path


def summary(pairs: int, tie_rate: float | None, mean_margin: float | None, parse_failure_rate: float, usd: float,
            usd_per_pair: float | None, flips: dict[str, float | None] | None = None) -> dict[str, Any]:
    metrics = {"parse_failure_rate": parse_failure_rate, "tie_rate": tie_rate, "mean_margin": mean_margin,
               "usd_per_pair": usd_per_pair, "mean_rating_by_model": {}}
    if flips is not None:
        metrics["flip_rate_by_aspect"] = flips
    return {"counts": {"pairs": pairs, "ties": 1, "prompts": 4}, "metrics": metrics,
            "cost_usd": {"generation": usd / 2, "judge": usd / 2, "total": usd, "saved_by_cache": 0.0}}


def rated_row(models: list[str], ratings: dict[str, list]) -> dict[str, Any]:
    return {"prompt_id": "x", "generations": [f"text {m}" for m in models], "generation_models": models,
            "ratings": ratings}


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Four jobs named as Hydra names them, plus things that are not runs (a file, a dir without summary.json)."""
    root = tmp_path / "sweep"
    make_run(root / "0_pool.size=2,sampling.n=2", ["pool.size=2", "sampling.n=2"],
             summary(3, 0.25, 1.5, 0.1, 0.006, 0.002),
             rated=[rated_row(["m_a", "m_b"], {"honesty": [5, 3], "helpfulness": [4, None], "critique": [9, 2]}),
                    rated_row(["m_b", "m_a"], {"honesty": [None, 1], "helpfulness": [2, 2], "critique": [7, 7]})],
             prefs=[(5.0, 3.0), (4.5, 2.0), (3.0, 3.0)])
    make_run(root / "1_pool.size=2,sampling.n=1", ["pool.size=2", "sampling.n=1"],
             summary(0, None, None, 0.0, 0.004, None),
             rated=[rated_row(["m_a"], {"honesty": [4], "helpfulness": [4], "critique": [5]})])
    flips = {"honesty": 0.2, "helpfulness": 0.4, "truthfulness": None}  # mean over the aspects that have one: 0.3
    make_run(root / "2_pool.size=10,sampling.n=2,+judge.swap=true",
             ["pool.size=10", "sampling.n=2", "+judge.swap=true"],
             summary(4, 0.0, 2.25, 0.0, 0.006, 0.0015, flips=flips),
             rated=[rated_row(["m_c", "m_a"], {"honesty": [1, 5], "helpfulness": [3, 3], "critique": [1, 10]})],
             prefs=[(4.0, 1.0), (3.0, 1.5), (5.0, 3.0), (2.5, 0.0)])
    make_run(root / "10_pool.size=3,sampling.n=2", ["pool.size=3", "sampling.n=2"],
             summary(2, 0.5, 0.5, 0.25, 0.0, 0.0),  # no rated.parquet: left out of the rating plot
             prefs=[(3.0, 2.5), (3.5, 3.0)])
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / ".submitit").mkdir()
    return root


HEADER = ["run", "pool.size", "sampling.n", "judge.swap", "pairs", "tie_rate", "mean_margin", "parse_failure_rate",
          "flip_rate", "usd_total", "usd_per_pair"]
# Sorted by pool.size as a number (2, 2, 3, 10), then sampling.n; empty = none (no pairs, no swap, not overridden).
EXPECTED = [
    ["1_pool.size=2,sampling.n=1", "2", "1", "", "0", "", "", "0", "", "0.004", ""],
    ["0_pool.size=2,sampling.n=2", "2", "2", "", "3", "0.25", "1.5", "0.1", "", "0.006", "0.002"],
    ["10_pool.size=3,sampling.n=2", "3", "2", "", "2", "0.5", "0.5", "0.25", "", "0", "0"],
    ["2_pool.size=10,sampling.n=2,+judge.swap=true", "10", "2", "true", "4", "0", "2.25", "0", "0.3", "0.006",
     "0.0015"],
]


def test_find_runs_in_a_sweep_dir_in_job_order(sweep: Path):
    runs = compare.find_runs([sweep])
    assert [r.name for r in runs] == ["0_pool.size=2,sampling.n=2", "1_pool.size=2,sampling.n=1",
                                      "2_pool.size=10,sampling.n=2,+judge.swap=true", "10_pool.size=3,sampling.n=2"]


def test_find_runs_given_run_dirs_directly_without_duplicates(sweep: Path):
    a, b = sweep / "1_pool.size=2,sampling.n=1", sweep / "10_pool.size=3,sampling.n=2"
    assert compare.find_runs([b, a, b]) == [b, a]


@pytest.mark.parametrize("name", ["empty", "missing"])
def test_find_runs_error_names_the_path(tmp_path: Path, name: str):
    if name == "empty":
        (tmp_path / name / "not-a-run").mkdir(parents=True)
    with pytest.raises(compare.CompareError, match=f"{name}: no"):
        compare.find_runs([tmp_path / name])


def test_read_overrides(sweep: Path):
    assert compare.read_overrides(sweep / "2_pool.size=10,sampling.n=2,+judge.swap=true") == {
        "pool.size": "10", "sampling.n": "2", "judge.swap": "true"}


def test_collect_rows_sorted_by_override_values(sweep: Path):
    rows = compare.collect(compare.find_runs([sweep]))
    header, records = compare.table(rows)
    assert header == HEADER
    assert [r["run"] for r in rows] == [e[0] for e in EXPECTED]
    assert records[3][4:] == [4, 0.0, 2.25, 0.0, 0.3, 0.006, 0.0015]  # typed values before formatting
    assert records[0][3:] == [None, 0, None, None, 0.0, None, 0.004, None]
    assert compare.varying_keys(rows) == ["pool.size", "sampling.n", "judge.swap"]


def test_write_table_csv_and_markdown(sweep: Path, tmp_path: Path):
    rows = compare.collect(compare.find_runs([sweep]))
    md = compare.write_table(rows, tmp_path / "out")
    with (tmp_path / "out" / "compare.csv").open(newline="") as f:
        assert list(csv.reader(f)) == [HEADER, *EXPECTED]
    lines = (tmp_path / "out" / "compare.md").read_text().splitlines()
    assert md.splitlines() == lines
    assert lines[0] == ("| run | pool.size | sampling.n | judge.swap | pairs | tie_rate | mean_margin"
                        " | parse_failure_rate | flip_rate | usd_total | usd_per_pair |")
    assert lines[1] == "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| 1_pool.size=2,sampling.n=1 | 2 | 1 |  | 0 |  |  | 0 |  | 0.004 |  |"
    assert lines[5] == ("| 2_pool.size=10,sampling.n=2,+judge.swap=true | 10 | 2 | true | 4 | 0 | 2.25 | 0 | 0.3"
                        " | 0.006 | 0.0015 |")
    assert len(lines) == 2 + len(EXPECTED)


def test_rating_counts_per_aspect_pooled_over_runs_without_critique(sweep: Path):
    counts, aspects = compare.rating_counts(compare.collect(compare.find_runs([sweep])))
    assert aspects == ["honesty", "helpfulness"]  # critique (1-10) is not pooled with the 1-5 aspects
    assert counts == {
        "m_a": {5: 2, 4: 3, 1: 1, 2: 1, 3: 1},
        "m_b": {3: 1, compare.NO_RATING: 2, 2: 1},
        "m_c": {1: 1, 3: 1},
    }


def test_rating_counts_critique_alone_is_used(tmp_path: Path):
    run = make_run(tmp_path / "r", [], summary(0, None, None, 0.0, 0.0, None),
                   rated=[rated_row(["m_a", "m_b"], {"critique": [9, None]})])
    counts, aspects = compare.rating_counts(compare.collect([run]))
    assert (counts, aspects) == ({"m_a": {9: 1}, "m_b": {compare.NO_RATING: 1}}, ["critique"])


def test_margins(sweep: Path):
    rows = {r["run"]: r for r in compare.collect(compare.find_runs([sweep]))}
    assert compare.margins(rows["0_pool.size=2,sampling.n=2"]) == [2.0, 2.5, 0.0]
    assert compare.margins(rows["2_pool.size=10,sampling.n=2,+judge.swap=true"]) == [3.0, 1.5, 2.0, 2.5]
    assert compare.margins(rows["10_pool.size=3,sampling.n=2"]) == [0.5, 0.5]
    assert compare.margins(rows["1_pool.size=2,sampling.n=1"]) == []
    (rows["1_pool.size=2,sampling.n=1"]["path"] / "preferences.parquet").unlink()
    assert compare.margins(rows["1_pool.size=2,sampling.n=1"]) is None


@pytest.mark.parametrize(("values", "want"), [
    ([2.0, 2.5, 0.0], [-0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75]),  # centred on a 0.5 grid
    ([1.0], [0.5, 1.5]),
    ([], [-0.5, 0.5]),
])
def test_bins(values, want):
    assert compare._bins(values) == pytest.approx(want)


def assert_png(path: Path, min_width: int = 600) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 10_000, (path, len(data))
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= min_width and height >= 300, (path, width, height)


def test_plots_are_pngs(sweep: Path, tmp_path: Path):
    (sweep / "1_pool.size=2,sampling.n=1" / "preferences.parquet").unlink()  # a missing file is a note, not a crash
    rows = compare.collect(compare.find_runs([sweep]))
    paths = compare.plot_all(rows, tmp_path / "plots")
    assert [p.name for p in paths] == list(compare.PLOTS)
    for p in paths:
        assert_png(p)


def test_usd_plot_without_pool_size_is_one_bar_per_run(tmp_path: Path):
    runs = [make_run(tmp_path / f"{i}_seed={i}", [f"seed={i}"],
                     summary(i, 0.1, 1.0, 0.0, 0.01 * i, 0.01 if i else None)) for i in range(3)]
    assert_png(compare.plot_usd_per_pair(compare.collect(runs), tmp_path / "usd.png"))


def test_main_writes_everything_and_prints_markdown(sweep: Path, capsys: pytest.CaptureFixture[str]):
    assert compare.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert (sweep / "compare" / "compare.md").read_text() in out
    written = sorted(p.name for p in (sweep / "compare").iterdir())
    assert written == sorted(["compare.csv", "compare.md", *compare.PLOTS])


@pytest.mark.parametrize(("args", "message"), [
    (["EMPTY"], "EMPTY: no run dirs found (neither it nor any subdirectory has a summary.json)"),
    (["RUN", "RUN2"], "--out DIR is required unless the only argument is a sweep dir"),
    (["RUN"], "--out DIR is required"),
])
def test_main_errors_are_one_line_with_exit_code_2(sweep: Path, tmp_path: Path, capsys, args, message):
    (tmp_path / "EMPTY").mkdir()
    where = {"EMPTY": str(tmp_path / "EMPTY"), "RUN": str(sweep / "0_pool.size=2,sampling.n=2"),
             "RUN2": str(sweep / "1_pool.size=2,sampling.n=1")}
    assert compare.main([where[a] for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("uf-experiments-compare: error: ")
    assert message.replace("EMPTY", where["EMPTY"]) in err


def test_several_run_dirs_with_out(sweep: Path, tmp_path: Path, capsys):
    runs = [sweep / "0_pool.size=2,sampling.n=2", sweep / "10_pool.size=3,sampling.n=2"]
    assert compare.main([*map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    with (tmp_path / "cmp" / "compare.csv").open(newline="") as f:
        got = list(csv.reader(f))
    assert got == [["run", "pool.size", "sampling.n", *compare.METRIC_COLUMNS], EXPECTED[1][:3] + EXPECTED[1][4:],
                   EXPECTED[2][:3] + EXPECTED[2][4:]]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uf_experiments.compare", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=120)


@pytest.mark.slow  # a subprocess CLI
def test_module_end_to_end(sweep: Path):
    proc = run_module(str(sweep))
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "compare" / "compare.md").read_text()
    assert proc.stdout.startswith(md)
    assert f"4 runs -> {sweep / 'compare'}/" in proc.stdout
    for name in compare.PLOTS:
        assert_png(sweep / "compare" / name)


@pytest.mark.slow  # a subprocess CLI
def test_module_no_runs_exit_code_2(tmp_path: Path):
    proc = run_module(str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr == (f"uf-experiments-compare: error: {tmp_path}: no run dirs found (neither it nor any "
                           "subdirectory has a summary.json)\n")
    assert proc.stdout == ""
