"""The only code that knows the order of the stages: load -> sample -> generate -> judge -> binarize -> write."""

from __future__ import annotations

import json
import logging
import random
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean
from typing import Any

from omegaconf import DictConfig, OmegaConf

from uf_experiments.binarize import binarize, completion_scores, pair_to_record
from uf_experiments.config import build_engine, validate
from uf_experiments.data import load_prompts
from uf_experiments.judge.parse import parse_reply
from uf_experiments.judge.prompts import judge_messages, response_schema
from uf_experiments.pool import generation_seed, sample_models
from uf_experiments.records import Completion, Prompt, Rating, Request, Usage
from uf_experiments.tracking import start_tracker

log = logging.getLogger(__name__)


def _enum(value: Any) -> str:
    return str(getattr(value, "value", value))


@dataclass
class StageStats:
    """Tokens, engine calls, wall time and $ of one stage, in total and per model."""

    usage: dict[str, Usage] = field(default_factory=lambda: defaultdict(Usage))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    failures: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    engine_s: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    wall_s: float = 0.0

    def record(self, completions: Sequence[Completion]) -> None:
        for c in completions:
            self.usage[c.request.model] += c.usage
            self.calls[c.request.model] += 1
            self.failures[c.request.model] += c.text is None

    def cost(self, models: dict[str, Any]) -> dict[str, float]:
        out = {}
        for name in set(self.usage) | set(self.engine_s):
            m, u = models[name], self.usage[name]
            fresh = u.prompt_tokens - u.cached_tokens
            usd = (fresh * m.price.input_per_1m + u.cached_tokens * m.price.cached_input_per_1m
                   + u.completion_tokens * m.price.output_per_1m) / 1e6
            usd += self.engine_s[name] / 3600 * m.gpu_hour_usd
            out[name] = round(usd, 6)
        return out

    def to_dict(self, models: dict[str, Any]) -> dict[str, Any]:
        cost = self.cost(models)
        per_model = {
            name: {
                "requests": self.calls[name],
                "failures": self.failures[name],
                "prompt_tokens": self.usage[name].prompt_tokens,
                "completion_tokens": self.usage[name].completion_tokens,
                "cached_tokens": self.usage[name].cached_tokens,
                "engine_s": round(self.engine_s[name], 3),
                "cost_usd": cost.get(name, 0.0),
            }
            for name in self.calls
        }
        total = sum(self.usage.values(), Usage())
        return {
            "requests": sum(self.calls.values()),
            "failures": sum(self.failures.values()),
            "prompt_tokens": total.prompt_tokens,
            "completion_tokens": total.completion_tokens,
            "cached_tokens": total.cached_tokens,
            "cost_usd": round(sum(cost.values()), 6),
            "wall_s": round(self.wall_s, 3),
            "by_model": per_model,
        }


def _progress(desc: str, total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="req", dynamic_ncols=True, leave=True)


def run_engine(model_cfg: DictConfig, requests: Sequence[Request], stats: StageStats,
               on_done: Callable[[int], None] | None = None) -> list[Completion]:
    """Load the model's engine, answer every request in one go, and always free the engine."""
    start = time.perf_counter()
    engine = build_engine(model_cfg)
    try:
        completions = engine.generate(requests, on_done=on_done)
    finally:
        engine.close()
        stats.engine_s[model_cfg.name] += time.perf_counter() - start
    stats.record(completions)
    return completions


# ---------------------------------------------------------------- generation


def generation_requests(cfg: DictConfig, prompts: Sequence[Prompt]) -> list[Request]:
    roster = list(cfg.pool.models)
    requests = []
    for p in prompts:
        for model in sample_models(roster, cfg.pool.size, cfg.sampling.n, cfg.seed, p.prompt_id):
            requests.append(
                Request(
                    model=model,
                    messages=({"role": "user", "content": p.instruction},),
                    max_tokens=cfg.sampling.max_new_tokens,
                    temperature=cfg.sampling.temperature,
                    top_p=cfg.sampling.top_p,
                    seed=generation_seed(cfg.seed, p.prompt_id, model, 0),
                    tag=p.prompt_id,
                )
            )
    return requests


def generate(cfg: DictConfig, requests: Sequence[Request], stats: StageStats) -> dict[str, Completion]:
    """Every request, grouped by model in roster order, one engine at a time. Returns key -> completion."""
    by_model: dict[str, list[Request]] = defaultdict(list)
    for r in requests:
        by_model[r.model].append(r)
    out: dict[str, Completion] = {}
    bar = _progress("generate", len(requests))
    try:
        for name in cfg.pool.models:
            if by_model.get(name):
                for c in run_engine(cfg.pool.models[name], by_model[name], stats, bar.update):
                    out[c.request.key] = c
    finally:
        bar.close()
    return out


