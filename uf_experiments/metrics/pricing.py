"""Costs before and during a run: prices, token estimates and the plan (dry run); the live meter and the budget
are in ``pipeline/budget.py``.

- ``price`` (per 1M input / cached input / output tokens) applies to API engines; ``gpu_hour_usd`` to
  self-hosted ones, charged on measured engine wall time (a plan cannot know that time, so it shows GPU hours
  only after a run).
- A plan counts every request the run will send, asks the request cache which are already answered (free), and
  estimates tokens: prompts exactly with the model's tokenizer where one is available (tiktoken for OpenAI
  models, the local tokenizer for a vLLM model on disk), else ~4 characters a token; outputs by
  ``planning.generation_output_tokens`` / ``planning.judge_output_tokens`` (null: the max_new_tokens, an upper bound).
  Judge prompts are built exactly when a prompt's completions are already cached, else from the template with
  completions of the assumed length. Re-asks of unparseable judge replies are not in the plan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from uf_experiments.core.records import Completion, Message, Usage
from uf_experiments.engines.build import is_api_engine, is_batch_engine
from uf_experiments.metrics.tokens import light_counter

log = logging.getLogger(__name__)


def api_usd(price: Any, u: Usage) -> float:
    fresh = u.prompt_tokens - u.cached_tokens
    return (fresh * price.input_per_1m + u.cached_tokens * price.cached_input_per_1m
            + u.completion_tokens * price.output_per_1m) / 1e6


def usd_at_rate(price: Any, u: Usage, batch: bool = False) -> float:
    """``api_usd``, at the Batch API rate (x ``price.batch_discount``) when ``batch``: for estimates before a
    request is sent (the plan, budget reservations), with ``batch=config.is_batch_engine(model)``."""
    usd = api_usd(price, u)
    return usd * float(getattr(price, "batch_discount", 1.0)) if batch else usd


def _is_api(model: Any) -> bool:
    return is_api_engine(model.engine)


def _is_batch(model: Any) -> bool:
    """Requests of this model go through the Batch API (priced at ``price.batch_discount``)."""
    return is_batch_engine(model)


@lru_cache(maxsize=64)
def _counter(kind: str, name: str) -> Callable[[Sequence[Message]], int] | None:
    """A token counter for a model's chat messages, or None when no tokenizer is at hand (offline, no file)."""
    if kind == "api":
        try:
            import tiktoken

            try:
                enc = tiktoken.encoding_for_model(name)
            except KeyError:
                enc = tiktoken.get_encoding("o200k_base")
            # ~4 tokens of chat framing per message, 3 to prime the reply (OpenAI's cookbook rule)
            return lambda msgs: sum(4 + len(enc.encode(m["content"])) for m in msgs) + 3
        except Exception:  # noqa: BLE001 - tiktoken fetches its vocabularies on first use; offline it cannot
            return None
    if Path(name).is_dir():
        light = light_counter(name)  # tokenizers + the chat template: no torch (metrics/tokens.py)
        if light is not None:
            return light
        try:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(name, local_files_only=True)
            def count(msgs: Sequence[Message]) -> int:
                text = tok.apply_chat_template(list(msgs), add_generation_prompt=True, tokenize=False)
                return len(tok(text, add_special_tokens=False)["input_ids"])

            return count
        except Exception:  # noqa: BLE001
            return None
    return None


def count_prompt_tokens(model: Any, path: str, messages: Sequence[Message]) -> tuple[int, bool]:
    """(tokens, exact): exact with a tokenizer, else ~4 characters a token."""
    counter = _counter("api" if _is_api(model) else "local", path)
    if counter is not None:
        return int(counter(messages)), True
    return sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages), False


def completion_usd(model: Any, completion: Completion, batch_discount: float | None = None) -> float:
    """The attributed cost of one answered request: its tokens x the model's price (x ``price.batch_discount``
    when it came through a batch API) plus its share of a self-hosted engine's time x ``gpu_hour_usd``."""
    usd = api_usd(model.price, completion.usage)
    if completion.batch:
        usd *= batch_discount if batch_discount is not None else getattr(model.price, "batch_discount", 1.0)
    return usd + completion.engine_s / 3600 * model.gpu_hour_usd


def max_request_usd(model: Any, path: str, messages: Sequence[Message], max_tokens: int) -> float:
    """An upper bound of one API request's cost: its prompt tokens plus max_tokens of output."""
    if not _is_api(model):
        return 0.0
    prompt, _ = count_prompt_tokens(model, path, messages)
    return usd_at_rate(model.price, Usage(prompt, max_tokens, 0), _is_batch(model))


# ---------------------------------------------------------------- plans


