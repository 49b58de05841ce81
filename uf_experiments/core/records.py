"""The records every stage passes along: frozen dataclasses, no behaviour beyond small helpers."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

Message = dict[str, str]


@dataclass(frozen=True)
class GivenCompletion:
    """A completion the dataset already holds (``experiment=rejudge``): judged as it is, never generated.

    ``reference`` maps an aspect name to the dataset's own rating of this completion (openbmb/UltraFeedback's
    GPT-4 annotation, an earlier run's judge, or a mapped column); None for "N/A", a missing or unreadable
    rating. Aspects the dataset does not rate at all are absent.
    """

    text: str
    model: str = "unknown"
    principle: str | None = None
    system_prompt: str | None = None
    reference: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class Prompt:
    prompt_id: str
    source: str
    instruction: str
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. correct_answers / world knowledge
    index: int = 0  # position in the loaded dataset (before sharding): the order of merged shards
    given: tuple[GivenCompletion, ...] = ()  # completions the dataset holds: judged, not generated (rejudge)


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
        )


@dataclass(frozen=True)
class Request:
    """One call to one model. ``key`` hashes everything that changes the answer."""

    model: str  # the model's name in the pool / judge config
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int
    response_format: dict[str, Any] | None = None  # a JSON schema for structured output
    tag: str = ""  # what the caller needs to route the answer back (not part of the key)

    @cached_property
    def key(self) -> str:  # computed once per request object (a frozen dataclass keeps it in __dict__)
        blob = json.dumps(
            {
                "model": self.model,
                "messages": list(self.messages),
                "max_tokens": self.max_tokens,
                "temperature": self.temperature,
                "top_p": self.top_p,
                "seed": self.seed,
                "response_format": self.response_format,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()


@dataclass(frozen=True)
class Completion:
    request: Request
    text: str | None  # None when the engine failed for this request
    usage: Usage = Usage()
    finish_reason: str | None = None
    error: str | None = None
    cached: bool = False  # served from the request cache: no engine call, nothing paid now
    cost_usd: float | None = None  # attributed cost: API tokens x price when paid, or a share of GPU time
    engine_s: float = 0.0  # self-hosted engines: this request's share of the engine's measured time
    batch: bool = False  # answered through a batch API (priced at price.batch_discount)


@dataclass(frozen=True)
class Rating:
    """One aspect's verdict on one completion. ``rating`` is None for N/A or a parse failure."""

    aspect: str
    rating: int | None
    rationale: str = ""
    types: tuple[int, ...] = ()


@dataclass(frozen=True)
class Pair:
    prompt_id: str
    prompt: str
    chosen: str
    rejected: str
    score_chosen: float
    score_rejected: float
    chosen_model: str
    rejected_model: str
