"""What a finished prompt becomes: its ``rated.parquet`` row (:func:`build_row`) and its rows in the W&B tables
(:class:`Tables`: one per completion, one per pair, up to ``tracking.max_table_rows`` each)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from uf_experiments.core.records import Pair
from uf_experiments.data.given import given_row_fields
from uf_experiments.generation.principles import name_of as principle_name
from uf_experiments.metrics.agreement import REFERENCE_COLUMN, reference_ratings
from uf_experiments.outputs.card import CARD
from uf_experiments.pipeline.scheduler import Finished

PAIR_COLUMNS = ["prompt", "chosen", "rejected", "score_chosen", "score_rejected", "chosen_model", "rejected_model"]


def build_row(f: Finished, judge_model: str) -> dict[str, Any]:
    """The ``rated.parquet`` row of a finished prompt (README, "The run dir"); with the dataset's own
    completions (``experiment=rejudge``), its principles, models and reference ratings beside the judge's."""
    done = f.completions
    systems = [c.request.messages[0]["content"] if c.request.messages[0]["role"] == "system" else None for c in done]
    got = f.outcomes
    row = {
        "prompt_id": f.prompt.prompt_id,
        "prompt_index": f.prompt.index,
        "source": f.prompt.source,
        "instruction": f.prompt.instruction,
        "principles": [principle_name(s) for s in systems],
        "system_prompts": systems,
        "generations": [c.text for c in done],
        "generation_models": [c.request.model for c in done],
        "judge_model": judge_model,
        "ratings": {a: o.ratings for a, o in got.items()},
        "rationales": {a: o.rationales for a, o in got.items()},
        "types": {a: o.types for a, o in got.items()},
        "judge_order": {a: o.order for a, o in got.items()},
        "parse_status": {a: o.status for a, o in got.items()},
        "judge_raw": {a: o.raw for a, o in got.items()},
    }
    if f.prompt.given:
        row.update(given_row_fields(f.prompt))
        row[REFERENCE_COLUMN] = reference_ratings(f.prompt.given, list(got))
    return row


class Tables:
    """The W&B tables of a run: one row per completion (``rated``) and one per pair (``pairs``), each capped."""

    def __init__(self, aspects: Sequence[str], cap: int) -> None:
        self.aspects, self.cap = list(aspects), cap
        self.rated: list[list[Any]] = []
        self.pairs: list[list[Any]] = []

    def add(self, row: dict[str, Any], pairs: Sequence[Pair]) -> None:
        for i, text in enumerate(row["generations"]):
            if len(self.rated) >= self.cap:
                break
            cells = [row["prompt_id"], row["instruction"], row["source"], row["generation_models"][i],
                     row["principles"][i], text]
            for a in self.aspects:
                cells += [row["ratings"][a][i], row["rationales"][a][i]]
            self.rated.append(cells)
        for p in pairs:
            if len(self.pairs) < self.cap:
                self.pairs.append([p.prompt, p.chosen, p.rejected, p.score_chosen, p.score_rejected,
                                   p.chosen_model, p.rejected_model])

    def log(self, tracker: Any, summary: dict[str, Any], run_dir: Path) -> None:
        """The tables, the summary and the run's files, to the tracker."""
        columns = ["prompt_id", "instruction", "source", "model", "principle", "completion"]
        columns += [f"{kind}_{a}" for a in self.aspects for kind in ("rating", "rationale")]
        tracker.log_table("rated", columns, self.rated)
        tracker.log_table("pairs", PAIR_COLUMNS, self.pairs)
        tracker.log_summary(summary)
        tracker.log_files([run_dir / f for f in ("rated.parquet", "preferences.parquet", "summary.json",
                                                 "preferences", CARD)])
