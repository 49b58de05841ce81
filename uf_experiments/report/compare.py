"""Compare the runs of a sweep: ``uf-experiments-compare SWEEP_DIR [--out DIR]`` -> a table and PNG plots.

A run dir is a directory holding ``summary.json`` (README, "The run dir"); a sweep dir (``uf-experiments -m``) holds
one run dir per job, and ``skipped_cells.json`` when some cells of the grid could never run. For each run the table
has its overrides (from ``.hydra/overrides.yaml``, one column per key), its status, and the metrics of DESIGN.md §9;
every $ figure is the attributed cost of the run's work (``cost_usd.total``: cached requests count at what they cost
when they were paid), so cells compare on what their work costs, not on what the cache spared them; ``usd_paid`` is
what the run spent. The plots read ``rated.parquet`` and ``preferences.parquet`` as well.

Writes into the out dir (default ``SWEEP_DIR/compare``): ``compare.csv``, ``compare.md`` (also printed),
``totals.json`` (the grid's totals), ``usd_per_pair.png``, ``pairs_per_usd.png``, ``rating_distribution.png``,
``margin_histogram.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import re
import sys
import textwrap
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
SKIPPED = "skipped_cells.json"
TOTALS = "totals.json"
JUDGE_METRICS = ("pairs", "tie_rate", "mean_margin", "parse_failure_rate", "flip_rate")
COST_COLUMNS = ("usd_total", "usd_paid", "usd_per_pair", "pairs_per_usd", "usd_per_1k_judged")
# The metric columns every table has; ``agree_<aspect>_*`` columns go between the two groups when a run has them.
METRIC_COLUMNS = (*JUDGE_METRICS, *COST_COLUMNS)
AGREEMENT = {"kappa": "kappa_quadratic", "exact": "exact", "pairwise": "pairwise_accuracy"}  # column -> summary key
POOL_SIZE = "pool.size"
PLOTS = ("usd_per_pair.png", "pairs_per_usd.png", "rating_distribution.png", "margin_histogram.png")
NO_RATING = "none"  # the bar for completions an aspect left unrated (N/A or a parse failure)
PER_COMPLETION_ASPECTS = ("critique",)  # a 1-10 scale: not pooled with the 1-5 aspects unless it is all there is
DONE, STOPPED, FAILED, SKIPPED_STATUS = "done", "stopped", "failed", "skipped"

Row = dict[str, Any]


class CompareError(Exception):
    """A problem with the inputs, reported as one line with exit code 2."""


# --------------------------------------------------------------------------------------------------- finding runs


def find_runs(paths: Sequence[str | Path]) -> list[Path]:
    """The run dirs in ``paths``: each path is a run dir itself, or a sweep dir whose children are run dirs."""
    runs: list[Path] = []
    for path in map(Path, paths):
        if not path.is_dir():
            raise CompareError(f"{path}: no such directory")
        if (path / SUMMARY).is_file():
            found = [path]
        else:
            found = sorted((c for c in path.iterdir() if c.is_dir() and (c / SUMMARY).is_file()), key=_job_order)
        if not found and not (path / SKIPPED).is_file():
            raise CompareError(f"{path}: no run dirs found (neither it nor any subdirectory has a {SUMMARY})")
        runs += found
    unique: dict[Path, Path] = {}
    for r in runs:
        unique.setdefault(r.resolve(), r)
    return list(unique.values())


def find_skipped(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """The cells a sweep could never run: each sweep dir's ``skipped_cells.json``
    (``[{"overrides": ["pool.size=2", "sampling.n=3"], "reason": "..."}]``), in file order."""
    cells: list[dict[str, Any]] = []
    for path in map(Path, paths):
        file = path / SKIPPED
        if not file.is_file():
            continue
        try:
            entries = json.loads(file.read_text())
            cells += [{"overrides": [str(o) for o in e.get("overrides") or []], "reason": str(e.get("reason") or "")}
                      for e in entries]
        except (OSError, json.JSONDecodeError, AttributeError, TypeError) as exc:
            raise CompareError(f"{file}: unreadable ({exc}); expected a list of {{overrides, reason}}") from exc
    return cells


def _job_order(path: Path) -> tuple[int, str]:
    """Hydra names sweep jobs ``N_overrides``: order by N as a number, so ``10_...`` follows ``9_...``."""
    m = re.match(r"(\d+)_", path.name)
    return (int(m.group(1)) if m else sys.maxsize, path.name)


def default_out(paths: Sequence[str | Path]) -> Path:
    """``SWEEP_DIR/compare`` when the only input is a sweep dir; otherwise the caller must say (``--out``)."""
    if len(paths) == 1 and not (Path(paths[0]) / SUMMARY).is_file():
        return Path(paths[0]) / "compare"
    raise CompareError("--out DIR is required unless the only argument is a sweep dir "
                       "(it defaults to SWEEP_DIR/compare)")


# --------------------------------------------------------------------------------------------------- the table


def parse_overrides(items: Sequence[Any]) -> dict[str, str]:
    """``{key: value}`` from Hydra override strings (``+key=v`` / ``++key=v`` count as ``key``); where files go
    (``hydra.*``, ``cache.*``) is left out: it is not what the run did; so is a secret-looking key (its value
    belongs in the environment, never in a table)."""
    from uf_experiments.tracking.wandb import SECRET_KEY

    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key and not key.startswith(("hydra.", "cache.")) and not SECRET_KEY.search(key):
            out[key] = value if sep else "~"  # ``~key`` deletes a key
    return out


def read_overrides(run: Path) -> dict[str, str]:
    """The job's overrides, from its ``.hydra/overrides.yaml`` (see ``parse_overrides``)."""
    path = run / ".hydra" / "overrides.yaml"
    return parse_overrides(yaml.safe_load(path.read_text()) or []) if path.is_file() else {}


