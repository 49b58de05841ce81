"""``plan=true``: every request a run will send, what the request cache already holds, estimated tokens and $.
Calls no model (README, "Costs, plans and budgets")."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig

from uf_experiments.config import resolve_model_path
from uf_experiments.costs import add_request, empty_entry, total_of
from uf_experiments.data import load_prompts
from uf_experiments.engines.cache import RequestCache
from uf_experiments.engines.worker import model_identity
from uf_experiments.judge.judging import make_items, request_for
from uf_experiments.records import Completion, Request
from uf_experiments.requests import generation_requests


def plan_run(cfg: DictConfig, cache: RequestCache | None, label: str) -> dict[str, Any]:
    prompts = load_prompts(cfg.dataset).prompts
    per_prompt = generation_requests(cfg, prompts)
    gen_out = cfg.planning.generation_output_tokens or cfg.sampling.max_new_tokens
    judge_out = cfg.planning.judge_output_tokens or cfg.judge.max_new_tokens
    stages: dict[str, dict[str, dict[str, Any]]] = {"generation": {}, "judge": {}}
    known: dict[str, Completion] = {}
    for name, model in cfg.pool.models.items():
        reqs = [r for reqs in per_prompt for r in reqs if r.model == name]
        if not reqs:
            continue
        path = resolve_model_path(model)
        hits = cache.get_many(model_identity(model, path), reqs) if cache else {}
        known.update(hits)
        entry = stages["generation"].setdefault(name, empty_entry())
        for r in reqs:
            add_request(entry, model, path, r.messages, gen_out, r.key in hits)
    jm = cfg.judge.model
    jpath = resolve_model_path(jm)
    jid = model_identity(jm, jpath)
    entry = stages["judge"].setdefault(jm.name, empty_entry())
    placeholder = "x " * max(gen_out - 1, 0)  # a completion of the assumed length (~1 token per "x ")
    for p, reqs in zip(prompts, per_prompt, strict=True):
        exact = all(r.key in known for r in reqs)
        texts = [known[r.key].text if exact else placeholder for r in reqs]
        items = make_items(p, texts, cfg.aspect, cfg.seed, cfg.judge.swap)
        judge_reqs: Sequence[Request] = [request_for(it, cfg.judge, cfg.aspect[it.aspect], cfg.seed) for it in items]
        hits = cache.get_many(jid, judge_reqs) if cache and exact else {}
        for r in judge_reqs:
            add_request(entry, jm, jpath, r.messages, judge_out, r.key in hits)
    for stage in stages.values():
        for e in stage.values():
            e["est_usd"] = round(e["est_usd"], 6)
    notes = [f"outputs assumed {gen_out} tokens per completion and {judge_out} per judge reply (upper bounds "
             "unless planning.*_output_tokens is set); judge re-asks are not counted"]
    if any(m.gpu_hour_usd for m in [*cfg.pool.models.values(), jm]):
        notes.append("self-hosted engines are charged gpu_hour_usd on measured engine time: shown after the run")
    if not all(e["exact_prompt_tokens"] for st in stages.values() for e in st.values()):
        notes.append("~ marks prompt tokens estimated at 4 characters a token (no tokenizer available)")
    return {"label": label, "prompts": len(prompts), "stages": stages, "total": total_of(stages), "notes": notes}
