"""core.status: the statuses a run passes around, and the stop state (first reason wins, its exit code)."""

from __future__ import annotations

import asyncio
import logging

from uf_experiments.core.status import (
    EXIT_BUDGET,
    EXIT_CONFIG,
    EXIT_ENDPOINT_DOWN,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    INTERRUPTED,
    NOT_JUDGED,
    NOT_SENT,
    StopState,
    judged,
    not_sent,
)


def test_exit_codes_are_the_documented_ones():
    assert (EXIT_OK, EXIT_CONFIG, EXIT_ENDPOINT_DOWN, EXIT_BUDGET, EXIT_SIGINT, EXIT_SIGTERM) == (0, 2, 3, 4, 130, 143)
    assert INTERRUPTED == (130, 143)


def test_statuses():
    assert not judged(f"{NOT_JUDGED}: only 1 of 2 completions") and judged("ok") and judged("no rating parsed")
    assert not_sent(NOT_SENT + "interrupted by SIGINT") and not not_sent(None) and not not_sent("timeout")
    assert NOT_SENT == "not sent: " and NOT_JUDGED == "not judged"


def test_the_first_reason_wins_and_sets_the_event(caplog):
    async def go() -> StopState:
        stop = StopState(grace_s=5.0)
        assert not stop.stopped and stop.code == EXIT_OK and not stop.event.is_set()
        with caplog.at_level(logging.WARNING):
            stop.stop("budget_usd=1 reached", EXIT_BUDGET)
            stop.stop("interrupted by SIGINT", EXIT_SIGINT)
        return stop

    stop = asyncio.run(go())
    assert stop.stopped and stop.event.is_set() and stop.grace_s == 5.0
    assert (stop.reason, stop.code) == ("budget_usd=1 reached", EXIT_BUDGET)
    assert [r.getMessage() for r in caplog.records] == ["stopping: budget_usd=1 reached"]