def collect(runs: Sequence[Path], skipped: Sequence[dict[str, Any]] = ()) -> list[Row]:
    """One row per run and per skipped cell, sorted by the override values (numbers as numbers), then by name.

    A row is ``{"run", "path" (None for a skipped cell), "overrides": {key: value}, "status", "reason", "notes",
    "agreement": {column: value}}`` plus the ``METRIC_COLUMNS``.
    """
    done = [_row(run) for run in runs]
    # skipped_cells.json may name only the swept overrides: a skipped cell shares what every run of it shares
    shared = {k: v for k, v in done[0]["overrides"].items() if all(r["overrides"].get(k) == v for r in done)} \
        if done else {}
    rows = done + [_skipped_row(cell, shared) for cell in skipped]
    keys = override_keys(rows)
    rows.sort(key=lambda r: (tuple(_sort_value(r["overrides"].get(k)) for k in keys), r["path"] is None, r["run"]))
    return rows


def ran(rows: Sequence[Row]) -> list[Row]:
    """The rows of runs that exist (not skipped cells)."""
    return [r for r in rows if r["path"] is not None]


def plotted(rows: Sequence[Row]) -> list[Row]:
    """The rows the plots draw: runs that did (some of) their work, not failed jobs or skipped cells."""
    return [r for r in rows if r["status"] in (DONE, STOPPED)]


@dataclass(frozen=True)
class Costs:
    """A run's $: ``total`` attributed (None when unknown), ``paid`` spent by the run, the judge stage's total."""

    total: float | None
    paid: float | None
    judge_total: float | None
    saved: float | None
    note: str | None = None


def costs(summary: dict[str, Any]) -> Costs:
    """The attributed and paid $ of a ``summary.json``.

    Current summaries carry ``cost_usd.{total, paid, saved_by_cache}`` and per stage dicts. A summary written
    before costs were attributed has numbers per stage and a ``total`` that is what the run paid, with cache hits
    at $0: its attributed total is known only when nothing came from the cache, and is left unknown (None, with a
    note) otherwise.
    """
    cost = summary.get("cost_usd") or {}
    judge = cost.get("judge")
    if isinstance(judge, dict) or "paid" in cost:
        judge_total = judge.get("total") if isinstance(judge, dict) else None
        return Costs(cost.get("total"), cost.get("paid"), judge_total, cost.get("saved_by_cache"))
    paid = cost.get("total")
    counts = summary.get("counts") or {}
    hits = counts.get("cache_hits", 0) or 0
    judge_hits = (summary.get("judge") or {}).get("cache_hits", hits) or 0
    note = None
    if hits:
        note = (f"summary.json predates attributed costs and {hits} of its requests came from the cache: what its "
                "work costs is unknown (usd_total, usd_per_pair, pairs_per_usd left empty; usd_paid is what it spent)")
    return Costs(None if hits else paid, paid, None if judge_hits else judge, None, note)


def summary_metrics(summary: dict[str, Any]) -> dict[str, Any]:
    """The table's numbers for one ``summary.json``: ``JUDGE_METRICS``, the ``agree_<aspect>_*`` columns the
    summary has, and ``COST_COLUMNS`` (attributed $, see ``costs``)."""
    metrics = summary.get("metrics") or {}
    counts = summary.get("counts") or {}
    flips = [v for v in (metrics.get("flip_rate_by_aspect") or {}).values() if v is not None]
    cost = costs(summary)
    pairs = counts.get("pairs")
    per_pair = metrics.get("usd_per_pair") if cost.total is not None else None
    if per_pair is None and cost.total is not None and pairs:
        per_pair = round(cost.total / pairs, 6)
    judged = counts.get("judged")
    agreement = {f"agree_{aspect}_{column}": (values or {}).get(key)
                 for aspect, values in (metrics.get("agreement") or {}).items() for column, key in AGREEMENT.items()}
    return {
        "pairs": pairs,
        "tie_rate": metrics.get("tie_rate"),
        "mean_margin": metrics.get("mean_margin"),
        "parse_failure_rate": metrics.get("parse_failure_rate"),
        "flip_rate": round(sum(flips) / len(flips), 4) if flips else None,
        **agreement,
        "usd_total": cost.total,
        "usd_paid": cost.paid,
        "usd_per_pair": per_pair,
        "pairs_per_usd": round(pairs / cost.total, 4) if pairs is not None and cost.total else None,
        "usd_per_1k_judged": (round(cost.judge_total * 1000 / judged, 6)
                              if cost.judge_total is not None and judged else None),
    }


