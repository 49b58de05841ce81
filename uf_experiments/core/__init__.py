"""The core every stage shares: the records a run passes along (prompts, requests, completions, ratings, pairs)
and the statuses it passes around (not sent, not judged, why it stopped, the exit codes). Imports nothing else of
the package."""

from uf_experiments.core.records import Completion, GivenCompletion, Message, Pair, Prompt, Rating, Request, Usage
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

__all__ = [
    "EXIT_BUDGET",
    "EXIT_CONFIG",
    "EXIT_ENDPOINT_DOWN",
    "EXIT_OK",
    "EXIT_SIGINT",
    "EXIT_SIGTERM",
    "INTERRUPTED",
    "NOT_JUDGED",
    "NOT_SENT",
    "Completion",
    "GivenCompletion",
    "Message",
    "Pair",
    "Prompt",
    "Rating",
    "Request",
    "StopState",
    "Usage",
    "judged",
    "not_sent",
]