def empty_entry() -> dict[str, Any]:
    return {"requests": 0, "cached": 0, "to_send": 0, "est_prompt_tokens": 0, "est_output_tokens": 0,
            "est_output_sd": 0.0, "est_usd": 0.0, "cached_usd": 0.0, "est_total_usd": 0.0,
            "exact_prompt_tokens": True}


def add_request(entry: dict[str, Any], model: Any, path: str, messages: Sequence[Message], output_tokens: float,
                hit: Completion | None, output_var: float = 0.0) -> None:
    """Count one request of a plan: a cache hit at its stored (attributed) cost, else estimated tokens and $.
    ``output_var`` is the variance of the estimate of its output tokens (a pilot's measurement)."""
    entry["requests"] += 1
    if hit is not None:
        entry["cached"] += 1
        if hit.cost_usd is not None:
            entry["cached_usd"] += hit.cost_usd
        elif _is_api(model):
            entry["cached_usd"] += usd_at_rate(model.price, hit.usage, _is_batch(model))
        return
    tokens, exact = count_prompt_tokens(model, path, messages)
    entry["to_send"] += 1
    entry["est_prompt_tokens"] += tokens
    entry["est_output_tokens"] += output_tokens
    entry["est_output_sd"] += output_var  # a variance while adding up; finish_entry() takes the root
    entry["exact_prompt_tokens"] &= exact
    if _is_api(model):
        entry["est_usd"] += usd_at_rate(model.price, Usage(tokens, int(round(output_tokens)), 0), _is_batch(model))


def finish_entry(entry: dict[str, Any]) -> None:
    entry["est_output_tokens"] = int(round(entry["est_output_tokens"]))
    entry["est_output_sd"] = round(entry["est_output_sd"] ** 0.5, 1)
    entry["est_usd"] = round(entry["est_usd"], 6)
    entry["cached_usd"] = round(entry["cached_usd"], 6)
    entry["est_total_usd"] = round(entry["est_usd"] + entry["cached_usd"], 6)


SUMMED = ("requests", "cached", "to_send", "est_prompt_tokens", "est_output_tokens", "est_usd", "cached_usd",
          "est_total_usd")


def _summed(entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The plan entries added up (exact only if all are; standard deviations add as variances)."""
    out = empty_entry()
    for e in entries:
        for k in SUMMED:
            out[k] += e[k]
        out["est_output_sd"] += e.get("est_output_sd", 0.0) ** 2
        out["exact_prompt_tokens"] &= e["exact_prompt_tokens"]
    for k in ("est_usd", "cached_usd", "est_total_usd"):
        out[k] = round(out[k], 6)
    out["est_output_sd"] = round(out["est_output_sd"] ** 0.5, 1)
    return out


def total_of(stages: dict[str, dict[str, dict[str, Any]]]) -> dict[str, Any]:
    return _summed([e for by_model in stages.values() for e in by_model.values()])


def format_plan(plan: dict[str, Any]) -> str:
    """The plan as a table: per stage and model, requests, what the cache holds, what will be sent, estimated
    tokens, the estimated spend (``to spend $``) and the attributed cost of the whole work (``total $``: cached
    answers at their stored cost plus the spend)."""
    lines = [f"plan: {plan['label']}  ({plan['prompts']} prompts)",
             f"{'stage':<11}{'model':<28}{'requests':>9}{'cached':>8}{'to send':>9}{'prompt tok':>12}"
             f"{'output tok':>18}{'to spend $':>12}{'total $':>11}"]

    def out(e: dict[str, Any]) -> str:
        sd = e.get("est_output_sd") or 0
        return f"{e['est_output_tokens']:,}" + (f" ±{sd:,.0f}" if sd else "")

    for stage, by_model in plan["stages"].items():
        for name, e in by_model.items():
            approx = "" if e["exact_prompt_tokens"] else "~"
            lines.append(f"{stage:<11}{name:<28}{e['requests']:>9}{e['cached']:>8}{e['to_send']:>9}"
                         f"{approx + format(e['est_prompt_tokens'], ','):>12}{out(e):>18}{e['est_usd']:>12.4f}"
                         f"{e['est_total_usd']:>11.4f}")
    t = plan["total"]
    lines.append(f"{'total':<39}{t['requests']:>9}{t['cached']:>8}{t['to_send']:>9}{t['est_prompt_tokens']:>12,}"
                 f"{out(t):>18}{t['est_usd']:>12.4f}{t['est_total_usd']:>11.4f}")
    if plan.get("notes"):
        lines += [f"note: {n}" for n in plan["notes"]]
    return "\n".join(lines)


def sweep_total(plans: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The grid total of a sweep's per-job plans."""
    return {"jobs": len(plans), "total": _summed([p["total"] for p in plans])}
