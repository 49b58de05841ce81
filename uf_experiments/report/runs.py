"""The runs a comparison reads: finding run dirs and a sweep's skipped cells, a run's overrides, and one row per
run or skipped cell (``collect``).

A run dir is a directory holding ``summary.json`` (README, "The run dir"); a sweep dir (``uf-experiments -m``) holds
one run dir per job, and ``skipped_cells.json`` when some cells of the grid could never run.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uf_experiments.core.rundir import SUMMARY, hydra_overrides
from uf_experiments.metrics.cell import METRIC_COLUMNS, costs, summary_metrics
from uf_experiments.tracking.secrets import is_secret

SKIPPED = "skipped_cells.json"
POOL_SIZE = "pool.size"
DONE, STOPPED, FAILED, SKIPPED_STATUS = "done", "stopped", "failed", "skipped"

Row = dict[str, Any]


class CompareError(Exception):
    """A problem with the inputs, reported as one line with exit code 2."""


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


def parse_overrides(items: Sequence[Any]) -> dict[str, str]:
    """``{key: value}`` from Hydra override strings (``+key=v`` / ``++key=v`` count as ``key``); where files go
    (``hydra.*``, ``cache.*``) is left out: it is not what the run did; so is a secret-looking key (its value
    belongs in the environment, never in a table)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.lstrip("+~")
        if key and not key.startswith(("hydra.", "cache.")) and not is_secret(key):
            out[key] = value if sep else "~"  # ``~key`` deletes a key
    return out


def read_overrides(run: Path) -> dict[str, str]:
    """The job's overrides, from its ``.hydra/overrides.yaml`` (see ``parse_overrides``)."""
    return parse_overrides(hydra_overrides(run))


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
    rows.sort(key=lambda r: (tuple(sort_value(r["overrides"].get(k)) for k in keys), r["path"] is None, r["run"]))
    return rows


def ran(rows: Sequence[Row]) -> list[Row]:
    """The rows of runs that exist (not skipped cells)."""
    return [r for r in rows if r["path"] is not None]


def plotted(rows: Sequence[Row]) -> list[Row]:
    """The rows the plots draw: runs that did (some of) their work, not failed jobs or skipped cells."""
    return [r for r in rows if r["status"] in (DONE, STOPPED)]


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


def sort_value(value: str | None) -> tuple[int, float, str]:
    """An override value's sort key: numbers (as numbers) first, then text, then unset."""
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


def row_label(row: Row, keys: Sequence[str], sep: str = "\n", default: str | None = None) -> str:
    """A run's short name: the overrides among ``keys`` that it sets, else ``default`` (else its dir name)."""
    return sep.join(f"{k}={row['overrides'][k]}" for k in keys if k in row["overrides"]) or default or row["run"]
