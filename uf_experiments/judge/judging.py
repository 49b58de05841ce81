"""The judge stage over records: which requests to send, re-asking what did not parse, and mapping every
rating back to its own completion.

- Side-by-side aspects: one request per (prompt, aspect) shows all n completions, in a seeded random order drawn
  per (prompt, aspect) (the paper's single shuffle). ``order[j]`` is the completion shown as text j+1; ratings
  come back keyed by text label and are mapped through it.
- Per-completion aspects (``critique``): one request per completion, judged alone.
- ``judge.swap=true`` judges side-by-side aspects a second time in the reversed order. ``flip rate`` = the share
  of completion pairs whose relation (better / worse / tie) differs between the two orders.
  ``judge.swap_combine`` decides the stored rating: ``first`` keeps the first order's ratings (the swap only
  measures position bias); ``mean`` stores the mean of both orders, and a (prompt, aspect) where either order
  failed to parse is a failure (a one-sided rating is never passed off as the mean).
- A reply that does not parse is re-asked (a new seed) up to ``judge.max_parse_retries`` times, then it is a
  failure with its reason and raw text: never a 0, never a rating shifted to another completion.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from uf_experiments.config.schema import enum_value
from uf_experiments.core.records import Completion, Prompt, Rating, Request
from uf_experiments.core.status import NOT_JUDGED, NOT_SENT, not_sent
from uf_experiments.judge.parse import parse_reply
from uf_experiments.judge.prompts import judge_messages, response_schema


@dataclass
class JudgeItem:
    prompt: Prompt
    aspect: str
    targets: tuple[int, ...]  # the completions this request rates (all, or one for per-completion aspects)
    texts: tuple[str, ...]  # their texts, in target order
    order: tuple[int, ...]  # order[j] = index into targets of the text shown as text j+1
    swap: bool = False  # the reversed-order pass of judge.swap
    ratings: list[Rating] | None = None  # in target order, once parsed
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    raw: str | None = None
    not_judged: str | None = None  # why the judge was never asked (the run stopped before sending)
    # auxiliary fields the accepted reply left out, counted over its texts: {"type": 2, "rationale": 1} (the
    # ratings were kept: judge/parse.py, Parsed.missing)
    missing: dict[str, int] = field(default_factory=dict)


@dataclass
class Outcome:
    """One (prompt, aspect), combined over its requests, in completion order."""

    ratings: list[float | None]
    rationales: list[str | None]
    types: list[list[int]]
    order: list[int]  # completion index shown as text j+1 (first pass); identity for per-completion aspects
    status: str  # "ok" or why not
    raw: list[str | None]  # the last reply of every request of this (prompt, aspect)
    flips: int = 0
    compared: int = 0  # completion pairs compared across the two orders (judge.swap)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


def shuffled_order(seed: int, prompt_id: str, aspect: str, n: int) -> tuple[int, ...]:
    order = list(range(n))
    random.Random(f"order:{seed}:{prompt_id}:{aspect}").shuffle(order)
    return tuple(order)


def make_items(prompt: Prompt, texts: Sequence[str], aspects: Mapping[str, Any], seed: int,
               swap: bool) -> list[JudgeItem]:
    items = []
    for name, aspect in aspects.items():
        if aspect.per_completion:
            items += [JudgeItem(prompt, name, (i,), (t,), (0,)) for i, t in enumerate(texts)]
            continue
        order = shuffled_order(seed, prompt.prompt_id, name, len(texts))
        targets = tuple(range(len(texts)))
        items.append(JudgeItem(prompt, name, targets, tuple(texts), order))
        if swap and len(texts) > 1:
            items.append(JudgeItem(prompt, name, targets, tuple(texts), order[::-1], swap=True))
    return items


def item_count(aspects: Mapping[str, Any], swap: bool, n: int) -> int:
    """How many items :func:`make_items` makes for a prompt with ``n`` completions."""
    return sum(n if a.per_completion else 1 + (swap and n > 1) for a in aspects.values())


def request_for(item: JudgeItem, judge: Any, aspect: Any, seed: int) -> Request:
    output = enum_value(judge.output)
    shown = [item.texts[i] for i in item.order]
    key = f"judge:{seed}:{item.prompt.prompt_id}:{item.aspect}:{item.targets}:{item.swap}:{item.attempts}"
    return Request(
        model=judge.model.name,
        messages=judge_messages(aspect, item.prompt, shown, output),
        max_tokens=judge.max_new_tokens,
        temperature=judge.temperature,
        top_p=judge.top_p,
        seed=random.Random(key).getrandbits(31),
        response_format=response_schema(aspect, len(shown), judge.rationale_max_chars) if output == "json" else None,
        tag=f"{item.prompt.prompt_id}\t{item.aspect}",
    )


def settle(item: JudgeItem, reply: Completion, aspect: Any, output: str, max_parse_retries: int) -> bool:
    """Take one reply for ``item``: True if the item is final (rated, failed for good, or never sent), False if
    it must be asked again (``request_for`` then gives the re-ask, with a new seed)."""
    if not_sent(reply.error):
        item.not_judged = reply.error[len(NOT_SENT):]
        return True
    item.attempts += 1
    item.raw = reply.text
    parsed = parse_reply(reply.text, len(item.texts), aspect, output)
    if parsed.ratings is not None:
        item.ratings = [parsed.ratings[item.order.index(i)] for i in range(len(item.texts))]
        item.missing = parsed.missing_counts()
        return True
    item.errors.append(reply.error or parsed.error or "unknown")
    return item.attempts > max_parse_retries


def rate(items: Sequence[JudgeItem], generate: Callable[[list[Request]], list[Completion]], judge: Any,
         aspects: Mapping[str, Any], seed: int, on_done: Callable[[int], None] | None = None) -> None:
    """Ask, parse, re-ask the failures, in rounds; results land on the items. ``generate`` is a batch call (the
    scheduler re-asks one item at a time instead, through :func:`settle`)."""
    output = enum_value(judge.output)
    pending = list(items)
    while pending:
        completions = generate([request_for(it, judge, aspects[it.aspect], seed) for it in pending])
        still = []
        for it, comp in zip(pending, completions, strict=True):
            if settle(it, comp, aspects[it.aspect], output, judge.max_parse_retries):
                if on_done:
                    on_done(1)
            else:
                still.append(it)
        pending = still


def _relation(a: float | None, b: float | None) -> int | None:
    return None if a is None or b is None else (a > b) - (a < b)


def _failure(it: JudgeItem) -> str:
    if it.not_judged is not None:
        return f"{NOT_JUDGED}: {it.not_judged}"
    return f"failed after {it.attempts} attempts: {it.errors[-1] if it.errors else 'not asked'}"


def combine(items: Sequence[JudgeItem], n: int, per_completion: bool, swap_combine: str = "first") -> Outcome:
    """Merge the requests of one (prompt, aspect) into one rating per completion."""
    raw = [it.raw for it in items]
    if per_completion:
        ratings: list[float | None] = [None] * n
        rationales: list[str | None] = [None] * n
        types: list[list[int]] = [[] for _ in range(n)]
        failed = []
        for it in items:
            i = it.targets[0]
            if it.ratings is None:
                failed.append(f"completion {i}: {_failure(it)}")
                continue
            r = it.ratings[0]
            ratings[i], rationales[i], types[i] = r.rating, r.rationale, list(r.types)
        return Outcome(ratings, rationales, types, list(range(n)), "; ".join(failed) or "ok", raw)

    main = next(it for it in items if not it.swap)
    second = next((it for it in items if it.swap), None)
    order = [main.targets[j] for j in main.order]
    if main.ratings is None:
        return Outcome([None] * n, [None] * n, [[] for _ in range(n)], order, _failure(main), raw)
    ratings = [r.rating for r in main.ratings]
    rationales = [r.rationale for r in main.ratings]
    types = [list(r.types) for r in main.ratings]
    flips = compared = 0
    status = "ok"
    if second is not None:
        if second.ratings is None:
            if swap_combine == "mean":
                return Outcome([None] * n, [None] * n, [[] for _ in range(n)], order,
                               "swap pass " + _failure(second), raw)
        else:
            other = [r.rating for r in second.ratings]
            for i, j in combinations(range(n), 2):
                before, after = _relation(ratings[i], ratings[j]), _relation(other[i], other[j])
                if before is not None and after is not None:
                    compared += 1
                    flips += before != after
            if swap_combine == "mean":
                ratings = [None if a is None or b is None else (a + b) / 2 for a, b in zip(ratings, other, strict=True)]
    return Outcome(ratings, rationales, types, order, status, raw, flips, compared)


def outcomes(items: Sequence[JudgeItem], aspects: Mapping[str, Any],
             swap_combine: str = "first") -> dict[tuple[str, str], Outcome]:
    """Every (prompt id, aspect) of ``items``, combined: one rating per completion."""
    grouped: dict[tuple[str, str], list[JudgeItem]] = {}
    for it in items:
        grouped.setdefault((it.prompt.prompt_id, it.aspect), []).append(it)
    out = {}
    for (pid, aspect), its in grouped.items():
        per_completion = bool(aspects[aspect].per_completion)
        n = len(its) if per_completion else len(its[0].texts)  # one request per completion, or all side by side
        out[(pid, aspect)] = combine(its, n, per_completion, swap_combine)
    return out
