"""The only code that knows the order of the stages: load -> sample -> generate -> judge -> binarize -> write."""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uf_experiments import __version__
from uf_experiments.binarize import binarize, completion_scores, pair_to_record
from uf_experiments.config import build_engine, resolve_model_path, validate
from uf_experiments.costs import Meter, add_request, api_usd, empty_entry, format_plan, max_request_usd, total_of
from uf_experiments.engines.cache import RequestCache, engine_identity
from uf_experiments.data import load_prompts
from uf_experiments.judge.judging import JudgeItem, Outcome, make_items, rate, request_for
from uf_experiments.judge.judging import outcomes as combine_outcomes
from uf_experiments.pool import generation_seed, sample_models
from uf_experiments.principles import choose as choose_principle
from uf_experiments.principles import name_of as principle_name
from uf_experiments.records import Completion, Prompt, Request, Usage
from uf_experiments.tracking import start_tracker

log = logging.getLogger(__name__)


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


@dataclass
class StageStats:
    """Requests, tokens, engine time and $ of one stage, in total and per model. Cache hits cost nothing; what
    they would have cost at API prices is reported as saved."""

    usage: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    saved: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    hits: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    engine_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    wall_s: float = 0.0

    def record(self, completions: Sequence[Completion]) -> None:
        for c in completions:
            name = c.request.model
            if c.cached:
                self.hits[name] += 1
                self.saved[name] += c.usage
            else:
                self.calls[name] += 1
                self.usage[name] += c.usage
                self.failures[name] += c.text is None

    def to_dict(self, models: dict[str, Any]) -> dict[str, Any]:
        names = sorted(set(self.calls) | set(self.hits) | set(self.engine_s))
        per_model = {}
        for name in names:
            m, u = models[name], self.usage[name]
            usd = api_usd(m.price, u) + self.engine_s[name] / 3600 * m.gpu_hour_usd
            per_model[name] = {
                "requests": self.calls[name] + self.hits[name],
                "engine_calls": self.calls[name],
                "cache_hits": self.hits[name],
                "failures": self.failures[name],
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "cached_tokens": u.cached_tokens,
                "engine_s": round(self.engine_s[name], 3),
                "cost_usd": round(usd, 6),
                "saved_usd": round(api_usd(m.price, self.saved[name]), 6),
            }
        total = sum(self.usage.values(), Usage())
        return {
            "requests": sum(v["requests"] for v in per_model.values()),
            "engine_calls": sum(self.calls.values()),
            "cache_hits": sum(self.hits.values()),
            "failures": sum(self.failures.values()),
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "cached_tokens": total.cached_tokens,
            "cost_usd": round(sum(v["cost_usd"] for v in per_model.values()), 6),
            "saved_usd": round(sum(v["saved_usd"] for v in per_model.values()), 6),
            "wall_s": round(self.wall_s, 3),
            "by_model": per_model,
        }


def model_identity(model: DictConfig, path: str) -> str:
    """The request cache's identity of a model's engine (see engines/cache.py)."""
    return engine_identity(OmegaConf.to_container(model.engine, resolve=True), path)


def _progress(desc: str, total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True, leave=True)


def _ticker(bar: Any, meter: Meter) -> Callable[[Completion], None]:
    """Progress: one step per completion, live tokens and $ in the bar."""

    def tick(_: Completion) -> None:
        bar.update(1)
        bar.set_postfix_str(meter.postfix(), refresh=False)

    return tick