def _row(run: Path) -> Row:
    try:
        summary = json.loads((run / SUMMARY).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"{run / SUMMARY}: unreadable ({exc})") from exc
    values = summary_metrics(summary)
    cost = costs(summary)
    stopped = summary.get("stopped")
    # a job stopped by bad input before it ran has a summary.json with no counts (cli.record_failure)
    status = DONE if not stopped else STOPPED if "counts" in summary else FAILED
    return {
        "run": run.name,
        "path": run,
        "overrides": read_overrides(run),
        "status": status,
        "reason": stopped or None,
        "notes": ([cost.note] if cost.note else []) + [str(n) for n in (summary.get("cost_usd") or {}).get("notes")
                                                       or []],
        "agreement": {k: v for k, v in values.items() if k.startswith("agree_")},
        **{k: v for k, v in values.items() if not k.startswith("agree_")},
        "cost": cost,
        "counts": summary.get("counts") or {},
    }


def _skipped_row(cell: dict[str, Any], shared: dict[str, str]) -> Row:
    overrides = {**shared, **parse_overrides(cell["overrides"])}
    return {"run": "", "path": None, "overrides": overrides, "status": SKIPPED_STATUS, "reason": cell["reason"],
            "notes": [], "agreement": {}, **dict.fromkeys(METRIC_COLUMNS), "cost": None, "counts": {}}


def _sort_value(value: str | None) -> tuple[int, float, str]:
    if value is None:
        return (2, 0.0, "")
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def override_keys(rows: Sequence[Row]) -> list[str]:
    """Every override key of every run, in order of first appearance."""
    return list(dict.fromkeys(k for r in rows for k in r["overrides"]))


def varying_keys(rows: Sequence[Row]) -> list[str]:
    """The override keys whose value is not the same in every run."""
    return [k for k in override_keys(rows) if len({r["overrides"].get(k) for r in rows}) > 1]


def metric_columns(rows: Sequence[Row]) -> list[str]:
    """``JUDGE_METRICS``, the agreement columns any run has (``agree_<aspect>_kappa|exact|pairwise``), then
    ``COST_COLUMNS``."""
    agreement = list(dict.fromkeys(c for r in rows for c in r["agreement"]))
    return [*JUDGE_METRICS, *agreement, *COST_COLUMNS]


def _value(row: Row, column: str) -> Any:
    return row["agreement"].get(column) if column.startswith("agree_") else row[column]


def _status(row: Row, full: bool) -> str:
    return f"{row['status']}: {row['reason']}" if full and row["reason"] else row["status"]


def table(rows: Sequence[Row], full_status: bool = True, keys: Sequence[str] | None = None
          ) -> tuple[list[str], list[list[Any]]]:
    """``(header, records)``: ``run``, one column per override key (``keys``, default all of them), ``status``
    (``done``; ``stopped: why`` for a run that did part of its work, ``failed: why`` for one stopped by bad input
    before it ran, ``skipped: why`` for a cell the sweep never ran; only the word with ``full_status=False``), then
    ``metric_columns``."""
    keys = override_keys(rows) if keys is None else list(keys)
    metrics = metric_columns(rows)
    header = ["run", *keys, "status", *metrics]
    return header, [[r["run"], *(r["overrides"].get(k) for k in keys), _status(r, full_status),
                     *(_value(r, c) for c in metrics)] for r in rows]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6f").rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return str(value)


def _name(row: Row, keys: Sequence[str]) -> str:
    """A row's name in notes: its values of the varying overrides, else its run dir's name."""
    return _label(row, keys, ", ", row["run"] or ", ".join(f"{k}={v}" for k, v in row["overrides"].items()))


def notes(rows: Sequence[Row]) -> list[str]:
    """One line per stopped run, skipped cell and caveat, naming the run by its varying overrides."""
    keys = varying_keys(rows)
    lines = []
    for r in rows:
        name = _name(r, keys) or "(no overrides)"
        if r["status"] == SKIPPED_STATUS:
            lines.append(f"skipped cell {name}: {r['reason']}")
        elif r["status"] == STOPPED:
            lines.append(f"{name} ({r['run']}) stopped before finishing its work: {r['reason']}")
        elif r["status"] == FAILED:
            lines.append(f"{name} ({r['run']}) failed before it ran: {r['reason']}")
        lines += [f"{name}: {n}" for n in r["notes"]]
    return lines


