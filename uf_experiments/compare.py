"""Compare the runs of a sweep: ``uf-experiments-compare SWEEP_DIR [--out DIR]`` -> a table and PNG plots.

A run dir is a directory holding ``summary.json`` (README, "The run dir"); a sweep dir (``uf-experiments -m``) holds
one run dir per job. For each run the table has its overrides (from ``.hydra/overrides.yaml``, one column per key)
and the metrics of DESIGN.md §9; the plots read ``rated.parquet`` and ``preferences.parquet`` as well.

Writes into the out dir (default ``SWEEP_DIR/compare``): ``compare.csv``, ``compare.md`` (also printed),
``usd_per_pair.png``, ``rating_distribution.png``, ``margin_histogram.png``. The cells a sweep skipped because
they could never run (``SWEEP_DIR/skipped_cells.json``) are listed under the table in ``compare.md``.
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
from pathlib import Path
from typing import Any

import yaml

from uf_experiments.sweep_cells import SKIPPED_FILE, SkippedCell, read_skipped

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
METRIC_COLUMNS = ("pairs", "tie_rate", "mean_margin", "parse_failure_rate", "flip_rate", "usd_total", "usd_per_pair")
POOL_SIZE = "pool.size"
PLOTS = ("usd_per_pair.png", "rating_distribution.png", "margin_histogram.png")
NO_RATING = "none"  # the bar for completions an aspect left unrated (N/A or a parse failure)
PER_COMPLETION_ASPECTS = ("critique",)  # a 1-10 scale: not pooled with the 1-5 aspects unless it is all there is

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
        if not found:
            raise CompareError(f"{path}: no run dirs found (neither it nor any subdirectory has a {SUMMARY})")
        runs += found
    unique: dict[Path, Path] = {}
    for r in runs:
        unique.setdefault(r.resolve(), r)
    return list(unique.values())


def _job_order(path: Path) -> tuple[int, str]:
    """Hydra names sweep jobs ``N_overrides``: order by N as a number, so ``10_...`` follows ``9_...``."""
    m = re.match(r"(\d+)_", path.name)
    return (int(m.group(1)) if m else sys.maxsize, path.name)


def find_skipped(paths: Sequence[str | Path]) -> list[SkippedCell]:
    """The cells the sweep dirs among ``paths`` skipped (their ``skipped_cells.json``), in order."""
    cells: list[SkippedCell] = []
    for path in map(Path, paths):
        if (path / SUMMARY).is_file():
            continue
        try:
            cells += read_skipped(path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CompareError(f"{path / SKIPPED_FILE}: unreadable ({exc})") from exc
    return cells


def default_out(paths: Sequence[str | Path]) -> Path:
    """``SWEEP_DIR/compare`` when the only input is a sweep dir; otherwise the caller must say (``--out``)."""
    if len(paths) == 1 and not (Path(paths[0]) / SUMMARY).is_file():
        return Path(paths[0]) / "compare"
    raise CompareError("--out DIR is required unless the only argument is a sweep dir "
                       "(it defaults to SWEEP_DIR/compare)")


# --------------------------------------------------------------------------------------------------- the table


def read_overrides(run: Path) -> dict[str, str]:
    """``{key: value}`` from the job's ``.hydra/overrides.yaml`` (``+key=v`` / ``++key=v`` count as ``key``)."""
    path = run / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out: dict[str, str] = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, sep, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key and not key.startswith(("hydra.", "cache.")):  # where files go, not what the run did
            out[key] = value if sep else "~"  # ``~key`` deletes a key
    return out


def collect(runs: Sequence[Path]) -> list[Row]:
    """One row per run, sorted by the override values (numbers as numbers), then by run name.

    A row is ``{"run", "path", "overrides": {key: value}, "pairs", "tie_rate", ...}`` (the ``METRIC_COLUMNS``).
    """
    rows = [_row(run) for run in runs]
    keys = override_keys(rows)
    rows.sort(key=lambda r: (tuple(_sort_value(r["overrides"].get(k)) for k in keys), r["run"]))
    return rows


def _row(run: Path) -> Row:
    try:
        summary = json.loads((run / SUMMARY).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CompareError(f"{run / SUMMARY}: unreadable ({exc})") from exc
    metrics = summary.get("metrics", {})
    flips = [v for v in (metrics.get("flip_rate_by_aspect") or {}).values() if v is not None]
    return {
        "run": run.name,
        "path": run,
        "overrides": read_overrides(run),
        "pairs": summary.get("counts", {}).get("pairs"),
        "tie_rate": metrics.get("tie_rate"),
        "mean_margin": metrics.get("mean_margin"),
        "parse_failure_rate": metrics.get("parse_failure_rate"),
        "flip_rate": round(sum(flips) / len(flips), 4) if flips else None,
        "usd_total": summary.get("cost_usd", {}).get("total"),
        "usd_per_pair": metrics.get("usd_per_pair"),
    }


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


def table(rows: Sequence[Row]) -> tuple[list[str], list[list[Any]]]:
    """``(header, records)``: ``run``, one column per override key, then ``METRIC_COLUMNS``."""
    keys = override_keys(rows)
    header = ["run", *keys, *METRIC_COLUMNS]
    return header, [[r["run"], *(r["overrides"].get(k) for k in keys), *(r[c] for c in METRIC_COLUMNS)] for r in rows]


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6f").rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return str(value)


def markdown(rows: Sequence[Row], skipped: Sequence[SkippedCell] = ()) -> str:
    """A GitHub markdown table of ``table(rows)``, metric columns right-aligned; an empty cell means "none".
    Then the ``skipped`` sweep cells, if any: their overrides and why they could not run."""
    header, records = table(rows)
    align = ["---"] * (len(header) - len(METRIC_COLUMNS)) + ["---:"] * len(METRIC_COLUMNS)
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(_escape(_cell(v)) for v in rec) + " |" for rec in records]
    if skipped:
        lines += ["", f"Skipped sweep cells ({len(skipped)}, never run):", "",
                  "| skipped cell | reason |", "| --- | --- |"]
        lines += [f"| {_escape(' '.join(_shown_overrides(s.overrides)))} | {_escape(s.reason)} |" for s in skipped]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def _shown_overrides(overrides: Sequence[str]) -> list[str]:
    """A skipped cell's overrides as the table shows a run's: without ``hydra.*`` and ``cache.*`` (where files go)."""
    return [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "cache."))]


