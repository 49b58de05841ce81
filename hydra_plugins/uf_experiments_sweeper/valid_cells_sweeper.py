"""``hydra/sweeper=valid_cells``: Hydra's BasicSweeper, minus the cells that can never run.

Hydra only instantiates plugins defined under the ``hydra_plugins`` package, so the class lives here; what it does
is in :mod:`uf_experiments.config.cells`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper


class ValidCellsSweeper(BasicSweeper):
    """Before the first batch is launched, every cell is composed and validated; the invalid ones are taken out
    (one line each on stderr, ``skipped_cells.json`` in the sweep dir), and a grid with none left is an error."""

    def __init__(self, max_batch_size: int | None = None, params: dict[str, str] | None = None) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self._checked = False

    def get_job_batch(self) -> Sequence[Sequence[str]]:
        if not self._checked:  # the first call comes before any job starts: check the whole grid
            self._checked = True
            self.overrides = self._valid_batches()
        return super().get_job_batch()

    def _valid_batches(self) -> list[list[Sequence[str]]]:
        from uf_experiments.config.cells import only_valid, swept_keys

        assert self.overrides is not None and self.config is not None and self.hydra_context is not None
        loader, master = self.hydra_context.config_loader, self.config

        def compose(overrides: list[str]) -> Any:
            return loader.load_sweep_config(master_config=master, sweep_overrides=overrides)

        cells = [cell for batch in self.overrides for cell in batch]
        return only_valid(self.overrides, compose, master.hydra.sweep.dir, swept_keys(cells))