def _short_run(name: str, limit: int = 32) -> str:
    """A sweep job's dir name (``N_overrides...``) cut to ``N_…`` when long: the override columns say the rest."""
    m = re.match(r"(\d+)_", name)
    return f"{m.group(1)}_…" if m and len(name) > limit else name


def markdown(rows: Sequence[Row]) -> str:
    """A GitHub markdown table: the overrides that vary between the rows (the others are listed above it), the
    status word, the metric columns right-aligned (an empty cell means "none"); then the notes: why a run stopped
    or a cell was skipped, and caveats about its numbers. Long sweep-job names are cut to their number."""
    keys = varying_keys(rows) if len(rows) > 1 else []
    same = {k: v for k, v in rows[0]["overrides"].items() if k not in keys} if rows else {}
    header, records = table(rows, full_status=False, keys=keys)
    n_metrics = len(metric_columns(rows))
    align = ["---"] * (len(header) - n_metrics) + ["---:"] * n_metrics
    lines = [f"Same in every run: {' '.join(f'{k}={v}' for k, v in same.items())}", ""] if same else []
    lines += ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join([_short_run(rec[0]), *(_cell(v).replace("|", "\\|") for v in rec[1:])]) + " |"
              for rec in records]
    extra = notes(rows)
    if extra:
        lines += ["", "Notes:", *(f"- {n}" for n in extra)]
    return "\n".join(lines) + "\n"


def write_table(rows: Sequence[Row], out: Path) -> str:
    """Write ``compare.csv`` and ``compare.md`` into ``out``; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    header, records = table(rows)
    with (out / "compare.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([_cell(v) for v in rec] for rec in records)
    md = markdown(rows)
    (out / "compare.md").write_text(md)
    return md


def grid_totals(rows: Sequence[Row]) -> dict[str, Any]:
    """The grid's totals: cells, runs done / stopped / failed, cells skipped, and the sums over the runs of pairs,
    prompts, judged items, engine calls, cache hits and $ (attributed, paid, saved by the cache). A $ sum over runs
    whose attributed cost is unknown is None, with how many runs that is in ``runs_cost_unknown``; a job that failed
    before it ran costs nothing."""
    done = ran(rows)

    def total(values: list[Any]) -> float | int | None:
        return None if any(v is None for v in values) else (round(sum(values), 6) if values else 0)

    priced = [r for r in done if r["status"] != FAILED]  # a job that failed before it ran did no work
    unknown = sum(r["cost"].total is None for r in priced)
    usd_total = total([r["cost"].total for r in priced])
    usd_paid = total([r["cost"].paid for r in priced])
    return {
        "cells": len(rows),
        "runs": len(done),
        "done": sum(r["status"] == DONE for r in done),
        "stopped": sum(r["status"] == STOPPED for r in done),
        "failed": sum(r["status"] == FAILED for r in done),
        "skipped": len(rows) - len(done),
        "pairs": sum(r["pairs"] or 0 for r in done),
        "prompts": sum(r["counts"].get("prompts") or 0 for r in done),
        "judged": sum(r["counts"].get("judged") or 0 for r in done),
        "engine_calls": sum(r["counts"].get("engine_calls") or 0 for r in done),
        "cache_hits": sum(r["counts"].get("cache_hits") or 0 for r in done),
        "usd_total": usd_total,
        "usd_paid": usd_paid,
        "usd_saved_by_cache": (round(usd_total - usd_paid, 6) if usd_total is not None and usd_paid is not None
                               else None),
        "runs_cost_unknown": unknown,
    }


# --------------------------------------------------------------------------------------------------- plots


def _plt() -> Any:
    """pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _label(row: Row, keys: Sequence[str], sep: str = "\n", default: str | None = None) -> str:
    """A run's short name: the overrides among ``keys`` that it sets, else ``default`` (else its dir name)."""
    return sep.join(f"{k}={row['overrides'][k]}" for k in keys if k in row["overrides"]) or default or row["run"]


