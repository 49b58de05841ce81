"""The four PNG plots of a comparison (``PLOTS``): $ per pair and pairs produced, pairs per $, the rating
distribution per generation model, and the margin histogram per run. They read each run's ``rated.parquet`` and
``preferences.parquet`` besides its row; matplotlib and pyarrow are imported on first use."""

from __future__ import annotations

import logging
import math
import textwrap
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uf_experiments.core.rundir import hydra_config_value
from uf_experiments.report.runs import POOL_SIZE, STOPPED, Row, plotted, ran, row_label, sort_value, varying_keys
from uf_experiments.report.table import cell_text

log = logging.getLogger(__name__)

PLOTS = ("usd_per_pair.png", "pairs_per_usd.png", "rating_distribution.png", "margin_histogram.png")
NO_RATING = "none"  # the bar for completions an aspect left unrated (N/A or a parse failure)
PER_COMPLETION_ASPECTS = ("critique",)  # a 1-10 scale: not pooled with the 1-5 aspects unless it is all there is


def _plt() -> Any:
    """pyplot on the Agg backend (files only, no display), imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _read_parquet(path: Path) -> list[dict[str, Any]] | None:
    if not path.is_file():
        log.warning("%s: missing, left out of the plots", path)
        return None
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def _lines(rows: Sequence[Row]) -> dict[str, list[Row]] | None:
    """Rows as lines against ``pool.size``, one per combination of the other overrides that vary (e.g.
    ``sampling.n``), each in pool.size order; None unless every row sets ``pool.size`` to a number."""
    if not rows or not all(POOL_SIZE in r["overrides"] and sort_value(r["overrides"][POOL_SIZE])[0] == 0
                           for r in rows):
        return None
    others = [k for k in varying_keys(rows) if k != POOL_SIZE]
    lines: dict[str, list[Row]] = defaultdict(list)
    for r in sorted(rows, key=lambda r: float(r["overrides"][POOL_SIZE])):
        lines[row_label(r, others, ", ", "defaults" if others else "all runs")].append(r)
    return dict(lines)


def _num(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _per_pair(amount: float | None, pairs: int | None) -> float | None:
    return amount / pairs if amount is not None and pairs else None


def _against_pool_size(axes: Sequence[Any], lines: dict[str, list[Row]], rows: Sequence[Row]) -> None:
    xs = sorted({float(r["overrides"][POOL_SIZE]) for r in rows})
    for ax in axes:
        ax.set_xlabel(POOL_SIZE + " (models in the pool)")
        ax.set_xticks(xs, [cell_text(x) for x in xs])
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
    ax.set_xticks(list(x), [row_label(r, keys) for r in rows], rotation=30 if crowded else 0,
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
        label = "no rating (N/A or parse failure)" if v == NO_RATING else f"rating {cell_text(v)}"
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
    n = row["overrides"].get("sampling.n") or hydra_config_value(row["path"], "sampling", "n")
    return "no pairs\n(sampling.n=1: one completion per prompt)" if str(n) == "1" else "no pairs"


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
        title = row_label(row, keys, ", ", "defaults")
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
        axes[0, 0].set_xticks(centres, [cell_text(c) for c in centres])  # a tick under each bar on a 0.5 grid
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
