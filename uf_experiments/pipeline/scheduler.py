"""The one scheduler: every engine busy at once, the judge right behind the generators.

- Every generation request is known at the start; each pool model's worker gets all of its requests at once
  (in prompt order) and answers them within its own limits: API models side by side, each with its own
  ``max_in_flight`` / RPM / TPM; vLLM models one after another on the device, each fed whole batches.
- A prompt is judged as soon as every generation request of that prompt has settled: one request per
  (prompt, aspect) shows its successful completions side by side (one per completion for ``critique``). A prompt
  left with fewer than two successful completions (of two or more asked) is not judged, and is counted.
- A reply that does not parse is re-asked at once (a new seed), up to ``judge.max_parse_retries`` times.
- When all of a prompt's judge items are final, the prompt is finished: ``on_finished`` gets it (the runner
  builds its row, binarizes it and writes it; rows reach the files in prompt order).
- When the run stops early (a signal, an endpoint down, the budget) every request not sent settles as "not
  sent", so every prompt still finishes, with what it has.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from uf_experiments.config.schema import enum_value
from uf_experiments.core.records import Completion, Prompt, Request
from uf_experiments.core.status import NOT_JUDGED, not_sent
from uf_experiments.judge.judging import JudgeItem, Outcome, item_count, make_items, request_for, settle
from uf_experiments.judge.judging import outcomes as combine_outcomes
from uf_experiments.pipeline.context import RunContext
from uf_experiments.pipeline.worker import DeviceSlot, ModelWorker

log = logging.getLogger(__name__)


def given_completions(prompt: Prompt) -> list[Completion | None]:
    """The completions a dataset already holds (``experiment=rejudge``), as the judge sees them: no request was
    sent for them and nothing was paid (their request only records who wrote them, under which system prompt)."""
    user = {"role": "user", "content": prompt.instruction}
    out: list[Completion | None] = []
    for g in prompt.given:
        messages = ({"role": "system", "content": g.system_prompt}, user) if g.system_prompt else (user,)
        out.append(Completion(Request(g.model, messages, 0, 0.0, 0.0, 0, tag=prompt.prompt_id), g.text))
    return out


@dataclass
class PromptState:
    position: int
    prompt: Prompt
    requests: list[Request]
    completions: list[Completion | None]
    waiting: int  # generation requests not settled yet
    items: list[JudgeItem] = field(default_factory=list)
    open_items: int = 0

    def successful(self) -> list[Completion]:
        return [c for c in self.completions if c is not None and c.text is not None]


@dataclass
class Finished:
    """One prompt, done: its successful completions (generation order) and one outcome per aspect."""

    position: int
    prompt: Prompt
    completions: list[Completion]
    outcomes: dict[str, Outcome]
    generation_failures: int
    judged: bool  # False: too few completions, or the run stopped before judging it


def not_judged(n: int, reason: str) -> Outcome:
    return Outcome([None] * n, [None] * n, [[] for _ in range(n)], list(range(n)), f"{NOT_JUDGED}: {reason}",
                   [])


class Scheduler:
    def __init__(self, ctx: RunContext, prompts: Sequence[Prompt], requests: Sequence[Sequence[Request]],
                 on_finished: Callable[[Finished], None]) -> None:
        self.ctx, self.stop, self.progress, self.on_finished = ctx, ctx.stop, ctx.progress, on_finished
        config = ctx.config
        self.judge_cfg, self.aspects = config.judge, config.aspect
        self.seed, self.swap = int(config.seed), bool(config.judge.swap)
        self.max_parse_retries = int(config.judge.max_parse_retries)
        self.output = enum_value(config.judge.output)
        self.swap_combine = enum_value(config.judge.swap_combine)
        self.states = [PromptState(i, p, list(reqs), [None] * len(reqs), len(reqs)) if not p.given
                       else PromptState(i, p, [], given_completions(p), 0)
                       for i, (p, reqs) in enumerate(zip(prompts, requests, strict=True))]
        self.by_key: dict[str, tuple[PromptState, int]] = {}
        self.judging: dict[str, tuple[PromptState, JudgeItem]] = {}
        self.unfinished = len(self.states)
        self.done = asyncio.Event()
        self.prompts_too_few = 0  # judged no: fewer than two successful completions of two or more asked
        # aspect -> field -> texts whose accepted rating came without it (a Type: line, a rationale)
        self.missing_fields: dict[str, dict[str, int]] = {a: {} for a in self.aspects}

    async def run(self) -> None:
        slot = DeviceSlot()
        ctx = self.ctx
        models = ctx.config.pool.models
        by_model: dict[str, list[Request]] = defaultdict(list)
        for state in self.states:
            for i, r in enumerate(state.requests):
                self.by_key[r.key] = (state, i)
                by_model[r.model].append(r)
        workers = [ModelWorker(ctx, models[name], ctx.gen_stats, slot, self._generated)
                   for name in models if by_model.get(name)]
        self.judge = ModelWorker(ctx, ctx.config.judge.model, ctx.judge_stats, slot, self._judged)
        self.workers = [*workers, self.judge]
        tasks = [asyncio.create_task(w.run(), name=f"worker:{w.name}") for w in self.workers]
        for w in workers:  # roster order: the device goes to the pool's models in this order, then the judge
            w.submit(by_model[w.name])
            w.seal()
        for state in self.states:
            if state.waiting == 0:  # nothing to generate (a dataset's own completions, or none asked)
                self._ready(state)
        if not self.states:
            self.done.set()
        stopped = asyncio.ensure_future(self.stop.event.wait())
        finished = asyncio.ensure_future(self.done.wait())
        failed = asyncio.ensure_future(asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION))
        try:
            await asyncio.wait({stopped, finished, failed}, return_when=asyncio.FIRST_COMPLETED)
            for t in tasks:
                if t.done() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
            self.judge.seal()
            await asyncio.gather(*tasks)
            for _ in range(100):  # deliveries the last settlements scheduled (and the refusals they cause)
                if self.done.is_set():
                    break
                await asyncio.sleep(0)
            for state in self.states:  # never happens unless a delivery was lost: finish them, say so
                if state.completions or state.open_items:
                    log.error("prompt %s had unsettled requests when the engines finished", state.prompt.prompt_id)
                    self._finish(state, judged=False, reason="requests left unsettled")
        finally:
            for f in (stopped, finished, failed):
                f.cancel()
            for t in tasks:
                t.cancel()

    def batch_status(self) -> str:
        """One line on the open batches of every Batch API engine (empty when there are none)."""
        entries = [e for w in getattr(self, "workers", []) if w.engine is not None and hasattr(w.engine, "status")
                   for e in w.engine.status()]
        if not entries:
            return ""
        from uf_experiments.engines.openai.batch import format_status

        return format_status(entries)

    # ------------------------------------------------------------------ generation

    def _generated(self, c: Completion) -> None:
        entry = self.by_key.pop(c.request.key, None)
        if entry is None:
            return
        state, i = entry
        state.completions[i] = c
        state.waiting -= 1
        self.progress.advance("generation", sent=not c.cached and c.error is None)
        if state.waiting == 0:
            self._ready(state)

    def _ready(self, state: PromptState) -> None:
        done = state.successful()
        asked = len(state.requests)
        # the judge's progress total counted every completion asked for; settle it to what is judged
        expected = item_count(self.aspects, self.swap, len(state.completions))
        if len(done) < min(2, asked) or not done:  # (given completions: asked=0, the loader kept >= 2)
            self.prompts_too_few += 1
            reason = f"only {len(done)} of {asked} completions"
            self.progress.add_total("judge", -expected)
            self._finish(state, judged=False, reason=reason)
            return
        if self.stop.stopped:
            self.progress.add_total("judge", -expected)
            self._finish(state, judged=False, reason=f"the run stopped ({self.stop.reason})")
            return
        texts = [c.text for c in done]
        state.items = make_items(state.prompt, texts, self.aspects, self.seed, self.swap)
        state.open_items = len(state.items)
        self.progress.add_total("judge", len(state.items) - expected)
        reqs = [self._request(state, it) for it in state.items]
        self.judge.submit(reqs)

    # ------------------------------------------------------------------ judge

    def _request(self, state: PromptState, item: JudgeItem) -> Request:
        req = request_for(item, self.judge_cfg, self.aspects[item.aspect], self.seed)
        self.judging[req.key] = (state, item)
        return req

    def _judged(self, c: Completion) -> None:
        entry = self.judging.pop(c.request.key, None)
        if entry is None:
            return
        state, item = entry
        if settle(item, c, self.aspects[item.aspect], self.output, self.max_parse_retries):
            if item.ratings is not None:
                counts = self.missing_fields[item.aspect]
                for name, n in item.missing.items():
                    counts[name] = counts.get(name, 0) + n
            state.open_items -= 1
            self.progress.advance("judge", sent=not c.cached and not not_sent(c.error))
            if state.open_items == 0:
                self._finish(state, judged=True)
        else:
            self.judge.submit([self._request(state, item)])  # re-ask at once, with a new seed

    # ------------------------------------------------------------------ finished prompts

    def _finish(self, state: PromptState, judged: bool, reason: str = "") -> None:
        done = state.successful()
        failures = sum(c is not None and c.text is None and not not_sent(c.error)
                       for c in state.completions)
        if judged:
            got = combine_outcomes(state.items, self.aspects, self.swap_combine)
            outcomes = {a: got[(state.prompt.prompt_id, a)] for a in self.aspects}
        else:
            outcomes = {a: not_judged(len(done), reason) for a in self.aspects}
        self.on_finished(Finished(state.position, state.prompt, done, outcomes, failures, judged))
        state.items, state.completions, state.requests = [], [], []  # free the texts: the row is written
        state.open_items = 0
        self.unfinished -= 1
        if self.unfinished == 0:
            self.done.set()