def _read_parquet(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        log.warning("%s: missing, left out of the plots", path)
        return None
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _lines(rows: Sequence[Row]) -> dict[str, list[Row]] | None:
    """Rows as lines against ``pool.size``, one per combination of the other overrides that vary (e.g.
    ``sampling.n``), each in pool.size order; None unless every row sets ``pool.size`` to a number."""
    if not rows or not all(POOL_SIZE in r["overrides"] and _sort_value(r["overrides"][POOL_SIZE])[0] == 0
                           for r in rows):
        return None
    others = [k for k in varying_keys(rows) if k != POOL_SIZE]
    lines: dict[str, list[Row]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: float(r["overrides"][POOL_SIZE])):
        lines[_label(r, others, ", ", "defaults" if others else "all runs")].append(r)
    return dict(lines)


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _per_pair(amount: float | None, pairs: int | None) -> float | None:
    return amount / pairs if amount is not None and pairs else None


def _against_pool_size(axes: Sequence[Any], lines: dict[str, list[Row]], rows: Sequence[Row]) -> None:
    xs = sorted({float(r["overrides"][POOL_SIZE]) for r in rows})
    for ax in axes:
        ax.set_xlabel(POOL_SIZE + " (models in the pool)")
        ax.set_xticks(xs, [_cell(x) for x in xs])
        ax.grid(alpha=0.3)
        if xs:
            pad = max((xs[-1] - xs[0]) * 0.08, 0.3)
            ax.set_xlim(xs[0] - pad, xs[-1] + pad)


def _bars(ax: Any, rows: Sequence[Row], values: Sequence[float | None], color: str, why_empty: Sequence[str]) -> None:
    """One bar per run (no pool.size to draw lines against), with a note where a run has no value."""
    keys = varying_keys(rows)
    x = range(len(rows))
    bars = ax.bar(x, [v or 0 for v in values], color=color)
    for bar, r in zip(bars, rows, strict=False):
        if r["status"] == STOPPED:
            bar.set(hatch="//", edgecolor="tab:red", label=STOPPED_LABEL)
            ax.legend(handles=[bar], fontsize="small")
    crowded = len(rows) > 4
    ax.set_xticks(list(x), [_label(r, keys) for r in rows], rotation=30 if crowded else 0,
                  ha="right" if crowded else "center", fontsize="small")
    ax.set_xlabel("run")
    for i, (v, why) in enumerate(zip(values, why_empty, strict=False)):
        if v is None:
            ax.annotate(why, (i, 0), ha="center", va="bottom", fontsize="small", color="dimgray")


STOPPED_LABEL = "stopped before finishing (see compare.md)"


def _mark_stopped(ax: Any, rows: Sequence[Row], values: Sequence[float]) -> None:
    """A red cross over the points of runs that stopped early: their numbers cover only part of the work."""
    pts = [(float(r["overrides"][POOL_SIZE]), v) for r, v in zip(rows, values, strict=False)
           if r["status"] == STOPPED and not math.isnan(v)]
    if pts:
        labelled = STOPPED_LABEL in ax.get_legend_handles_labels()[1]
        ax.scatter(*zip(*pts, strict=False), marker="x", s=90, color="tab:red", zorder=5,
                   label=None if labelled else STOPPED_LABEL)


def _why_none(row: Row) -> str:
    if not row["pairs"]:
        return "no pairs"
    return "$ unknown" if row["usd_total"] is None else "cost $0"


def _suptitle(fig: Any, title: str, rows: Sequence[Row]) -> None:
    skipped = len(rows) - len(ran(rows))
    failed = len(ran(rows)) - len(plotted(rows))
    left = [f"{n} {what}" for n, what in ((skipped, "skipped"), (failed, "failed")) if n]
    fig.suptitle(title + (f"\n({' and '.join(left)} cell{'s' * (skipped + failed != 1)} of the grid not drawn: "
                          "see compare.md)" if left else ""))


def plot_usd_per_pair(rows: Sequence[Row], path: Path) -> Path:
    """$ per usable pair (left) and pairs produced (right) per run.

    $ is the attributed cost of the run's work (``usd_total``, solid), with what the run paid per pair dashed
    (less when the cache already held some of its answers). With ``pool.size`` among the overrides: against
    pool.size, one line per combination of the other overrides that vary (e.g. ``sampling.n``); otherwise one bar
    per run. The pairs panel still says something when every run cost $0 (self-hosted models with
    ``gpu_hour_usd: 0``).
    """
    plt = _plt()
    done = plotted(rows)
    fig, (ax_usd, ax_pairs) = plt.subplots(1, 2, figsize=(12, 5), constrained_layout=True)
    lines = _lines(done)
    if lines is not None:
        for i, (name, line) in enumerate(lines.items()):
            color = f"C{i % 10}"
            x = [float(r["overrides"][POOL_SIZE]) for r in line]
            usd = [_num(r["usd_per_pair"]) for r in line]
            paid = [_num(_per_pair(r["usd_paid"], r["pairs"])) for r in line]
            empty = all(math.isnan(u) for u in usd)
            ax_usd.plot(x, usd, marker="o", color=color,
                        label=name + (" (no pairs or $ unknown)" if empty else " (attributed)"))
            differs = (not math.isnan(p) and (math.isnan(u) or abs(p - u) > 1e-12)
                       for p, u in zip(paid, usd, strict=False))
            if any(differs):
                ax_usd.plot(x, paid, marker="o", markerfacecolor="none", linestyle="--", color=color, alpha=0.7,
                            label=name + " (paid by this cell)")
            ax_pairs.plot(x, [r["pairs"] or 0 for r in line], marker="o", color=color, label=name)
            _mark_stopped(ax_usd, line, usd)
            _mark_stopped(ax_pairs, line, [float(r["pairs"] or 0) for r in line])
        _against_pool_size((ax_usd, ax_pairs), lines, done)
        for ax in (ax_usd, ax_pairs):
            if lines:
                ax.legend(fontsize="small")
    else:
        _bars(ax_usd, done, [r["usd_per_pair"] for r in done], "tab:blue", [_why_none(r) for r in done])
        _bars(ax_pairs, done, [r["pairs"] for r in done], "tab:green", ["no pairs"] * len(done))
    ax_usd.set_title("$ per usable pair (what the cell's work costs, cached answers included)")
    ax_usd.set_ylabel("USD per pair (attributed cost / pairs)")
    paid_per_pair = [_per_pair(r["usd_paid"], r["pairs"]) or 0 for r in done]
    _from_zero(ax_usd, [r["usd_per_pair"] or 0 for r in done] + paid_per_pair)
    if done and all(not r["usd_total"] for r in done) and all(not r["usd_paid"] for r in done):
        ax_usd.text(0.5, 0.5, "every run cost $0\n(self-hosted models priced at gpu_hour_usd 0)",
                    transform=ax_usd.transAxes, ha="center", va="center", color="dimgray")
    ax_pairs.set_title("Pairs produced")
    ax_pairs.set_ylabel("preference pairs")
    _from_zero(ax_pairs, [r["pairs"] or 0 for r in done])
    ax_pairs.yaxis.get_major_locator().set_params(integer=True)
    _suptitle(fig, f"Cost and yield per run ({len(done)} runs)", rows)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_pairs_per_usd(rows: Sequence[Row], path: Path) -> Path:
    """Pairs produced per attributed $ (``pairs_per_usd``), against pool.size with one line per combination of
    the other varying overrides, or one bar per run; each point is labelled with its value."""
    plt = _plt()
    done = plotted(rows)
    fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
    lines = _lines(done)
    values = [r["pairs_per_usd"] for r in done]
    if lines is not None:
        points: dict[float, list[tuple[float, int]]] = defaultdict(list)  # x -> (y, line index)
        for i, (name, line) in enumerate(lines.items()):
            x = [float(r["overrides"][POOL_SIZE]) for r in line]
            y = [_num(r["pairs_per_usd"]) for r in line]
            ax.plot(x, y, marker="o", color=f"C{i % 10}", label=name)
            _mark_stopped(ax, line, y)
            for xi, yi in zip(x, y, strict=False):
                if not math.isnan(yi):
                    points[xi].append((yi, i))
        top = max((y for here in points.values() for y, _ in here), default=0)
        for xi, here in points.items():  # at each x the lowest value is labelled below its point (or beside it,
            for rank, (yi, i) in enumerate(sorted(here)):  # near the axis), the others above
                below = rank == 0 and len(here) > 1
                side = below and yi <= 0.05 * top
                ax.annotate(f"{yi:,.0f}" if yi >= 100 else f"{yi:.3g}", (xi, yi), textcoords="offset points",
                            xytext=(8, -3) if side else (0, -13 if below else 7), ha="left" if side else "center",
                            fontsize="small", color=f"C{i % 10}")
        _against_pool_size([ax], lines, done)
        if lines:
            ax.legend(fontsize="small")
    else:
        _bars(ax, done, values, "tab:purple", [_why_none(r) for r in done])
    if done and all(v is None for v in values):
        why = ("every run cost $0: pairs per $ is unbounded" if all(r["usd_total"] == 0 for r in done)
               else "no run has both pairs and a known cost")
        ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="dimgray")
    ax.set_title("Pairs per $ (attributed cost of the cell's work)")
    ax.set_ylabel("preference pairs per USD")
    _from_zero(ax, [v or 0 for v in values])
    ax.set_ylim(top=ax.get_ylim()[1] * 1.08)  # room for the labels above the highest points
    _suptitle(fig, f"Yield per dollar ({len(done)} runs)", rows)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _from_zero(ax: Any, values: Sequence[float]) -> None:
    """y from 0 with a little room below, so points at 0 sit above the axis line instead of on it."""
    top = max(values, default=0) * 1.1 or 1.0
    ax.set_ylim(-0.03 * top, top)