# ---------------------------------------------------------------- judge


@dataclass
class JudgeItem:
    prompt: Prompt
    aspect: str
    texts: list[str]  # completions in generation order
    order: list[int]  # order[j] = index of the completion shown as text j+1
    ratings: list[Rating] | None = None  # in generation order, once parsed
    attempts: int = 0
    errors: list[str] = field(default_factory=list)
    raw: str | None = None


def shuffled_order(seed: int, prompt_id: str, aspect: str, n: int) -> list[int]:
    order = list(range(n))
    random.Random(f"order:{seed}:{prompt_id}:{aspect}").shuffle(order)
    return order


def judge_request(cfg: DictConfig, item: JudgeItem) -> Request:
    aspect = cfg.aspect[item.aspect]
    output = _enum(cfg.judge.output)
    shown = [item.texts[i] for i in item.order]
    return Request(
        model=cfg.judge.model.name,
        messages=judge_messages(aspect, item.prompt, shown, output),
        max_tokens=cfg.judge.max_new_tokens,
        temperature=cfg.judge.temperature,
        top_p=cfg.judge.top_p,
        seed=random.Random(f"judge:{cfg.seed}:{item.prompt.prompt_id}:{item.aspect}:{item.attempts}").getrandbits(31),
        response_format=response_schema(aspect, len(shown), cfg.judge.rationale_max_chars) if output == "json" else None,
        tag=f"{item.prompt.prompt_id}\t{item.aspect}",
    )


def judge(cfg: DictConfig, items: list[JudgeItem], stats: StageStats) -> None:
    """Rate every item; re-ask the ones that did not parse up to judge.max_parse_retries times."""
    output = _enum(cfg.judge.output)
    bar = _progress("judge", len(items))
    start = time.perf_counter()
    engine = build_engine(cfg.judge.model)
    try:
        pending = items
        for _ in range(cfg.judge.max_parse_retries + 1):
            if not pending:
                break
            requests = [judge_request(cfg, it) for it in pending]
            completions = engine.generate(requests)
            stats.record(completions)
            still = []
            for it, comp in zip(pending, completions, strict=True):
                it.attempts += 1
                it.raw = comp.text
                parsed = parse_reply(comp.text, len(it.texts), cfg.aspect[it.aspect], output)
                if parsed.ok:
                    shown = parsed.ratings
                    it.ratings = [shown[it.order.index(i)] for i in range(len(it.texts))]  # type: ignore[index]
                    bar.update(1)
                else:
                    it.errors.append(comp.error or parsed.error or "unknown")
                    still.append(it)
            pending = still
        bar.update(len(pending))
    finally:
        engine.close()
        bar.close()
        stats.engine_s[cfg.judge.model.name] += time.perf_counter() - start


# ---------------------------------------------------------------- rows, metrics, files


def build_rows(prompts: Sequence[Prompt], gen_requests: Sequence[Request], completions: dict[str, Completion],
               items: dict[tuple[str, str], JudgeItem], aspects: Sequence[str], judge_model: str) -> list[dict[str, Any]]:
    by_prompt: dict[str, list[Completion]] = defaultdict(list)
    for r in gen_requests:
        c = completions[r.key]
        if c.text is not None:
            by_prompt[r.tag].append(c)
    rows = []
    for p in prompts:
        comps = by_prompt.get(p.prompt_id, [])
        if not comps:
            continue
        row: dict[str, Any] = {
            "prompt_id": p.prompt_id,
            "source": p.source,
            "instruction": p.instruction,
            "principles": ["none"] * len(comps),
            "generations": [c.text for c in comps],
            "generation_models": [c.request.model for c in comps],
            "judge_model": judge_model,
        }
        ratings, rationales, order, status, raw, types = {}, {}, {}, {}, {}, {}
        for a in aspects:
            it = items[(p.prompt_id, a)]
            ok = it.ratings is not None
            ratings[a] = [r.rating for r in it.ratings] if ok else [None] * len(comps)
            rationales[a] = [r.rationale for r in it.ratings] if ok else [None] * len(comps)
            types[a] = [list(r.types) for r in it.ratings] if ok else [[] for _ in comps]
            order[a] = it.order
            status[a] = "ok" if ok else f"failed after {it.attempts} attempts: {it.errors[-1]}"
            raw[a] = it.raw
        row.update(ratings=ratings, rationales=rationales, types=types, judge_order=order, parse_status=status, judge_raw=raw)
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


