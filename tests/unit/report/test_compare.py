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

from uf_experiments.cli import compare as compare_cli
from uf_experiments.metrics import cell as metrics_cell
from uf_experiments.metrics.cell import Costs
from uf_experiments.report import numbers, plots
from uf_experiments.report import runs as report_runs
from uf_experiments.report import sweep as report_sweep
from uf_experiments.report import table as report_table

REPO = Path(__file__).resolve().parents[3]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PREFS_SCHEMA = pa.schema([("prompt_id", pa.string()), ("score_chosen", pa.float64()), ("score_rejected", pa.float64())])


def make_run(path: Path, overrides: list[str], summary: dict[str, Any], rated: list[dict] | None = None,
             prefs: list[tuple[float, float]] | None = ()) -> Path:
    """A run dir as a run writes it, reduced to what compare reads (``prefs=None``: no preferences.parquet)."""
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
            usd_per_pair: float | None, flips: dict[str, float | None] | None = None, *, paid: float | None = None,
            judge_usd: float = 0.0, judged: int = 0, stopped: str | None = None,
            agreement: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """A summary.json in the attributed-cost shape (HELPERS.md): ``usd`` is ``cost_usd.total``, ``paid`` what the
    run spent (default: all of it)."""
    paid = usd if paid is None else paid
    metrics: dict[str, Any] = {"parse_failure_rate": parse_failure_rate, "tie_rate": tie_rate,
                               "mean_margin": mean_margin, "usd_per_pair": usd_per_pair, "mean_rating_by_model": {}}
    if flips is not None:
        metrics["flip_rate_by_aspect"] = flips
    if agreement is not None:
        metrics["agreement"] = agreement
    gen_usd = round(usd - judge_usd, 6)
    return {"stopped": stopped, "counts": {"pairs": pairs, "ties": 1, "prompts": 4, "judged": judged,
                                           "engine_calls": 10, "cache_hits": 2},
            "metrics": metrics,
            "cost_usd": {"total": usd, "paid": paid, "saved_by_cache": round(usd - paid, 6),
                         "generation": {"total": gen_usd, "paid": min(paid, gen_usd), "saved_by_cache": 0.0},
                         "judge": {"total": judge_usd, "paid": 0.0, "saved_by_cache": 0.0},
                         "priced_from_tokens": 0}}


def old_summary(pairs: int, usd: float, cache_hits: int, judge_hits: int = 0, judge_usd: float = 0.0,
                judged: int = 4) -> dict[str, Any]:
    """A summary.json written before costs were attributed: $ per stage as numbers, cache hits at $0."""
    return {"stopped": None,
            "counts": {"pairs": pairs, "prompts": 4, "judged": judged, "engine_calls": 5, "cache_hits": cache_hits},
            "judge": {"cache_hits": judge_hits},
            "metrics": {"usd_per_pair": round(usd / pairs, 6) if pairs else None},
            "cost_usd": {"generation": round(usd - judge_usd, 6), "judge": judge_usd, "total": usd,
                         "saved_by_cache": 0.001}}


def rated_row(models: list[str], ratings: dict[str, list]) -> dict[str, Any]:
    return {"prompt_id": "x", "generations": [f"text {m}" for m in models], "generation_models": models,
            "ratings": ratings}


AGREEMENT = {"honesty": {"n": 8, "exact": 0.25, "within_1": 0.875, "spearman": 0.41, "kappa_quadratic": 0.5,
                         "pairwise_accuracy": 0.75}}
STOP = "budget_usd=0 reached: 3 requests not sent"
SKIP = "sampling.n=5 must be between 1 and pool.size=4 (n distinct models per prompt)"


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Four jobs named as Hydra names them (one stopped, one with a summary from before attributed costs), a cell
    the sweep skipped, plus things that are not runs (a file, a dir without summary.json)."""
    root = tmp_path / "sweep"
    make_run(root / "0_pool.size=2,sampling.n=2", ["pool.size=2", "sampling.n=2"],
             summary(3, 0.25, 1.5, 0.1, 0.006, 0.002, judge_usd=0.004, judged=8),
             rated=[rated_row(["m_a", "m_b"], {"honesty": [5, 3], "helpfulness": [4, None], "critique": [9, 2]}),
                    rated_row(["m_b", "m_a"], {"honesty": [None, 1], "helpfulness": [2, 2], "critique": [7, 7]})],
             prefs=[(5.0, 3.0), (4.5, 2.0), (3.0, 3.0)])
    make_run(root / "1_pool.size=2,sampling.n=1", ["pool.size=2", "sampling.n=1"],
             summary(0, None, None, 0.0, 0.004, None, paid=0.0),  # fully cached: paid nothing, its work cost $0.004
             rated=[rated_row(["m_a"], {"honesty": [4], "helpfulness": [4], "critique": [5]})])
    flips = {"honesty": 0.2, "helpfulness": 0.4, "truthfulness": None}  # mean over the aspects that have one: 0.3
    make_run(root / "2_pool.size=10,sampling.n=2,+judge.swap=true",
             ["pool.size=10", "sampling.n=2", "+judge.swap=true"],
             summary(4, 0.0, 2.25, 0.0, 0.006, 0.0015, flips=flips, paid=0.001, judge_usd=0.003, judged=6,
                     agreement=AGREEMENT),
             rated=[rated_row(["m_c", "m_a"], {"honesty": [1, 5], "helpfulness": [3, 3], "critique": [1, 10]})],
             prefs=[(4.0, 1.0), (3.0, 1.5), (5.0, 3.0), (2.5, 0.0)])
    old = old_summary(2, 0.0, cache_hits=0)  # before attributed costs, nothing cached: its total is known
    old.update(stopped=STOP, metrics={"tie_rate": 0.5, "mean_margin": 0.5, "parse_failure_rate": 0.25,
                                      "usd_per_pair": 0.0})
    make_run(root / "10_pool.size=3,sampling.n=2", ["pool.size=3", "sampling.n=2"], old,
             prefs=[(3.0, 2.5), (3.5, 3.0)])  # no rated.parquet: left out of the rating plot
    (root / "skipped_cells.json").write_text(json.dumps([{"overrides": ["pool.size=4", "sampling.n=5"],
                                                           "reason": SKIP}]))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    (root / ".submitit").mkdir()
    return root


HEADER = ["run", "pool.size", "sampling.n", "judge.swap", "status", "pairs", "tie_rate", "mean_margin",
          "parse_failure_rate", "flip_rate", "agree_honesty_kappa", "agree_honesty_exact", "agree_honesty_pairwise",
          "usd_total", "usd_paid", "usd_per_pair", "pairs_per_usd", "usd_per_1k_judged"]
# Sorted by pool.size as a number (2, 2, 3, 4, 10), then sampling.n; empty = none (no pairs, no swap, not overridden).
# pairs_per_usd = pairs / usd_total; usd_per_1k_judged = judge $ total * 1000 / judged.
EXPECTED = [
    ["1_pool.size=2,sampling.n=1", "2", "1", "", "done", "0", "", "", "0", "", "", "", "", "0.004", "0", "", "0",
     ""],
    ["0_pool.size=2,sampling.n=2", "2", "2", "", "done", "3", "0.25", "1.5", "0.1", "", "", "", "", "0.006",
     "0.006", "0.002", "500", "0.5"],
    ["10_pool.size=3,sampling.n=2", "3", "2", "", f"stopped: {STOP}", "2", "0.5", "0.5", "0.25", "", "", "", "",
     "0", "0", "0", "", "0"],
    ["", "4", "5", "", f"skipped: {SKIP}", "", "", "", "", "", "", "", "", "", "", "", "", ""],
    ["2_pool.size=10,sampling.n=2,+judge.swap=true", "10", "2", "true", "done", "4", "0", "2.25", "0", "0.3", "0.5",
     "0.25", "0.75", "0.006", "0.001", "0.0015", "666.6667", "0.5"],
]


def test_find_runs_in_a_sweep_dir_in_job_order(sweep: Path):
    runs = report_runs.find_runs([sweep])
    assert [r.name for r in runs] == ["0_pool.size=2,sampling.n=2", "1_pool.size=2,sampling.n=1",
                                      "2_pool.size=10,sampling.n=2,+judge.swap=true", "10_pool.size=3,sampling.n=2"]


def test_find_runs_given_run_dirs_directly_without_duplicates(sweep: Path):
    a, b = sweep / "1_pool.size=2,sampling.n=1", sweep / "10_pool.size=3,sampling.n=2"
    assert report_runs.find_runs([b, a, b]) == [b, a]


@pytest.mark.parametrize("name", ["empty", "missing"])
def test_find_runs_error_names_the_path(tmp_path: Path, name: str):
    if name == "empty":
        (tmp_path / name / "not-a-run").mkdir(parents=True)
    with pytest.raises(report_runs.CompareError, match=f"{name}: no"):
        report_runs.find_runs([tmp_path / name])


def test_parse_overrides_leaves_out_paths_and_secrets():
    assert report_runs.parse_overrides(["pool.size=2", "++judge.swap=true", "~principles", "cache.path=/x",
                                    "hydra.run.dir=/y", "+pool.engine.api_key=sk-live"]) == {
        "pool.size": "2", "judge.swap": "true", "principles": "~"}


def test_read_overrides(sweep: Path):
    assert report_runs.read_overrides(sweep / "2_pool.size=10,sampling.n=2,+judge.swap=true") == {
        "pool.size": "10", "sampling.n": "2", "judge.swap": "true"}


def rows_of(sweep: Path) -> list[dict[str, Any]]:
    return report_runs.collect(report_runs.find_runs([sweep]), report_runs.find_skipped([sweep]))


def test_collect_rows_sorted_by_override_values(sweep: Path):
    rows = rows_of(sweep)
    header, records = report_table.table(rows)
    assert header == HEADER
    assert [r["run"] for r in rows] == [e[0] for e in EXPECTED]
    assert [r["status"] for r in rows] == ["done", "done", "stopped", "skipped", "done"]
    # typed values before formatting
    assert records[4][5:] == [4, 0.0, 2.25, 0.0, 0.3, 0.5, 0.25, 0.75, 0.006, 0.001, 0.0015, 666.6667, 0.5]
    assert records[0][4:] == ["done", 0, None, None, 0.0, None, None, None, None, 0.004, 0.0, None, 0.0, None]
    assert report_runs.varying_keys(rows) == ["pool.size", "sampling.n", "judge.swap"]


@pytest.mark.parametrize(("summary_json", "want"), [
    # attributed shape: the totals as written
    (summary(2, None, None, 0.0, 0.01, 0.005, paid=0.002, judge_usd=0.004),
     Costs(total=0.01, paid=0.002, judge_total=0.004, saved=0.008)),
    # before attributed costs, nothing from the cache: paid is the cost of the work
    (old_summary(2, 0.01, cache_hits=0, judge_usd=0.004), Costs(0.01, 0.01, 0.004, None)),
    # before attributed costs, generation cached: the work's total is unknown, the judge's is known
    (old_summary(2, 0.01, cache_hits=3, judge_hits=0, judge_usd=0.004), Costs(None, 0.01, 0.004, None, "x")),
    (old_summary(2, 0.01, cache_hits=3, judge_hits=1, judge_usd=0.004), Costs(None, 0.01, None, None, "x")),
])
def test_costs_attributed_and_older_summaries(summary_json, want):
    got = metrics_cell.costs(summary_json)
    assert (got.total, got.paid, got.judge_total, got.saved) == (want.total, want.paid, want.judge_total, want.saved)
    assert (got.note is None) == (want.note is None)
    if got.note:
        assert "3 of its requests came from the cache" in got.note


def test_an_older_summary_with_cache_hits_has_no_dollar_per_pair(tmp_path: Path):
    run = make_run(tmp_path / "r", ["pool.size=2"], old_summary(4, 0.008, cache_hits=3))
    (row,) = report_runs.collect([run])
    assert (row["usd_total"], row["usd_paid"], row["usd_per_pair"], row["pairs_per_usd"]) == (None, 0.008, None, None)
    assert report_table.notes([row]) == [f"r: {metrics_cell.costs(old_summary(4, 0.008, cache_hits=3)).note}"]


def test_write_table_csv_and_markdown(sweep: Path, tmp_path: Path):
    rows = rows_of(sweep)
    md = report_table.write_table(rows, tmp_path / "out")
    with (tmp_path / "out" / "compare.csv").open(newline="") as f:
        assert list(csv.reader(f)) == [HEADER, *EXPECTED]
    lines = (tmp_path / "out" / "compare.md").read_text().splitlines()
    assert md.splitlines() == lines
    assert lines[0] == "| " + " | ".join(HEADER) + " |"
    assert lines[1] == "| --- | --- | --- | --- | --- |" + " ---: |" * 13
    assert lines[2] == ("| 1_pool.size=2,sampling.n=1 | 2 | 1 |  | done | 0 |  |  | 0 |  |  |  |  | 0.004 | 0 |  | 0"
                        " |  |")
    assert lines[4] == ("| 10_pool.size=3,sampling.n=2 | 3 | 2 |  | stopped | 2 | 0.5 | 0.5 | 0.25 |  |  |  |  | 0 | 0"
                        " | 0 |  | 0 |")
    assert lines[5] == "|  | 4 | 5 |  | skipped |" + "  |" * 13
    assert lines[6] == ("| 2_… | 10 | 2 | true | done | 4 | 0 | 2.25 | 0 | 0.3 | 0.5 | 0.25 | 0.75 | 0.006 | 0.001"
                        " | 0.0015 | 666.6667 | 0.5 |")  # a long job name is cut to its number
    assert lines[7:] == ["", "Notes:",
                         "- pool.size=3, sampling.n=2 (10_pool.size=3,sampling.n=2) stopped before finishing its "
                         f"work: {STOP}",
                         f"- skipped cell pool.size=4, sampling.n=5: {SKIP}"]


def test_a_failed_job_and_cost_notes(tmp_path: Path):
    """A job stopped by bad input writes a summary.json with only why (cli.record_failure); cost notes from the
    summary (answers cached before costs were stored) are repeated under the table."""
    failed = make_run(tmp_path / "0_pool.size=9", ["pool.size=9"], {
        "experiment": "demo", "stopped": "pool.size=9 must be between 1 and 6", "exit_code": 2, "run_dir": "x"})
    noted = summary(2, 0.0, 1.0, 0.0, 0.01, 0.005)
    noted["cost_usd"]["notes"] = ["3 cached self-hosted answers had no stored cost: counted as $0 in total"]
    ok = make_run(tmp_path / "1_pool.size=2", ["pool.size=2"], noted)
    rows = report_runs.collect([failed, ok])
    assert [(r["status"], r["pairs"], r["usd_total"]) for r in rows] == [("done", 2, 0.01), ("failed", None, None)]
    assert report_table.table(rows)[1][1][2] == "failed: pool.size=9 must be between 1 and 6"
    assert report_table.notes(rows) == [
        "pool.size=2: 3 cached self-hosted answers had no stored cost: counted as $0 in total",
        "pool.size=9 (0_pool.size=9) failed before it ran: pool.size=9 must be between 1 and 6"]
    totals = numbers.grid_totals(rows)
    assert (totals["runs"], totals["done"], totals["failed"], totals["usd_total"]) == (2, 1, 1, 0.01)
    assert report_sweep.describe_totals(totals) == "2 runs (1 failed): 2 pairs, $0.0100 attributed, $0.0100 paid"


def test_markdown_lists_the_overrides_every_run_shares_above_the_table(tmp_path: Path):
    runs = [make_run(tmp_path / f"{i}_x", ["dataset.limit=6", f"pool.size={i + 2}", "judge=served"],
                     summary(2, 0.0, 1.0, 0.0, 0.01, 0.005)) for i in range(2)]
    skipped = [{"overrides": ["pool.size=9"], "reason": "no"}]  # gets the shared overrides too
    rows = report_runs.collect(runs, skipped)
    assert rows[2]["overrides"] == {"dataset.limit": "6", "pool.size": "9", "judge": "served"}
    lines = report_table.markdown(rows).splitlines()
    assert lines[0] == "Same in every run: dataset.limit=6 judge=served"
    assert lines[2].startswith("| run | pool.size | status | pairs |")


def test_grid_totals(sweep: Path):
    assert numbers.grid_totals(rows_of(sweep)) == {
        "cells": 5, "runs": 4, "done": 3, "stopped": 1, "failed": 0, "skipped": 1, "pairs": 9, "prompts": 16,
        "judged": 18,
        "engine_calls": 35, "cache_hits": 6, "usd_total": 0.016, "usd_paid": 0.007, "usd_saved_by_cache": 0.009,
        "runs_cost_unknown": 0}


def test_grid_totals_with_an_unknown_cost_is_none(tmp_path: Path):
    runs = [make_run(tmp_path / "a", [], old_summary(4, 0.008, cache_hits=3)),
            make_run(tmp_path / "b", [], summary(2, 0.0, 1.0, 0.0, 0.01, 0.005))]
    totals = numbers.grid_totals(report_runs.collect(runs))
    assert (totals["usd_total"], totals["usd_paid"], totals["usd_saved_by_cache"], totals["runs_cost_unknown"]) == (
        None, 0.018, None, 1)
    assert report_sweep.describe_totals(totals) == "2 runs: 6 pairs, $ unknown for 1 runs, $0.0180 paid"


@pytest.mark.parametrize("content", ["{not json", '{"overrides": []}', '[{"overrides": 3}]'])
def test_unreadable_skipped_cells_is_one_error(tmp_path: Path, content: str):
    (tmp_path / "skipped_cells.json").write_text(content)
    with pytest.raises(report_runs.CompareError, match="skipped_cells.json: unreadable"):
        report_runs.find_skipped([tmp_path])


def test_lines_against_pool_size_one_per_sampling_n(sweep: Path):
    lines = plots._lines(report_runs.ran(rows_of(sweep)))
    assert {k: [r["run"] for r in v] for k, v in lines.items()} == {
        "sampling.n=1": ["1_pool.size=2,sampling.n=1"],
        "sampling.n=2, judge.swap=true": ["2_pool.size=10,sampling.n=2,+judge.swap=true"],
        "sampling.n=2": ["0_pool.size=2,sampling.n=2", "10_pool.size=3,sampling.n=2"],
    }


def test_rating_counts_per_aspect_pooled_over_runs_without_critique(sweep: Path):
    counts, aspects = plots.rating_counts(report_runs.collect(report_runs.find_runs([sweep])))
    assert aspects == ["honesty", "helpfulness"]  # critique (1-10) is not pooled with the 1-5 aspects
    assert counts == {
        "m_a": {5: 2, 4: 3, 1: 1, 2: 1, 3: 1},
        "m_b": {3: 1, plots.NO_RATING: 2, 2: 1},
        "m_c": {1: 1, 3: 1},
    }


def test_rating_counts_critique_alone_is_used(tmp_path: Path):
    run = make_run(tmp_path / "r", [], summary(0, None, None, 0.0, 0.0, None),
                   rated=[rated_row(["m_a", "m_b"], {"critique": [9, None]})])
    counts, aspects = plots.rating_counts(report_runs.collect([run]))
    assert (counts, aspects) == ({"m_a": {9: 1}, "m_b": {plots.NO_RATING: 1}}, ["critique"])


def test_margins(sweep: Path):
    rows = {r["run"]: r for r in report_runs.collect(report_runs.find_runs([sweep]))}
    assert plots.margins(rows["0_pool.size=2,sampling.n=2"]) == [2.0, 2.5, 0.0]
    assert plots.margins(rows["2_pool.size=10,sampling.n=2,+judge.swap=true"]) == [3.0, 1.5, 2.0, 2.5]
    assert plots.margins(rows["10_pool.size=3,sampling.n=2"]) == [0.5, 0.5]
    assert plots.margins(rows["1_pool.size=2,sampling.n=1"]) == []
    (rows["1_pool.size=2,sampling.n=1"]["path"] / "preferences.parquet").unlink()
    assert plots.margins(rows["1_pool.size=2,sampling.n=1"]) is None


@pytest.mark.parametrize(("values", "want"), [
    ([2.0, 2.5, 0.0], [-0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75]),  # centred on a 0.5 grid
    ([1.0], [0.5, 1.5]),
    ([], [-0.5, 0.5]),
])
def test_bins(values, want):
    assert plots._bins(values) == pytest.approx(want)


def assert_png(path: Path, min_width: int = 600) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    assert len(data) > 10_000, (path, len(data))
    width, height = struct.unpack(">II", data[16:24])  # the IHDR chunk
    assert width >= min_width and height >= 300, (path, width, height)


def test_plots_are_pngs(sweep: Path, tmp_path: Path):
    (sweep / "1_pool.size=2,sampling.n=1" / "preferences.parquet").unlink()  # a missing file is a note, not a crash
    rows = rows_of(sweep)  # a skipped cell has no files: left out, named in the titles
    paths = plots.plot_all(rows, tmp_path / "plots")
    assert [p.name for p in paths] == list(plots.PLOTS)
    for p in paths:
        assert_png(p)


def test_cost_plots_without_pool_size_are_one_bar_per_run(tmp_path: Path):
    runs = [make_run(tmp_path / f"{i}_seed={i}", [f"seed={i}"],
                     summary(i, 0.1, 1.0, 0.0, 0.01 * i, 0.01 if i else None)) for i in range(3)]
    rows = report_runs.collect(runs)
    assert plots._lines(rows) is None
    assert_png(plots.plot_usd_per_pair(rows, tmp_path / "usd.png"))
    assert_png(plots.plot_pairs_per_usd(rows, tmp_path / "ppu.png"))


def test_cost_plots_when_every_run_cost_nothing(tmp_path: Path):
    runs = [make_run(tmp_path / f"{i}_pool.size={i + 2}", [f"pool.size={i + 2}"],
                     summary(3, 0.1, 1.0, 0.0, 0.0, 0.0)) for i in range(2)]
    rows = report_runs.collect(runs)
    assert [r["pairs_per_usd"] for r in rows] == [None, None]  # $0: nothing to divide by
    assert_png(plots.plot_pairs_per_usd(rows, tmp_path / "ppu.png"))
    assert_png(plots.plot_usd_per_pair(rows, tmp_path / "usd.png"))


def test_main_writes_everything_and_prints_markdown(sweep: Path, capsys: pytest.CaptureFixture[str]):
    assert compare_cli.main([str(sweep)]) == 0
    out = capsys.readouterr().out
    assert (sweep / "compare" / "compare.md").read_text() in out
    assert "4 runs (1 stopped), 1 cell skipped: 9 pairs, $0.0160 attributed, $0.0070 paid -> " in out
    written = sorted(p.name for p in (sweep / "compare").iterdir())
    assert written == sorted(["compare.csv", "compare.md", "totals.json", *plots.PLOTS])
    assert json.loads((sweep / "compare" / "totals.json").read_text()) == numbers.grid_totals(rows_of(sweep))


@pytest.mark.parametrize(("args", "message"), [
    (["EMPTY"], "EMPTY: no run dirs found (neither it nor any subdirectory has a summary.json)"),
    (["RUN", "RUN2"], "--out DIR is required unless the only argument is a sweep dir"),
    (["RUN"], "--out DIR is required"),
])
def test_main_errors_are_one_line_with_exit_code_2(sweep: Path, tmp_path: Path, capsys, args, message):
    (tmp_path / "EMPTY").mkdir()
    where = {"EMPTY": str(tmp_path / "EMPTY"), "RUN": str(sweep / "0_pool.size=2,sampling.n=2"),
             "RUN2": str(sweep / "1_pool.size=2,sampling.n=1")}
    assert compare_cli.main([where[a] for a in args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("uf-experiments-compare: error: ")
    assert message.replace("EMPTY", where["EMPTY"]) in err


def test_several_run_dirs_with_out(sweep: Path, tmp_path: Path, capsys):
    runs = [sweep / "0_pool.size=2,sampling.n=2", sweep / "10_pool.size=3,sampling.n=2"]
    assert compare_cli.main([*map(str, runs), "--out", str(tmp_path / "cmp")]) == 0
    with (tmp_path / "cmp" / "compare.csv").open(newline="") as f:
        got = list(csv.reader(f))
    without = [i for i, c in enumerate(HEADER) if c == "judge.swap" or c.startswith("agree_")]
    assert got == [["run", "pool.size", "sampling.n", "status", *metrics_cell.METRIC_COLUMNS],
                   *([v for i, v in enumerate(e) if i not in without] for e in EXPECTED[1:3])]


def run_module(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "uf_experiments.cli.compare", *args], capture_output=True,
                          text=True, cwd=REPO, timeout=120)


@pytest.mark.slow  # a subprocess CLI
def test_module_end_to_end(sweep: Path):
    proc = run_module(str(sweep))
    assert proc.returncode == 0, proc.stderr
    md = (sweep / "compare" / "compare.md").read_text()
    assert proc.stdout.startswith(md)
    assert f"9 pairs, $0.0160 attributed, $0.0070 paid -> {sweep / 'compare'}/" in proc.stdout
    for name in plots.PLOTS:
        assert_png(sweep / "compare" / name)


@pytest.mark.slow  # a subprocess CLI
def test_module_no_runs_exit_code_2(tmp_path: Path):
    proc = run_module(str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr == (f"uf-experiments-compare: error: {tmp_path}: no run dirs found (neither it nor any "
                           "subdirectory has a summary.json)\n")
    assert proc.stdout == ""