def rating_counts(rows: Sequence[Row]) -> tuple[dict[str, Counter], list[str]]:
    """Per generation model, how often each rating value was given, pooled over the runs and the aspects.

    Each aspect's rating of a completion counts once (per-aspect ratings, not means); a missing rating (N/A or a
    parse failure) counts as ``NO_RATING``. ``critique`` (1-10) is left out when a 1-5 aspect is there.
    Returns ``(counts by model, aspects used)``.
    """
    counts: dict[str, Counter] = defaultdict(Counter)
    used: dict[str, None] = {}
    for r in plotted(rows):
        rated = _read_parquet(r["path"] / "rated.parquet")
        for rec in rated or []:
            ratings = rec.get("ratings") or {}
            aspects = [a for a in ratings if a not in PER_COMPLETION_ASPECTS] or list(ratings)
            for a in aspects:
                if ratings[a] is None:
                    continue
                used[a] = None
                for model, value in zip(rec["generation_models"], ratings[a], strict=False):
                    counts[model][NO_RATING if value is None else value] += 1
    return dict(sorted(counts.items())), list(used)


def plot_rating_distribution(rows: Sequence[Row], path: Path) -> Path:
    """One group of bars per generation model: the count of each rating value (see ``rating_counts``)."""
    plt = _plt()
    counts, aspects = rating_counts(rows)
    values = sorted({v for c in counts.values() for v in c if v != NO_RATING})
    if any(NO_RATING in c for c in counts.values()):
        values.append(NO_RATING)
    models = list(counts)
    fig, ax = plt.subplots(figsize=(max(9.0, 1.6 * len(models) + 4), 5.5), constrained_layout=True)
    if not models:
        ax.text(0.5, 0.5, "no ratings in any run", transform=ax.transAxes, ha="center", va="center")
    width = 0.8 / max(len(values), 1)
    cmap = plt.get_cmap("viridis")
    for j, v in enumerate(values):
        color = "lightgray" if v == NO_RATING else cmap(j / max(len(values) - (NO_RATING in values) - 1, 1))
        xs = [i + (j - (len(values) - 1) / 2) * width for i in range(len(models))]
        label = "no rating (N/A or parse failure)" if v == NO_RATING else f"rating {_cell(v)}"
        ax.bar(xs, [counts[m][v] for m in models], width, label=label, color=color, edgecolor="black", linewidth=0.4)
    ax.set_xticks(range(len(models)), [f"{m}\n({sum(counts[m].values())} ratings)" for m in models])
    ax.set_xlabel("generation model")
    ax.set_ylabel("count of ratings")
    ax.yaxis.get_major_locator().set_params(integer=True)
    if values:
        ax.legend(title="rating", fontsize="small", loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Rating distribution per model: per-aspect ratings (each aspect's rating of a completion counts "
                 f"once),\npooled over {len(plotted(rows))} runs and {len(aspects)} aspects: "
                 + "\n".join(textwrap.wrap(", ".join(aspects) or "none", 90)), fontsize="medium")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def margins(row: Row) -> list[float] | None:
    """``score_chosen - score_rejected`` of each pair of a run; None without a ``preferences.parquet``."""
    prefs = _read_parquet(row["path"] / "preferences.parquet")
    if prefs is None:
        return None
    return [p["score_chosen"] - p["score_rejected"] for p in prefs
            if p.get("score_chosen") is not None and p.get("score_rejected") is not None]


def _why_no_pairs(row: Row) -> str:
    n = row["overrides"].get("sampling.n") or _config_value(row["path"], "sampling", "n")
    return "no pairs\n(sampling.n=1: one completion per prompt)" if str(n) == "1" else "no pairs"


def _config_value(run: Path, *keys: str) -> Any:
    """A value of the job's composed config (``.hydra/config.yaml``), or None."""
    path = run / ".hydra" / "config.yaml"
    node: Any = yaml.safe_load(path.read_text()) if path.is_file() else None
    for k in keys:
        node = node.get(k) if isinstance(node, dict) else None
    return node


def _bins(values: Sequence[float]) -> list[float]:
    """Bins centred on the values when they sit on a grid (ratings and their means do), else 20 equal bins."""
    distinct = sorted(set(values))
    if not distinct:
        return [-0.5, 0.5]
    gaps = [b - a for a, b in zip(distinct, distinct[1:], strict=False) if b - a > 1e-9]
    step = min(gaps) if gaps else 1.0
    n = round((distinct[-1] - distinct[0]) / step) + 1
    if n > 40:
        lo, hi = distinct[0], distinct[-1]
        return [lo + (hi - lo) * i / 20 for i in range(21)]
    return [distinct[0] + (i - 0.5) * step for i in range(n + 1)]


def plot_margin_histogram(rows: Sequence[Row], path: Path) -> Path:
    """A histogram of the chosen - rejected score margin, one subplot per run, on shared bins and axes."""
    plt = _plt()
    grid, rows = rows, plotted(rows)
    data = [margins(r) for r in rows]
    bins = _bins([m for ms in data for m in ms or ()])
    ncols = max(min(len(rows), 3 if len(rows) != 4 else 2), 1)
    nrows = math.ceil(len(rows) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows + 0.6), sharex=True, sharey=True,
                             squeeze=False, constrained_layout=True)
    keys = varying_keys(rows)
    for ax, row, ms in zip(axes.flat, rows, data, strict=False):
        title = _label(row, keys, ", ", "defaults")
        if ms:
            ax.hist(ms, bins=bins, color="tab:blue", edgecolor="black", linewidth=0.4)
            ax.axvline(sum(ms) / len(ms), color="tab:red", linestyle="--")
            title += f"\n{len(ms)} pairs, mean margin {sum(ms) / len(ms):.2f} (dashed)"
        else:
            why = "no preferences.parquet" if ms is None else _why_no_pairs(row)
            ax.text(0.5, 0.5, why, transform=ax.transAxes, ha="center", va="center", color="dimgray")
        ax.set_title(title, fontsize="medium")
        ax.tick_params(labelbottom=True, labelleft=True)
        ax.yaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_ylim(0, axes[0, 0].get_ylim()[1] * 1.1)  # shared y: headroom above the tallest bar
    centres = [(a + b) / 2 for a, b in zip(bins, bins[1:], strict=False)]
    if len(centres) <= 12 and all(abs(c * 2 - round(c * 2)) < 1e-9 for c in centres):
        axes[0, 0].set_xticks(centres, [_cell(c) for c in centres])  # a tick under each bar on a 0.5 grid
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("score_chosen - score_rejected")
    for ax in axes[:, 0]:
        ax.set_ylabel("pairs")
    _suptitle(fig, "Margin of each preference pair (chosen score - rejected score), per run", grid)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_all(rows: Sequence[Row], out: Path) -> list[Path]:
    """Every plot of ``PLOTS`` into ``out``; skipped cells have no files and are left out (named in the titles)."""
    out.mkdir(parents=True, exist_ok=True)
    return [plot_usd_per_pair(rows, out / PLOTS[0]), plot_pairs_per_usd(rows, out / PLOTS[1]),
            plot_rating_distribution(rows, out / PLOTS[2]), plot_margin_histogram(rows, out / PLOTS[3])]


