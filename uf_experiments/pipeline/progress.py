"""One live display for a run: a bar per stage (generation, judge) that advances per completion and per judged
item, with tokens, $ and requests per second. Without a terminal (a log file, SLURM) it writes one status line
every ``interval_s`` seconds instead of a line per update."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

from uf_experiments.pipeline.budget import Meter

log = logging.getLogger("uf_experiments.pipeline.progress")


class Progress:
    def __init__(self, totals: dict[str, int], meter: Meter, interval_s: float = 10.0,
                 live: bool | None = None) -> None:
        self.totals = dict(totals)
        self.done = dict.fromkeys(totals, 0)
        self.meter = meter
        self.requests = 0  # requests answered by an engine (not the cache)
        self.start = time.monotonic()
        self.interval_s = interval_s
        self.live = sys.stderr.isatty() if live is None else live
        self._last_line = self.start
        self.extra: Any = None  # a callable giving one more status line (the Batch API's open batches), or None
        self.bars: dict[str, Any] = {}
        if self.live:
            from tqdm.auto import tqdm

            for i, (stage, total) in enumerate(self.totals.items()):
                self.bars[stage] = tqdm(total=total, desc=f"{stage:<10}", unit="it", position=i, leave=True,
                                        dynamic_ncols=True, mininterval=0.2)

    def add_total(self, stage: str, n: int) -> None:
        self.totals[stage] += n
        if stage in self.bars:
            self.bars[stage].total = self.totals[stage]

    def advance(self, stage: str, n: int = 1, sent: bool = False) -> None:
        self.done[stage] += n
        self.requests += sent
        bar = self.bars.get(stage)
        if bar is not None:
            bar.update(n)
            bar.set_postfix_str(self.postfix(), refresh=False)
        else:
            now = time.monotonic()
            if now - self._last_line >= self.interval_s:
                self._last_line = now
                log.info("%s", self.line())

    def tick(self) -> None:
        """Called every ``interval_s`` by the run: the status line without a terminal even when nothing advanced,
        and the batches' status (they can wait for hours) in both modes."""
        now = time.monotonic()
        if not self.live and now - self._last_line >= self.interval_s * 0.99:
            self._last_line = now
            log.info("%s", self.line())
        extra = self.extra() if self.extra is not None else ""
        if extra:
            log.info("%s", extra)

    def postfix(self) -> str:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        return f"{self.meter.postfix()} {self.requests / elapsed:.1f} req/s"

    def line(self) -> str:
        stages = "  ".join(f"{s} {self.done[s]}/{self.totals[s]}" for s in self.totals)
        return f"progress: {stages}  {self.postfix()}  {time.monotonic() - self.start:.0f} s"

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if not self.live:
            log.info("%s", self.line())
