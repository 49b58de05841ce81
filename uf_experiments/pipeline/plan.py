"""``plan=true``: every request a run will send, what the request cache already holds, estimated tokens and $,
before anything is spent (README, "Costs, plans and budgets").

Without a pilot, each reply is assumed to be ``planning.*_output_tokens`` long (default: its max tokens, an
upper bound: the plan says so). With ``planning.pilot=K`` the first K prompts are run for real first (a small
spend that goes into the request cache, so it is not wasted): the plan then uses the output lengths measured per
model and stage, counts the pilot's answers as cached, and gives each estimate a spread (standard deviation from
the measured lengths, and the pilot's own uncertainty of their mean).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from uf_experiments.config.schema import RunConfig
from uf_experiments.core.records import Completion, Request
from uf_experiments.data.sources import load_prompts
from uf_experiments.engines.build import resolve_model_path
from uf_experiments.engines.cache import RequestCache, engine_identity
from uf_experiments.generation.requests import generation_requests
from uf_experiments.judge.judging import make_items, request_for
from uf_experiments.metrics.pricing import add_request, empty_entry, finish_entry, total_of

Lengths = Mapping[str, Mapping[str, Mapping[str, float]]]  # stage -> model -> {"n", "mean", "sd"}


def _per_request(measured: Mapping[str, float] | None, fallback: int) -> tuple[float, float]:
    """(expected output tokens, variance of one request's estimate) from a pilot's measurement, or the fallback
    with no spread."""
    if not measured or not measured.get("n"):
        return float(fallback), 0.0
    n, mean, sd = measured["n"], measured["mean"], measured["sd"]
    return mean, sd * sd * (1 + 1 / n)  # the request's own spread, plus the uncertainty of the measured mean


def plan_run(cfg: RunConfig, cache: RequestCache | None, label: str, lengths: Lengths | None = None,
             pilot: dict[str, Any] | None = None) -> dict[str, Any]:
    prompts = load_prompts(cfg.dataset).prompts
    per_prompt = generation_requests(cfg, prompts)
    gen_out = cfg.planning.generation_output_tokens or cfg.sampling.max_new_tokens
    judge_out = cfg.planning.judge_output_tokens or cfg.judge.max_new_tokens
    lengths = lengths or {}
    stages: dict[str, dict[str, dict[str, Any]]] = {"generation": {}, "judge": {}}
    known: dict[str, Completion] = {}
    expected_text: dict[str, float] = {}
    for name, model in cfg.pool.models.items():
        reqs = [r for reqs in per_prompt for r in reqs if r.model == name]
        if not reqs:
            continue
        path = resolve_model_path(model, fetch=False)  # a plan fetches nothing
        hits = cache.get_many(engine_identity(model.engine, path), reqs) if cache else {}
        known.update(hits)
        own_out = cfg.planning.generation_output_tokens or reqs[0].max_tokens  # a member may set its own cap
        mean, var = _per_request(lengths.get("generation", {}).get(name), own_out)
        expected_text[name] = mean
        entry = stages["generation"].setdefault(name, empty_entry())
        for r in reqs:
            add_request(entry, model, path, r.messages, mean, hits.get(r.key), var)
    jm = cfg.judge.model
    jpath = resolve_model_path(jm, fetch=False)
    jid = engine_identity(jm.engine, jpath)
    entry = stages["judge"].setdefault(jm.name, empty_entry())
    judge_mean, judge_var = _per_request(lengths.get("judge", {}).get(jm.name), judge_out)
    for p, reqs in zip(prompts, per_prompt, strict=True):
        exact = all(r.key in known for r in reqs)
        # a completion of the expected length (~1 token per "x ") where it is not in the cache yet; a dataset's
        # own completions (experiment=rejudge) are known exactly
        texts = [g.text for g in p.given] if p.given else [
            known[r.key].text if exact else "x " * max(int(expected_text.get(r.model, gen_out)) - 1, 0) for r in reqs]
        items = make_items(p, texts, cfg.aspect, cfg.seed, cfg.judge.swap)
        judge_reqs: Sequence[Request] = [request_for(it, cfg.judge, cfg.aspect[it.aspect], cfg.seed) for it in items]
        hits = cache.get_many(jid, judge_reqs) if cache and exact else {}
        for r in judge_reqs:
            add_request(entry, jm, jpath, r.messages, judge_mean, hits.get(r.key), judge_var)
    for stage in stages.values():
        for e in stage.values():
            finish_entry(e)
    notes = []
    if pilot is None:
        caps = "/".join(str(c) for c in sorted({int(v) for v in expected_text.values()}) or [gen_out])  # per member
        notes.append(f"outputs assumed {caps} tokens per completion and {judge_out} per judge reply (upper bounds "
                     "unless planning.*_output_tokens is set; planning.pilot=20 measures them instead)")
    else:
        notes.append(f"pilot: the first {pilot['prompts']} prompts were run for real (${pilot['paid_usd']:.4f} spent, "
                     f"now in the cache); outputs estimated from the lengths it measured, ± one standard deviation")
        missing = [f"{stage}/{m}" for stage, by_model in stages.items() for m in by_model
                   if not lengths.get(stage, {}).get(m)]
        if missing:
            notes.append(f"no pilot answers for {', '.join(missing)}: their outputs are the upper bound")
    notes.append("judge re-asks of unparseable replies are not counted")
    if any(m.gpu_hour_usd for m in [*cfg.pool.models.values(), jm]):
        notes.append("self-hosted engines are charged gpu_hour_usd on measured engine time: known only after a run "
                     "(cached answers count at their stored cost)")
    if not all(e["exact_prompt_tokens"] for st in stages.values() for e in st.values()):
        notes.append("~ marks prompt tokens estimated at 4 characters a token (no tokenizer available)")
    plan: dict[str, Any] = {"label": label, "prompts": len(prompts), "stages": stages, "total": total_of(stages),
                            "notes": notes}
    if pilot is not None:
        plan["pilot"] = pilot
    return plan
