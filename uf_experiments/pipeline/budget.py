"""``budget_usd``: the money a run has spent (all stages) and the reservations that keep it under its budget.

A request reserves its upper-bound cost (prompt tokens + max tokens at the model's price) only while it is in
flight, and is charged its actual cost when it lands; a request that would take spent + reserved past the budget
is not sent. So a run whose actual spend fits the budget is not stopped, and one that would exceed it stops before
exceeding it, with at most the in-flight reservations as slack. GPU time is charged as it is measured (after each
vLLM call) and checked before the next call (or load)."""

from __future__ import annotations

from collections.abc import Sequence

from uf_experiments.config.schema import ModelConfig
from uf_experiments.core.records import Completion, Request
from uf_experiments.metrics.pricing import max_request_usd


class Meter:
    """Money this run has spent (all stages), for the progress display and ``budget_usd``."""

    def __init__(self, budget_usd: float | None = None) -> None:
        self.budget = budget_usd
        self.usd = 0.0  # paid so far
        self.reserved = 0.0  # upper bounds of the requests in flight
        self.tokens = 0

    def reserve(self, upper_bound_usd: float) -> bool:
        """Reserve ``upper_bound_usd`` for one request about to be sent; False if that could pass the budget."""
        if self.budget is None:
            return True
        if self.usd + self.reserved + upper_bound_usd > self.budget + 1e-12:
            return False
        self.reserved += upper_bound_usd
        return True

    def settle(self, reserved_usd: float, completion: Completion | None, cost_usd: float) -> None:
        """A request landed (or was dropped): free its reservation and charge what it actually cost."""
        self.reserved = max(0.0, self.reserved - reserved_usd)
        self.usd += cost_usd
        if completion is not None and not completion.cached:
            self.tokens += completion.usage.prompt_tokens + completion.usage.completion_tokens

    def exhausted(self) -> bool:
        return self.budget is not None and self.usd >= self.budget - 1e-12

    def postfix(self) -> str:
        budget = f" of ${self.budget:.2f}" if self.budget is not None else ""
        return f"{self.tokens:,} tok ${self.usd:.4f}{budget}"


def reserve_batch(meter: Meter, model: ModelConfig, path: str, batch: Sequence[Request],
                  is_api: bool) -> list[float] | None:
    """Each request's reservation, or None (nothing stays reserved) when the budget cannot take the batch now.
    A self-hosted model reserves nothing: it is refused only once the budget is spent."""
    if meter.budget is None:
        return [0.0] * len(batch)
    if not is_api:
        return None if meter.exhausted() else [0.0] * len(batch)
    reserved: list[float] = []
    for r in batch:
        bound = max_request_usd(model, path, r.messages, r.max_tokens)
        if not meter.reserve(bound):
            break
        reserved.append(bound)
    if len(reserved) == len(batch):
        return reserved
    for bound in reserved:
        meter.settle(bound, None, 0.0)
    return None


def refusal_stops(meter: Meter, is_api: bool) -> bool:
    """After :func:`reserve_batch` refused a batch: True when the run must stop, because nothing is in flight whose
    landing could free room (a self-hosted model: the budget is spent)."""
    return not is_api or meter.reserved <= 1e-12


def budget_reason(meter: Meter, model_name: str) -> str:
    """The reason a run stopped on its budget."""
    return (f"budget_usd={meter.budget} reached: ${meter.usd:.4f} spent; the next request to {model_name} could "
            "pass it")
