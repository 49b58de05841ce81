"""The statuses a run passes around: the error prefix of a request it never sent, the parse status of an aspect it
never asked the judge about, why and with which exit code it stopped (:class:`StopState`), and the exit codes
(README, "Exit codes")."""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)

NOT_SENT = "not sent: "  # the error prefix of a request the run stopped before sending
NOT_JUDGED = "not judged"  # parse_status prefix of an aspect the run did not ask the judge about

# Exit codes of a run that stopped before doing all its work (README, "Exit codes").
EXIT_OK = 0
EXIT_CONFIG = 2  # bad input or config (also: an engine that cannot be loaded)
EXIT_ENDPOINT_DOWN = 3
EXIT_BUDGET = 4  # budget_usd reached
EXIT_SIGINT = 130  # Ctrl-C
EXIT_SIGTERM = 143
INTERRUPTED = (EXIT_SIGINT, EXIT_SIGTERM)  # a signal: it stops a whole sweep, not just its cell


def judged(status: str) -> bool:
    """True if the judge was asked (whatever it answered)."""
    return not status.startswith(NOT_JUDGED)


def not_sent(error: str | None) -> bool:
    """True for the error of a request the run stopped before sending."""
    return error is not None and error.startswith(NOT_SENT)


class StopState:
    """Why the run stopped early (first reason wins), its exit code, and an event every worker watches."""

    def __init__(self, grace_s: float = 30.0) -> None:
        self.reason: str | None = None
        self.code = EXIT_OK
        self.grace_s = grace_s
        import asyncio  # here, not at the top: the CLI imports this module and --help / plan=true need no event loop

        self.event = asyncio.Event()

    def stop(self, reason: str, code: int) -> None:
        if self.reason is None:
            self.reason, self.code = reason, code
            log.warning("stopping: %s", reason)
        self.event.set()

    @property
    def stopped(self) -> bool:
        return self.reason is not None
