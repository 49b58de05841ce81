"""The run's progress display: without a terminal, one status line every interval, not one per update."""

from __future__ import annotations

import logging

from uf_experiments.pipeline import progress as progress_mod
from uf_experiments.pipeline.budget import Meter
from uf_experiments.pipeline.progress import Progress


def test_no_tty_writes_a_status_line_per_interval(monkeypatch, caplog):
    clock = [1000.0]
    monkeypatch.setattr(progress_mod.time, "monotonic", lambda: clock[0])
    p = Progress({"generation": 300, "judge": 100}, Meter(), interval_s=5.0, live=False)
    with caplog.at_level(logging.INFO, logger="uf_experiments.pipeline.progress"):
        for _ in range(240):  # 240 updates over 30 s of clock time
            clock[0] += 0.125
            p.advance("generation", sent=True)
        for _ in range(100):
            p.advance("judge")
        p.close()
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 30 / 5 + 1  # one per 5 s, and the final line
    assert lines[0].startswith("progress: generation 40/300  judge 0/100")
    assert lines[-1].startswith("progress: generation 240/300  judge 100/100")
    assert "8.0 req/s" in lines[-1]  # 240 requests sent in 30 s


def test_totals_can_grow_and_shrink():
    p = Progress({"generation": 4, "judge": 4}, Meter(), live=False)
    p.add_total("judge", -2)
    assert p.totals["judge"] == 2
