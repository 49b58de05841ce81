"""Merge the run dirs of one sharded run into one: ``uf-experiments-merge OUT SHARD_DIRS_OR_SWEEP_DIR...``.

The shards must be the same run apart from ``dataset.shard.index`` (same config otherwise, indices 0..k-1 each
once). Rows and pairs are put back in dataset order (``prompt_index``); counts, tokens, costs and engine times
are summed; rates and other metrics are recomputed from the merged rows and pairs. Because every random choice is
seeded by the prompt id, the result equals an unsharded run's files (engine wall times aside).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from omegaconf import OmegaConf

from uf_experiments.core.records import Pair
from uf_experiments.metrics.agreement import agreement_metrics, reference_field, usd_per_1k_judged
from uf_experiments.metrics.binarize import BinarizeReport
from uf_experiments.metrics.summary import RunSummary


class MergeError(Exception):
    """Shards that cannot be merged; reported as one line, exit code 2."""


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist() if path.exists() else []


def _shard_config(run: Path) -> tuple[int, int, dict[str, Any]]:
    cfg = OmegaConf.to_container(OmegaConf.load(run / ".hydra" / "config.yaml"))
    shard = cfg["dataset"].get("shard") or {"index": 0, "count": 1}
    rest = json.loads(json.dumps(cfg))
    rest["dataset"].pop("shard", None)
    return shard["index"], shard["count"], rest


def merge(runs: Sequence[Path], out: Path) -> dict[str, Any]:
    from uf_experiments.config import side_by_side
    from uf_experiments.metrics.experiment import flip_rates, judge_metrics
    from uf_experiments.outputs.writer import rated_schema, write_outputs

    shards = [_shard_config(r) for r in runs]
    count = shards[0][1]
    if sorted(i for i, _, _ in shards) != list(range(count)) or any(c != count for _, c, _ in shards):
        got = ", ".join(f"{r.name}: {i}/{c}" for r, (i, c, _) in zip(runs, shards, strict=True))
        raise MergeError(f"need shards 0..{count - 1} of {count}, each once (got {got})")
    if any(rest != shards[0][2] for _, _, rest in shards[1:]):
        raise MergeError("the shards differ in more than dataset.shard.index: merge only shards of one run")
    cfg = shards[0][2]
    rows = sorted((row for r in runs for row in _read_rows(r / "rated.parquet")), key=lambda row: row["prompt_index"])
    order = {row["prompt_id"]: row["prompt_index"] for row in rows}
    pairs = sorted((p for r in runs for p in _read_rows(r / "preferences.parquet")),
                   key=lambda p: order[p["prompt_id"]])

    parts = [json.loads((r / "summary.json").read_text()) for r in runs]
    merged = RunSummary.merged(parts, str(out), [str(r) for r in runs])
    summary = merged.to_dict()

    aspects = list(cfg["aspect"])
    mean_over = side_by_side(cfg["aspect"])
    c = summary["counts"]
    report = BinarizeReport(
        pairs=[Pair(p["prompt_id"], p["prompt"][0]["content"], p["chosen"][0]["content"], p["rejected"][0]["content"],
                    p["score_chosen"], p["score_rejected"], p["chosen_model"], p["rejected_model"]) for p in pairs],
        ties=c.get("ties", 0), ties_dropped=c.get("ties_dropped", 0), skipped_unscored=c.get("skipped_unscored", 0),
    )
    metrics = judge_metrics(rows, aspects, report, cfg["binarize"]["score"], mean_over)
    if "flips_by_aspect" in c:
        metrics["flip_rate_by_aspect"] = flip_rates(c["flips_by_aspect"])
    total = summary["cost_usd"].get("total", 0.0)
    metrics["usd_per_pair"] = round(total / len(pairs), 6) if pairs else None
    agreement = agreement_metrics(rows, aspects, cfg["aspect"])  # empty unless the rows carry reference ratings
    if agreement:  # a re-judge (experiment=rejudge): the runner reports these two under the same condition
        metrics["agreement"] = agreement
        metrics["usd_per_1k_judged"] = usd_per_1k_judged(summary)
    summary["metrics"] = metrics

    out.mkdir(parents=True, exist_ok=True)
    judge = cfg["judge"]
    float_ratings = bool(judge.get("swap")) and judge.get("swap_combine") == "mean"
    aspect_cfgs = {a: SimpleNamespace(per_completion=bool(cfg["aspect"][a].get("per_completion"))) for a in aspects}
    extra = [reference_field(aspects)] if agreement else []  # a re-judge's rows carry the reference ratings
    write_outputs(out, rated_schema(aspect_cfgs, float_ratings, extra), rows, report.pairs)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary
