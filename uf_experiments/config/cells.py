"""Which cells of a ``-m`` sweep can run: a cell whose config fails :func:`~uf_experiments.config.schema.validate` on
the values it was given (``sampling.n=3`` with ``pool.size=2``) is skipped, with one line on stderr, and listed in
``<sweep dir>/skipped_cells.json``; the other cells run. The rest fails the whole command before any job starts:
a composition error (a typo, a wrong type, an unknown option), a :class:`~uf_experiments.config.schema.SetupError` (a
missing key or token, the same for every cell), or a grid where no cell can run.

Hydra's ``BasicSweeper`` launches the whole cartesian product, so the sweep runs through ``ValidCellsSweeper``
(``hydra_plugins/uf_experiments_sweeper``, selected in ``conf/config.yaml`` as ``hydra/sweeper: valid_cells``):
it is the BasicSweeper, with the invalid cells taken out of its batches before the first one is launched. Every
launcher (basic, joblib, submitit) gets only the valid cells, numbered 0, 1, 2, ...
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from uf_experiments.config.schema import ConfigError, SetupError

SKIPPED_FILE = "skipped_cells.json"

Cell = Sequence[str]  # one job's overrides, e.g. ["pool.size=2", "sampling.n=3"]


@dataclass(frozen=True)
class SkippedCell:
    overrides: list[str]
    reason: str


def cell_problem(cfg: Any) -> str | None:
    """Why a composed cell's config can never run (a ConfigError from validate), or None. A SetupError (the
    environment, not the cell) propagates: it fails the whole sweep."""
    from uf_experiments.config.resolve import resolve
    from uf_experiments.config.validate import validate

    try:
        validate(resolve(cfg))
    except SetupError:
        raise
    except ConfigError as exc:
        return str(exc)
    return None


def split_cells(cells: Sequence[Cell], compose: Callable[[list[str]], Any]) -> tuple[list[Cell], list[SkippedCell]]:
    """``(valid cells, skipped cells)``. ``compose(overrides)`` builds a cell's config; its errors propagate."""
    valid: list[Cell] = []
    skipped: list[SkippedCell] = []
    for cell in cells:
        problem = cell_problem(compose(list(cell)))
        if problem is None:
            valid.append(cell)
        else:
            skipped.append(SkippedCell(list(cell), problem))
    return valid, skipped


def no_valid_cell(skipped: Sequence[SkippedCell], swept: Callable[[Cell], list[str]] = list) -> str:
    """The one-line error for a grid where no cell can run."""
    first = skipped[0]
    where = " ".join(swept(first.overrides)) or " ".join(first.overrides)
    if len(skipped) == 1:
        return f"the sweep's only cell cannot run: {first.reason}" + (f" (in the sweep cell {where})" if where else "")
    return f"none of the {len(skipped)} sweep cells can run; the first: {first.reason} (in the sweep cell {where})"


def skip_line(cell: SkippedCell) -> str:
    return f"skipped sweep cell {' '.join(cell.overrides)}: {cell.reason}"


def write_skipped(sweep_dir: str | Path, skipped: Sequence[SkippedCell]) -> Path | None:
    """``<sweep dir>/skipped_cells.json``: ``[{"overrides": [...], "reason": "..."}]`` (not written when empty)."""
    if not skipped:
        return None
    path = Path(sweep_dir) / SKIPPED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(s) for s in skipped], indent=2) + "\n")
    return path


def read_skipped(sweep_dir: str | Path) -> list[SkippedCell]:
    path = Path(sweep_dir) / SKIPPED_FILE
    if not path.is_file():
        return []
    return [SkippedCell(list(item["overrides"]), str(item["reason"])) for item in json.loads(path.read_text())]


def only_valid(batches: Sequence[Sequence[Cell]], compose: Callable[[list[str]], Any], sweep_dir: str | Path,
               swept: Callable[[Cell], list[str]] = list) -> list[list[Cell]]:
    """The sweeper's hook: the batches with the invalid cells taken out (empty batches dropped); one line per
    skipped cell on stderr and ``skipped_cells.json`` in the sweep dir. Raises ConfigError when none is left."""
    valid, skipped = split_cells([cell for batch in batches for cell in batch], compose)
    for s in skipped:
        print(skip_line(SkippedCell(swept(s.overrides) or s.overrides, s.reason)), file=sys.stderr, flush=True)
    write_skipped(sweep_dir, skipped)
    if not valid:
        raise ConfigError(no_valid_cell(skipped, swept))
    keep = {tuple(c) for c in valid}
    kept = [[c for c in batch if tuple(c) in keep] for batch in batches]
    return [batch for batch in kept if batch]


def swept_keys(cells: Sequence[Cell]) -> Callable[[Cell], list[str]]:
    """``cell -> its overrides whose key takes more than one value over the grid`` (what tells cells apart)."""
    values: dict[str, set[str]] = {}
    for cell in cells:
        for o in cell:
            key, _, value = o.partition("=")
            values.setdefault(key, set()).add(value)
    varying = {k for k, v in values.items() if len(v) > 1}
    return lambda cell: [o for o in cell if o.partition("=")[0] in varying]