# --------------------------------------------------------------------------------------------------- command line


@dataclass(frozen=True)
class Comparison:
    """What ``compare_dirs`` wrote: the rows, the markdown, the grid's totals and the plot files."""

    rows: list[Row]
    markdown: str
    totals: dict[str, Any]
    plots: list[Path]
    out: Path


def compare_dirs(paths: Sequence[str | Path], out: Path | None = None) -> Comparison:
    """Compare the runs in ``paths`` (sweep dirs or run dirs) and write every file into ``out`` (default:
    ``default_out(paths)``). Raises CompareError on unusable inputs."""
    runs = find_runs(paths)
    out = out or default_out(paths)
    rows = collect(runs, find_skipped(paths))
    md = write_table(rows, out)
    totals = grid_totals(rows)
    (out / TOTALS).write_text(json.dumps(totals, indent=2))
    return Comparison(rows, md, totals, plot_all(rows, out), out)


def sweep_end(sweep: Path, tracking: Any = None, group: str | None = None) -> tuple[Comparison, Any] | None:
    """What the end of a ``-m`` sweep does: compare its run dirs into ``SWEEP/compare/`` and, given the tracking
    config (None: no W&B), log the comparison as one more W&B run in ``group`` (``tracking.log_comparison``).
    Returns ``(comparison, W&B run or None)``, or None when no cell wrote a ``summary.json`` (a ``plan=true``
    sweep)."""
    if not any((c / SUMMARY).is_file() for c in sweep.iterdir() if c.is_dir()):
        return None
    result = compare_dirs([sweep])
    run = None
    if tracking is not None:
        from uf_experiments.tracking.wandb import log_comparison

        done = ran(result.rows)
        keys = varying_keys(result.rows)
        config = {
            "sweep_dir": str(sweep),
            "cells": result.totals["cells"],
            "grid": {k: sorted({r["overrides"].get(k) for r in result.rows if k in r["overrides"]}, key=_sort_value)
                     for k in keys},
            "same": {k: v for k, v in (done[0]["overrides"].items() if done else ()) if k not in keys},
        }
        run = log_comparison(tracking, result, group or sweep.name, config)
    return result, run


