"""The comparison as a table: its columns and records (``table``), the markdown printed and written with its
notes, and ``write_table`` (``compare.csv``, ``compare.md``)."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uf_experiments.report.numbers import column_value, metric_columns
from uf_experiments.report.runs import FAILED, SKIPPED_STATUS, STOPPED, Row, override_keys, row_label, varying_keys


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
                     *(column_value(r, c) for c in metrics)] for r in rows]


def cell_text(value: Any) -> str:
    """A value as a table cell: empty for None, floats to at most 6 decimals without trailing zeros."""
    if value is None:
        return ""
    if isinstance(value, float):
        return format(value, ".6f").rstrip("0").rstrip(".") if math.isfinite(value) else str(value)
    return str(value)


def _name(row: Row, keys: Sequence[str]) -> str:
    """A row's name in notes: its values of the varying overrides, else its run dir's name."""
    return row_label(row, keys, ", ", row["run"] or ", ".join(f"{k}={v}" for k, v in row["overrides"].items()))


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
    lines += ["| " + " | ".join([_short_run(rec[0]), *(cell_text(v).replace("|", "\\|") for v in rec[1:])]) + " |"
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
        writer.writerows([cell_text(v) for v in rec] for rec in records)
    md = markdown(rows)
    (out / "compare.md").write_text(md)
    return md