def write_table(rows: Sequence[Row], out: Path, skipped: Sequence[SkippedCell] = ()) -> str:
    """Write ``compare.csv`` and ``compare.md`` into ``out``; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    header, records = table(rows)
    with (out / "compare.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows([_cell(v) for v in rec] for rec in records)
    md = markdown(rows, skipped)
    (out / "compare.md").write_text(md)
    return md


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


def plot_usd_per_pair(rows: Sequence[Row], path: Path) -> Path:
    """$ per usable pair (left) and pairs produced (right) per run.

    With ``pool.size`` among the overrides: against pool.size, one line per combination of the other overrides
    that vary (e.g. ``sampling.n``); otherwise one bar per run. The pairs panel still says something when every
    run cost $0 (self-hosted models with ``gpu_hour_usd: 0``).
    """
    plt = _plt()
    fig, (ax_usd, ax_pairs) = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    keys = varying_keys(rows)
    if all(POOL_SIZE in r["overrides"] and _sort_value(r["overrides"][POOL_SIZE])[0] == 0 for r in rows):
        others = [k for k in keys if k != POOL_SIZE]
        lines: dict[str, list[Row]] = defaultdict(list)
        for r in rows:  # rows are sorted by their overrides, so each line's points come in pool.size order
            lines[_label(r, others, ", ", "defaults" if others else "all runs")].append(r)
        xs = sorted({float(r["overrides"][POOL_SIZE]) for r in rows})
        for name, line in lines.items():
            x = [float(r["overrides"][POOL_SIZE]) for r in line]
            usd = [math.nan if r["usd_per_pair"] is None else r["usd_per_pair"] for r in line]
            no_pairs = all(math.isnan(u) for u in usd)
            ax_usd.plot(x, usd, marker="o", label=name + (" (no pairs: nothing to divide by)" if no_pairs else ""))
            ax_pairs.plot(x, [r["pairs"] or 0 for r in line], marker="o", label=name)
        for ax in (ax_usd, ax_pairs):
            ax.set_xlabel(POOL_SIZE + " (models in the pool)")
            ax.set_xticks(xs, [_cell(x) for x in xs])
            ax.legend(fontsize="small")
    else:
        labels = [_label(r, keys) for r in rows]
        x = range(len(rows))
        ax_usd.bar(x, [r["usd_per_pair"] or 0 for r in rows], color="tab:blue")
        ax_pairs.bar(x, [r["pairs"] or 0 for r in rows], color="tab:green")
        crowded = len(rows) > 4
        for ax in (ax_usd, ax_pairs):
            ax.set_xticks(list(x), labels, rotation=30 if crowded else 0, ha="right" if crowded else "center",
                          fontsize="small")
            ax.set_xlabel("run")
        for i, r in enumerate(rows):
            if r["usd_per_pair"] is None:
                ax_usd.annotate("no pairs", (i, 0), ha="center", va="bottom", fontsize="small")
    ax_usd.set_title("$ per usable pair")
    ax_usd.set_ylabel("USD per pair (total run cost / pairs)")
    _from_zero(ax_usd, [r["usd_per_pair"] or 0 for r in rows])
    if all(not r["usd_total"] for r in rows):
        ax_usd.text(0.5, 0.5, "every run cost $0\n(self-hosted models priced at gpu_hour_usd 0)",
                    transform=ax_usd.transAxes, ha="center", va="center", color="dimgray")
    ax_pairs.set_title("Pairs produced")
    ax_pairs.set_ylabel("preference pairs")
    _from_zero(ax_pairs, [r["pairs"] or 0 for r in rows])
    ax_pairs.yaxis.get_major_locator().set_params(integer=True)
    fig.suptitle(f"Cost and yield per run ({len(rows)} runs)")
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
    for r in rows:
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
                 f"once),\npooled over {len(rows)} runs and {len(aspects)} aspects: "
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
    data = [margins(r) for r in rows]
    bins = _bins([m for ms in data for m in ms or ()])
    ncols = min(len(rows), 3 if len(rows) != 4 else 2)
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
    for ax in axes.flat[len(rows):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("score_chosen - score_rejected")
    for ax in axes[:, 0]:
        ax.set_ylabel("pairs")
    fig.suptitle("Margin of each preference pair (chosen score - rejected score), per run")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_all(rows: Sequence[Row], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [plot_usd_per_pair(rows, out / PLOTS[0]), plot_rating_distribution(rows, out / PLOTS[1]),
            plot_margin_histogram(rows, out / PLOTS[2])]


# --------------------------------------------------------------------------------------------------- command line


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
        runs = find_runs(args.paths)
        out = args.out or default_out(args.paths)
        rows = collect(runs)
        skipped = find_skipped(args.paths)
    except CompareError as exc:
        print(f"{parser.prog}: error: {exc}", file=sys.stderr)
        return 2
    md = write_table(rows, out, skipped)
    plot_all(rows, out)
    print(md, end="")
    print(f"\n{len(rows)} runs -> {out}/ (compare.csv, compare.md, {', '.join(PLOTS)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