def describe_totals(totals: dict[str, Any]) -> str:
    """One line: runs, skipped cells, pairs and $ of the grid."""
    usd = ("$ unknown for " + str(totals["runs_cost_unknown"]) + " runs" if totals["usd_total"] is None
           else f"${totals['usd_total']:.4f} attributed")
    paid = "" if totals["usd_paid"] is None else f", ${totals['usd_paid']:.4f} paid"
    bad = [f"{totals[k]} {k}" for k in ("stopped", "failed") if totals.get(k)]
    stopped = f" ({', '.join(bad)})" if bad else ""
    skipped = f", {totals['skipped']} cell{'s' * (totals['skipped'] != 1)} skipped" if totals["skipped"] else ""
    return f"{totals['runs']} runs{stopped}{skipped}: {totals['pairs']} pairs, {usd}{paid}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="uf-experiments-compare",
        description="Turn a sweep (or several run dirs) into a table (compare.csv, compare.md) and PNG plots.")
    parser.add_argument("paths", nargs="+", metavar="SWEEP_DIR_OR_RUN_DIR",
                        help="a sweep dir (its subdirs with a summary.json are the runs), or run dirs")
    parser.add_argument("--out", type=Path, help="where to write (default: SWEEP_DIR/compare; required otherwise)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        result = compare_dirs(args.paths, args.out)
    except CompareError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    print(result.markdown, end="")
    print(f"\n{describe_totals(result.totals)} -> {result.out}/ (compare.csv, compare.md, {TOTALS}, "
          f"{', '.join(PLOTS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
