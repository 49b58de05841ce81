"""Post-hoc reports on finished run dirs: finding runs and a sweep's skipped cells (``runs``), the numbers cells
are compared on (``numbers``), the table (``table``), the plots (``plots``), what ends a ``-m`` sweep
(``sweep``), and merging the shards of one run (``merge``). Cheap to import: matplotlib and pyarrow load on use."""

from uf_experiments.report.merge import MergeError
from uf_experiments.report.numbers import grid_totals, metric_columns
from uf_experiments.report.plots import PLOTS, plot_all
from uf_experiments.report.runs import (
    CompareError,
    Row,
    collect,
    find_runs,
    find_skipped,
    parse_overrides,
    read_overrides,
)
from uf_experiments.report.sweep import TOTALS, Comparison, compare_dirs, describe_totals, sweep_end
from uf_experiments.report.table import markdown, notes, write_table

__all__ = [
    "PLOTS",
    "TOTALS",
    "CompareError",
    "Comparison",
    "MergeError",
    "Row",
    "collect",
    "compare_dirs",
    "describe_totals",
    "find_runs",
    "find_skipped",
    "grid_totals",
    "markdown",
    "metric_columns",
    "notes",
    "parse_overrides",
    "plot_all",
    "read_overrides",
    "sweep_end",
    "write_table",
]