class ModelRunner:
    """One model's engine behind the request cache: hits are answered from the cache, the engine is loaded on
    the first miss (a fully cached model is never loaded), every new completion is committed as it arrives,
    and ``close`` frees the engine."""

    def __init__(self, model_cfg: DictConfig, cache: RequestCache | None, stats: StageStats, meter: Meter,
                 on_result: Callable[[Completion], None] | None = None) -> None:
        self.model_cfg, self.cache, self.stats, self.meter, self.on_result = model_cfg, cache, stats, meter, on_result
        self.path = resolve_model_path(model_cfg)
        self.identity = model_identity(model_cfg, self.path)
        self.engine: Any = None
        self._loaded_at = 0.0
        self.poll_s = 0.5

    def _arrived(self, completion: Completion) -> None:
        if self.cache is not None:
            self.cache.put(self.identity, completion)
        self.meter.add(completion, self.model_cfg)
        if self.on_result:
            self.on_result(completion)

    def _within_budget(self, misses: list[Request]) -> tuple[list[Request], list[Completion]]:
        """The misses that fit the budget (each priced at its upper bound), and refusals for the rest."""
        if self.meter.budget is None:
            return misses, []
        if self.engine is None and self.model_cfg.gpu_hour_usd and not self.meter.admits(0.0):
            send = []
        else:
            send, reserved = [], 0.0
            for r in misses:
                cost = max_request_usd(self.model_cfg, self.path, r.messages, r.max_tokens)
                if not self.meter.admits(reserved + cost):
                    break
                send.append(r)
                reserved += cost
        refused = [Completion(r, None, error=f"not sent: budget_usd={self.meter.budget} could be exceeded")
                   for r in misses[len(send):]]
        self.meter.refused += len(refused)
        return send, refused

    def generate(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer ``requests`` in order: cache hits, then this job's claimed misses through the engine, then
        (parallel jobs) the ones another job is answering, read from the cache as they land."""
        results: dict[str, Completion] = {}
        pending = list(requests)
        while pending:
            hits = self.cache.get_many(self.identity, pending) if self.cache is not None else {}
            for c in hits.values():
                results[c.request.key] = c
                if self.on_result:
                    self.on_result(c)
            misses = [r for r in pending if r.key not in hits]
            mine, theirs = self.cache.claim(self.identity, misses) if self.cache is not None else (misses, [])
            try:
                results.update((c.request.key, c) for c in self._send(mine))
            finally:
                if self.cache is not None:
                    self.cache.release(self.identity, mine)
            if theirs:
                time.sleep(self.poll_s)  # another job is answering these: wait for its answers
            claimed = {r.key for r in mine} | {r.key for r in theirs}
            pending = theirs + [r for r in misses if r.key not in claimed]  # + any answered meanwhile
        out = [results[r.key] for r in requests]
        self.stats.record(out)
        return out

    def _send(self, misses: list[Request]) -> list[Completion]:
        """The engine's answers to ``misses`` (loading it first), within the budget."""
        misses, refused = self._within_budget(misses)
        for c in refused:
            if self.on_result:
                self.on_result(c)
        if not misses:
            return refused
        if self.engine is None:
            self._loaded_at = time.perf_counter()
            self.engine = build_engine(self.model_cfg, self.path)
        return refused + self.engine.generate(misses, on_result=self._arrived)

    def close(self) -> None:
        if self.engine is not None:
            try:
                self.engine.close()
            finally:
                self.engine = None
                seconds = time.perf_counter() - self._loaded_at
                self.stats.engine_s[self.model_cfg.name] += seconds
                self.meter.add_gpu(seconds, self.model_cfg)


# ---------------------------------------------------------------- generation


def generation_requests(cfg: DictConfig, prompts: Sequence[Prompt]) -> list[Request]:
    """One request per (prompt, chosen model), each under its own principle's system prompt (if any)."""
    roster = list(cfg.pool.models)
    requests = []
    for p in prompts:
        for model in sample_models(roster, cfg.pool.size, cfg.sampling.n, cfg.seed, p.prompt_id):
            _, system = choose_principle(cfg.principles.distribution, p.source, cfg.seed, p.prompt_id, model, 0)
            user = {"role": "user", "content": p.instruction}
            requests.append(
                Request(
                    model=model,
                    messages=({"role": "system", "content": system}, user) if system else (user,),
                    max_tokens=cfg.sampling.max_new_tokens,
                    temperature=cfg.sampling.temperature,
                    top_p=cfg.sampling.top_p,
                    seed=generation_seed(cfg.seed, p.prompt_id, model, 0),
                    tag=p.prompt_id,
                )
            )
    return requests


def generate(cfg: DictConfig, requests: Sequence[Request], stats: StageStats, cache: RequestCache | None,
             meter: Meter) -> dict[str, Completion]:
    """Every request, grouped by model in roster order, one engine at a time. Returns key -> completion."""
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        by_model[r.model].append(r)
    out: dict[str, Completion] = {}
    bar = _progress("generate", len(requests))
    try:
        for name in cfg.pool.models:
            if by_model.get(name):
                runner = ModelRunner(cfg.pool.models[name], cache, stats, meter, _ticker(bar, meter))
                try:
                    out.update((c.request.key, c) for c in runner.generate(by_model[name]))
                finally:
                    runner.close()
    finally:
        bar.close()
    return out


# ---------------------------------------------------------------- judge


def judge(cfg: DictConfig, items: list[JudgeItem], stats: StageStats, cache: RequestCache | None,
          meter: Meter) -> None:
    """Rate every item with the judge engine (loaded once, freed at the end), re-asking what did not parse."""
    bar = _progress("judge", len(items))
    runner = ModelRunner(cfg.judge.model, cache, stats, meter, lambda c: bar.set_postfix_str(meter.postfix()))
    try:
        rate(items, runner.generate, cfg.judge, cfg.aspect, cfg.seed, on_done=bar.update)
    finally:
        runner.close()
        bar.close()


# ---------------------------------------------------------------- rows, metrics, files


def completions_by_prompt(gen_requests: Sequence[Request], completions: dict[str, Completion]) -> dict[str, list[Completion]]:
    """The successful completions of each prompt, in generation order (a failed one is left out and counted)."""
    out: dict[str, list[Completion]] = defaultdict(list)
    for r in gen_requests:
        c = completions[r.key]
        if c.text is not None:
            out[r.tag].append(c)
    return out


def build_rows(prompts: Sequence[Prompt], comps: dict[str, list[Completion]], outcomes: dict[tuple[str, str], Outcome],
               aspects: Sequence[str], judge_model: str) -> list[dict[str, Any]]:
    rows = []
    for p in prompts:
        done = comps.get(p.prompt_id)
        if not done:
            continue
        systems = [c.request.messages[0]["content"] if c.request.messages[0]["role"] == "system" else None for c in done]
        row: dict[str, Any] = {
            "prompt_id": p.prompt_id,
            "prompt_index": p.index,
            "source": p.source,
            "instruction": p.instruction,
            "principles": [principle_name(s) for s in systems],
            "system_prompts": systems,
            "generations": [c.text for c in done],
            "generation_models": [c.request.model for c in done],
            "judge_model": judge_model,
        }
        got = {a: outcomes[(p.prompt_id, a)] for a in aspects}
        row.update(
            ratings={a: o.ratings for a, o in got.items()},
            rationales={a: o.rationales for a, o in got.items()},
            types={a: o.types for a, o in got.items()},
            judge_order={a: o.order for a, o in got.items()},
            parse_status={a: o.status for a, o in got.items()},
            judge_raw={a: o.raw for a, o in got.items()},
        )
        rows.append(row)
    return rows


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    if len(xs) < 3:
        return None
    mx, my = mean(xs), mean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return round(sxy / (sxx * syy) ** 0.5, 4) if sxx and syy else None


def judge_metrics(rows: Sequence[dict[str, Any]], aspects: Sequence[str], report: Any, score: str | None,
                  mean_over: Sequence[str] | None = None) -> dict[str, Any]:
    n_items = len(rows) * len(aspects)
    failures = {a: sum(not r["parse_status"][a] == "ok" for r in rows) for a in aspects}
    per_model: dict[str, list[float]] = defaultdict(list)
    lengths, values = [], []
    for r in rows:
        for i, (text, s) in enumerate(zip(r["generations"], completion_scores(r["ratings"], len(r["generations"]), score, mean_over))):
            if s is not None:
                per_model[r["generation_models"][i]].append(s)
                lengths.append(float(len(text)))
                values.append(s)
    chosen: dict[str, int] = defaultdict(int)
    rejected: dict[str, int] = defaultdict(int)
    for p in report.pairs:
        chosen[p.chosen_model] += 1
        rejected[p.rejected_model] += 1
    candidates = len(report.pairs) + report.ties_dropped
    return {
        "parse_failure_rate": round(sum(failures.values()) / n_items, 4) if n_items else None,
        "parse_failure_rate_by_aspect": {a: round(f / len(rows), 4) if rows else None for a, f in failures.items()},
        "tie_rate": round(report.ties / candidates, 4) if candidates else None,
        "mean_margin": round(mean(p.score_chosen - p.score_rejected for p in report.pairs), 4) if report.pairs else None,
        "rating_length_correlation": _pearson(lengths, values),
        "mean_rating_by_model": {m: round(mean(v), 4) for m, v in sorted(per_model.items())},
        "chosen_by_model": dict(sorted(chosen.items())),
        "rejected_by_model": dict(sorted(rejected.items())),
    }


def plan_run(cfg: DictConfig, cache: RequestCache | None, label: str) -> dict[str, Any]:
    """Every request the run will send, what the cache already holds, estimated tokens and $. Calls no model."""
    prompts = load_prompts(cfg.dataset).prompts
    gen_requests = generation_requests(cfg, prompts)
    gen_out = cfg.planning.generation_output_tokens or cfg.sampling.max_new_tokens
    judge_out = cfg.planning.judge_output_tokens or cfg.judge.max_new_tokens
    stages: dict[str, dict[str, dict[str, Any]]] = {"generation": {}, "judge": {}}
    known: dict[str, Completion] = {}
    for name, model in cfg.pool.models.items():
        reqs = [r for r in gen_requests if r.model == name]
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
    by_prompt: dict[str, list[Request]] = defaultdict(list)
    for r in gen_requests:
        by_prompt[r.tag].append(r)
    for p in prompts:
        reqs = by_prompt[p.prompt_id]
        exact = all(r.key in known for r in reqs)
        texts = [known[r.key].text if exact else placeholder for r in reqs]
        items = make_items(p, texts, cfg.aspect, cfg.seed, cfg.judge.swap)
        judge_reqs = [request_for(it, cfg.judge, cfg.aspect[it.aspect], cfg.seed) for it in items]
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


def flip_counts(outcomes: dict[tuple[str, str], Outcome], aspects: Sequence[str]) -> dict[str, list[int]]:
    """Per aspect: [flipped, compared] completion pairs between the two presentation orders (judge.swap)."""
    return {a: [sum(o.flips for (_, asp), o in outcomes.items() if asp == a),
                sum(o.compared for (_, asp), o in outcomes.items() if asp == a)] for a in aspects}


def flip_rates(counts: dict[str, list[int]]) -> dict[str, float | None]:
    return {a: round(f / c, 4) if c else None for a, (f, c) in counts.items()}


def write_outputs(run_dir: Path, rows: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> tuple[Any, Any]:
    from datasets import Dataset

    rated = Dataset.from_list(rows)
    rated.to_parquet(str(run_dir / "rated.parquet"))
    prefs = Dataset.from_list(pairs) if pairs else Dataset.from_dict({k: [] for k in (
        "prompt_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected", "chosen_model", "rejected_model")})
    prefs.to_parquet(str(run_dir / "preferences.parquet"))
    prefs.save_to_disk(str(run_dir / "preferences"))
    return rated, prefs


def _hydra_context(cfg: DictConfig) -> tuple[Path, str | None, str]:
    """(run dir, W&B group, W&B name) from Hydra's runtime, or defaults outside Hydra."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return Path.cwd(), None, cfg.experiment
    hc = HydraConfig.get()
    run_dir = Path(hc.runtime.output_dir)
    overrides = ",".join(sorted(o for o in hc.overrides.task if not o.startswith(("experiment=", "plan=", "cache."))))
    multirun = _enum(hc.mode) in ("MULTIRUN", "RunMode.MULTIRUN", "2")
    group = cfg.tracking.get("group") or (Path(hc.sweep.dir).name if multirun else None)
    return run_dir, group, overrides or cfg.experiment


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Run one job; returns the summary that is also written to ``summary.json`` (with ``plan=true``: the plan,
    written to ``plan.json``, and no model is called)."""
    validate(cfg)
    hydra_dir, group, name = _hydra_context(cfg)
    run_dir = Path(run_dir or hydra_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.plan:
        cache = RequestCache(cfg.cache.path) if cfg.cache.enabled and Path(cfg.cache.path).exists() else None
        try:
            plan = plan_run(cfg, cache, name)
        finally:
            if cache is not None:
                cache.close()
        (run_dir / "plan.json").write_text(json.dumps(plan, indent=2))
        log.info("\n%s", format_plan(plan))
        return plan
    t0 = time.perf_counter()
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    tracker = start_tracker(cfg.tracking, run_dir, plain, group, name)  # type: ignore[arg-type]
    exit_code = 1
    cache = RequestCache(cfg.cache.path, claim_ttl_s=cfg.cache.claim_ttl_s) if cfg.cache.enabled else None
    try:
        summary = _run(cfg, run_dir, tracker, t0, cache)
        exit_code = 0
        return summary
    finally:
        if cache is not None:
            cache.close()
        tracker.finish(exit_code)


def _run(cfg: DictConfig, run_dir: Path, tracker: Any, t0: float, cache: RequestCache | None) -> dict[str, Any]:
    wall: dict[str, float] = {}
    aspects = list(cfg.aspect)

    t = time.perf_counter()
    loaded = load_prompts(cfg.dataset)
    prompts = loaded.prompts
    wall["load"] = time.perf_counter() - t
    log.info("%d prompts (%d rows read, %d empty and %d duplicate skipped)", len(prompts), loaded.rows,
             loaded.skipped_empty, loaded.skipped_duplicate)

    gen_stats = StageStats()
    t = time.perf_counter()
    gen_requests = generation_requests(cfg, prompts)
    meter = Meter(cfg.budget_usd)
    completions = generate(cfg, gen_requests, gen_stats, cache, meter)
    gen_stats.wall_s = wall["generation"] = time.perf_counter() - t

    judge_stats = StageStats()
    t = time.perf_counter()
    comps = completions_by_prompt(gen_requests, completions)
    aspect_cfgs = cfg.aspect
    items = [it for p in prompts if comps.get(p.prompt_id)
             for it in make_items(p, [c.text for c in comps[p.prompt_id]], aspect_cfgs, cfg.seed, cfg.judge.swap)]
    judge(cfg, items, judge_stats, cache, meter)
    outcomes = combine_outcomes(items, aspect_cfgs, _enum(cfg.judge.swap_combine))
    judge_stats.wall_s = wall["judge"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = build_rows(prompts, comps, outcomes, aspects, cfg.judge.model.name)
    mean_over = [a for a in aspects if not aspect_cfgs[a].per_completion] or aspects
    report = binarize(rows, _enum(cfg.binarize.recipe), cfg.binarize.score, _enum(cfg.binarize.ties), cfg.seed, mean_over)
    pairs = [pair_to_record(p) for p in report.pairs]
    rated_ds, prefs_ds = write_outputs(run_dir, rows, pairs)
    wall["binarize_write"] = time.perf_counter() - t

    models = {**{k: v for k, v in cfg.pool.models.items()}, cfg.judge.model.name: cfg.judge.model}
    generation = gen_stats.to_dict(models)
    judging = judge_stats.to_dict(models)
    total_usd = round(generation["cost_usd"] + judging["cost_usd"], 6)
    metrics = judge_metrics(rows, aspects, report, cfg.binarize.score, mean_over)
    flips = flip_counts(outcomes, aspects) if cfg.judge.swap else None
    if flips is not None:
        metrics["flip_rate_by_aspect"] = flip_rates(flips)
    metrics["usd_per_pair"] = round(total_usd / len(pairs), 6) if pairs else None
    wall["total"] = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "experiment": cfg.experiment,
        "version": __version__,  # the uf-experiments version that made this run
        "stopped": (f"budget_usd={cfg.budget_usd} reached: {meter.refused} requests not sent" if meter.refused
                    else None),
        "run_dir": str(run_dir),
        "counts": {
            "rows_read": loaded.rows,
            "skipped_empty": loaded.skipped_empty,
            "skipped_duplicate": loaded.skipped_duplicate,
            "prompts": len(prompts),
            "completions": sum(c.text is not None for c in completions.values()),
            "generation_failures": sum(c.text is None for c in completions.values()),
            "rated_rows": len(rows),
            "judge_items": len(outcomes),
            "judged": sum(o.ok for o in outcomes.values()),
            "parse_failures": sum(not o.ok for o in outcomes.values()),
            "judge_requests": judging["requests"],
            "engine_calls": generation["engine_calls"] + judging["engine_calls"],
            "cache_hits": generation["cache_hits"] + judging["cache_hits"],
            "pairs": len(pairs),
            "ties": report.ties,
            "ties_dropped": report.ties_dropped,
            "skipped_unscored": report.skipped_unscored,
            **({"flips_by_aspect": flips} if flips is not None else {}),
        },
        "generation": generation,
        "judge": judging,
        "cost_usd": {"generation": generation["cost_usd"], "judge": judging["cost_usd"], "total": total_usd,
                     "saved_by_cache": round(generation["saved_usd"] + judging["saved_usd"], 6)},
        "wall_time_s": {k: round(v, 3) for k, v in wall.items()},
        "metrics": metrics,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("%d rated rows, %d pairs, $%.4f -> %s", len(rows), len(pairs), total_usd, run_dir)

    tracker.log_table("rated", *_rated_table(rows, aspects))
    tracker.log_table("pairs", ["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "chosen_model", "rejected_model"],
                      [[p.prompt, p.chosen, p.rejected, p.score_chosen, p.score_rejected, p.chosen_model, p.rejected_model] for p in report.pairs])
    tracker.log_summary(summary)
    tracker.log_files([run_dir / f for f in ("rated.parquet", "preferences.parquet", "summary.json", "preferences")])

    if cfg.output.push_to_hub:
        repo = cfg.output.push_to_hub
        rated_ds.push_to_hub(repo, config_name="rated", private=cfg.output.private)
        prefs_ds.push_to_hub(repo, config_name="preferences", private=cfg.output.private)
        log.info("pushed rated and preferences to %s (private=%s)", repo, cfg.output.private)
    return summary


def _rated_table(rows: Sequence[dict[str, Any]], aspects: Sequence[str]) -> tuple[list[str], list[list[Any]]]:
    """One row per completion: instruction, source, model, principle, completion, then rating + rationale per aspect."""
    columns = ["prompt_id", "instruction", "source", "model", "principle", "completion"]
    columns += [f"{kind}_{a}" for a in aspects for kind in ("rating", "rationale")]
    data = []
    for r in rows:
        for i, text in enumerate(r["generations"]):
            cells = [r["prompt_id"], r["instruction"], r["source"], r["generation_models"][i], r["principles"][i], text]
            for a in aspects:
                cells += [r["ratings"][a][i], r["rationales"][a][i]]
            data.append(cells)
    return columns, data