def judge_metrics(rows: Sequence[dict[str, Any]], aspects: Sequence[str], report: Any, score: str | None) -> dict[str, Any]:
    n_items = len(rows) * len(aspects)
    failures = {a: sum(not r["parse_status"][a] == "ok" for r in rows) for a in aspects}
    per_model: dict[str, list[float]] = defaultdict(list)
    lengths, values = [], []
    for r in rows:
        for i, (text, s) in enumerate(zip(r["generations"], completion_scores(r["ratings"], len(r["generations"]), score))):
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
    overrides = ",".join(o for o in hc.overrides.task if not o.startswith("experiment="))
    multirun = _enum(hc.mode) in ("MULTIRUN", "RunMode.MULTIRUN", "2")
    group = cfg.tracking.get("group") or (Path(hc.sweep.dir).name if multirun else None)
    return run_dir, group, overrides or cfg.experiment


def run(cfg: DictConfig, run_dir: Path | None = None) -> dict[str, Any]:
    """Run one job; returns the summary that is also written to ``summary.json``."""
    validate(cfg)
    hydra_dir, group, name = _hydra_context(cfg)
    run_dir = Path(run_dir or hydra_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    plain = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    tracker = start_tracker(cfg.tracking, run_dir, plain, group, name)  # type: ignore[arg-type]
    exit_code = 1
    try:
        summary = _run(cfg, run_dir, tracker, t0)
        exit_code = 0
        return summary
    finally:
        tracker.finish(exit_code)


def _run(cfg: DictConfig, run_dir: Path, tracker: Any, t0: float) -> dict[str, Any]:
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
    completions = generate(cfg, gen_requests, gen_stats)
    gen_stats.wall_s = wall["generation"] = time.perf_counter() - t

    judge_stats = StageStats()
    t = time.perf_counter()
    by_prompt: dict[str, list[str]] = defaultdict(list)
    for r in gen_requests:
        if completions[r.key].text is not None:
            by_prompt[r.tag].append(completions[r.key].text)  # type: ignore[arg-type]
    items = {
        (p.prompt_id, a): JudgeItem(p, a, by_prompt[p.prompt_id], shuffled_order(cfg.seed, p.prompt_id, a, len(by_prompt[p.prompt_id])))
        for p in prompts
        if by_prompt.get(p.prompt_id)
        for a in aspects
    }
    judge(cfg, list(items.values()), judge_stats)
    judge_stats.wall_s = wall["judge"] = time.perf_counter() - t

    t = time.perf_counter()
    rows = build_rows(prompts, gen_requests, completions, items, aspects, cfg.judge.model.name)
    report = binarize(rows, _enum(cfg.binarize.recipe), cfg.binarize.score, _enum(cfg.binarize.ties), cfg.seed)
    pairs = [pair_to_record(p) for p in report.pairs]
    rated_ds, prefs_ds = write_outputs(run_dir, rows, pairs)
    wall["binarize_write"] = time.perf_counter() - t

    models = {**{k: v for k, v in cfg.pool.models.items()}, cfg.judge.model.name: cfg.judge.model}
    generation = gen_stats.to_dict(models)
    judging = judge_stats.to_dict(models)
    total_usd = round(generation["cost_usd"] + judging["cost_usd"], 6)
    metrics = judge_metrics(rows, aspects, report, cfg.binarize.score)
    metrics["usd_per_pair"] = round(total_usd / len(pairs), 6) if pairs else None
    wall["total"] = time.perf_counter() - t0
    summary: dict[str, Any] = {
        "experiment": cfg.experiment,
        "run_dir": str(run_dir),
        "counts": {
            "rows_read": loaded.rows,
            "skipped_empty": loaded.skipped_empty,
            "skipped_duplicate": loaded.skipped_duplicate,
            "prompts": len(prompts),
            "completions": sum(c.text is not None for c in completions.values()),
            "generation_failures": sum(c.text is None for c in completions.values()),
            "rated_rows": len(rows),
            "judge_items": len(items),
            "judged": sum(it.ratings is not None for it in items.values()),
            "parse_failures": sum(it.ratings is None for it in items.values()),
            "judge_requests": judging["requests"],
            "pairs": len(pairs),
            "ties": report.ties,
            "ties_dropped": report.ties_dropped,
            "skipped_unscored": report.skipped_unscored,
        },
        "generation": generation,
        "judge": judging,
        "cost_usd": {"generation": generation["cost_usd"], "judge": judging["cost_usd"], "total": total_usd},
        "wall_time_s": {k: round(v, 3) for k, v in wall.items()},
        "metrics": metrics,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    log.info("%d rated rows, %d pairs, $%.4f -> %s", len(rows), len(pairs), total_usd, run_dir)

    tracker.log_table("rated", *_rated_table(rows, aspects))
    tracker.log_table("pairs", ["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "chosen_model", "rejected_model"],
                      [[p.prompt, p.chosen, p.rejected, p.score_chosen, p.score_rejected, p.chosen_model, p.rejected_model] for p in report.pairs])
    tracker.log_summary(summary)

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
