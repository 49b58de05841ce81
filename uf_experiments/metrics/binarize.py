"""Rated rows -> chosen/rejected pairs in the TRL preference layout.

Recipes (``binarize.recipe``):
- ``h4``: chosen = the best-scored completion (first on equal scores), rejected = a seeded random other scored
  completion. If its score equals the chosen one the pair is a tie: kept or dropped by ``binarize.ties``.
- ``mean_aspects`` (Argilla): score = mean of the aspect ratings; chosen = best, rejected = a seeded random
  completion with a strictly lower score; a row whose completions all tie gives no pair.
- ``best_worst``: chosen = best, rejected = worst; equal scores are a tie (``binarize.ties``).

The score of a completion is ``binarize.score`` (one aspect) or the mean of the side-by-side aspects that rated
it (``mean_aspects`` always uses the mean; the 1-10 ``critique`` score is used only when named, never averaged
with the 1-5 aspects). A completion with no score (parse failure, N/A) never takes part and is
never counted as 0; a row with fewer than two scored completions is skipped and counted.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from uf_experiments.core.records import Pair


@dataclass
class BinarizeReport:
    pairs: list[Pair] = field(default_factory=list)
    ties: int = 0  # pairs whose scores were equal (kept or dropped)
    ties_dropped: int = 0
    skipped_unscored: int = 0  # rows with fewer than two scored completions


def completion_scores(ratings: Mapping[str, Sequence[float | None]], n: int, score: str | None,
                      mean_over: Sequence[str] | None = None) -> list[float | None]:
    """One score per completion: the named aspect's rating, or the mean of the ``mean_over`` aspects (default:
    all) that rated it."""
    if score is not None:
        values = ratings.get(score) or [None] * n
        return [None if v is None else float(v) for v in values]
    names = list(ratings) if mean_over is None else [a for a in mean_over if a in ratings]
    out: list[float | None] = []
    for i in range(n):
        got = [ratings[a][i] for a in names if ratings[a] is not None and ratings[a][i] is not None]
        out.append(sum(got) / len(got) if got else None)  # plain float mean: statistics.mean is 20x slower
    return out


def binarize(rows: Sequence[Mapping[str, Any]], recipe: str, score: str | None, ties: str, seed: int,
             mean_over: Sequence[str] | None = None) -> BinarizeReport:
    """``rows`` carry prompt_id, instruction, generations, generation_models and ratings (aspect -> list);
    ``mean_over`` names the aspects a mean score averages (default: all of them)."""
    report = BinarizeReport()
    for row in rows:
        n = len(row["generations"])
        scores = completion_scores(row["ratings"], n, None if recipe == "mean_aspects" else score, mean_over)
        scored = [i for i in range(n) if scores[i] is not None]
        if len(scored) < 2:
            report.skipped_unscored += 1
            continue
        rng = random.Random(f"binarize:{seed}:{row['prompt_id']}")
        best = max(scored, key=lambda i: scores[i])  # max keeps the first of equal scores
        if recipe == "h4":
            rejected = rng.choice([i for i in scored if i != best])
        elif recipe == "mean_aspects":
            lower = [i for i in scored if scores[i] < scores[best]]
            if not lower:
                report.ties += 1
                report.ties_dropped += 1
                continue
            rejected = rng.choice(lower)
        elif recipe == "best_worst":
            rejected = min((i for i in scored if i != best), key=lambda i: scores[i])
        else:
            raise ValueError(f"unknown binarize.recipe {recipe!r}")
        if scores[rejected] == scores[best]:
            report.ties += 1
            if ties == "drop":
                report.ties_dropped += 1
                continue
        report.pairs.append(
            Pair(
                prompt_id=row["prompt_id"],
                prompt=row["instruction"],
                chosen=row["generations"][best],
                rejected=row["generations"][rejected],
                score_chosen=float(scores[best]),  # type: ignore[arg-type]
                score_rejected=float(scores[rejected]),  # type: ignore[arg-type]
                chosen_model=row["generation_models"][best],
                rejected_model=row["generation_models"][rejected],
            )
        )
    return report


def pair_to_record(pair: Pair) -> dict[str, Any]:
    """TRL's conversational preference layout with an explicit prompt: ``prompt`` is the user turn, ``chosen``
    and ``rejected`` the assistant turns (message lists), plus scores and model names."""
    return {
        "prompt_id": pair.prompt_id,
        "prompt": [{"role": "user", "content": pair.prompt}],
        "chosen": [{"role": "assistant", "content": pair.chosen}],
        "rejected": [{"role": "assistant", "content": pair.rejected}],
        "score_chosen": pair.score_chosen,
        "score_rejected": pair.score_rejected,
        "chosen_model": pair.chosen_model,
        "rejected_model": pair.rejected_model,
    }
