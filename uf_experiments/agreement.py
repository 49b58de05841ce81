"""How far a judge agrees with reference ratings (openbmb/UltraFeedback's GPT-4 annotations, an earlier run's
judge, or a mapped column), per aspect. Pure functions over (reference, judge) rating pairs grouped by prompt.

A completion takes part when it has both a reference rating inside the aspect's scale and a judge rating.
The others are left out and counted, never scored as 0:

- ``excluded_na_reference``: no reference rating ("N/A", missing, not a number);
- ``excluded_out_of_scale``: a reference rating outside ``min_rating..max_rating`` (the UltraFeedback release has
  a few instruction-following ratings of 0);
- ``excluded_no_judge_rating``: a reference rating but no judge rating (the judge said N/A, its reply never
  parsed, or it was not judged);
- ``na_both`` (a part of ``excluded_na_reference``): the judge's reply parsed and it also gave no rating, i.e.
  both said N/A (honesty).

Over the ``n`` completions that take part:

- ``exact``: the share whose two ratings are equal; ``within_1``: the share at most 1 apart;
- ``spearman``: Spearman's rank correlation (Pearson's over average ranks, so ties share a rank);
- ``kappa_quadratic``: Cohen's kappa with quadratic weights ``((a - b) / (max - min))**2`` over the aspect's
  scale: ``1 - sum(w(ref_k, judge_k)) / (sum over all k, l of w(ref_k, judge_l) / n)``, which is the confusion-
  matrix formula with the expected matrix drawn from the two raters' marginals (so it also takes the half points of
  ``judge.swap_combine=mean`` and UltraFeedback's 7.5 overall scores); 1 is perfect agreement, 0 what chance gives;
- ``pairwise_accuracy``: over the pairs of completions of one prompt whose reference ratings differ (``pairs``),
  the share the judge orders the same way; a judge tie counts one half.

Degenerate inputs give None, never a made-up number: every share is None when ``n`` is 0; ``spearman`` and
``kappa_quadratic`` are None when ``n < 2`` or either rater gives one constant rating (Spearman is undefined
then, and kappa is 0 or undefined whatever the ratings are: it says nothing); ``pairwise_accuracy`` is None when
no prompt has two completions with different reference ratings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Any

from uf_experiments.records import GivenCompletion

FIGURES = ("n", "exact", "within_1", "spearman", "kappa_quadratic", "pairwise_accuracy")
DIGITS = 4  # metrics.agreement.* are rounded like the other summary metrics


@dataclass(frozen=True)
class RatingPair:
    """One completion's two ratings on one aspect."""

    group: str  # the prompt id: pairwise accuracy compares completions of one prompt
    reference: float | None
    judge: float | None
    judge_failed: bool = False  # the judge's reply for it never parsed (or was not asked): not an N/A


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for k in range(start, end + 1):
            ranks[order[k]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = len(xs)
    if n < 2:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sxx * syy) ** 0.5


def spearman(reference: Sequence[float], judge: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties; None for fewer than 2 items or a constant rater."""
    return _pearson(average_ranks(reference), average_ranks(judge))


def _constant(values: Sequence[float]) -> bool:
    return len(set(values)) <= 1


def kappa_quadratic(reference: Sequence[float], judge: Sequence[float], min_rating: float,
                    max_rating: float) -> float | None:
    """Cohen's quadratic-weighted kappa over the scale ``min_rating..max_rating`` (see the module docstring);
    None for fewer than 2 items, a constant rater or an empty scale."""
    n = len(reference)
    if n < 2 or _constant(reference) or _constant(judge) or max_rating <= min_rating:
        return None
    span = (max_rating - min_rating) ** 2

    def w(a: float, b: float) -> float:
        return (a - b) ** 2 / span

    observed = sum(w(r, j) for r, j in zip(reference, judge))
    expected = sum(w(r, j) for r in reference for j in judge) / n
    return 1 - observed / expected


def pairwise_accuracy(pairs: Iterable[RatingPair]) -> tuple[float | None, int]:
    """(accuracy, compared pairs) over completion pairs of one group whose reference ratings differ; the pairs
    given must all have both ratings."""
    by_group: dict[str, list[RatingPair]] = defaultdict(list)
    for p in pairs:
        by_group[p.group].append(p)
    score = 0.0
    compared = 0
    for members in by_group.values():
        for a, b in combinations(members, 2):
            if a.reference == b.reference:
                continue
            compared += 1
            ref = a.reference > b.reference  # type: ignore[operator]
            if a.judge == b.judge:
                score += 0.5
            elif (a.judge > b.judge) == ref:  # type: ignore[operator]
                score += 1
    return (score / compared if compared else None), compared


def agreement(pairs: Iterable[RatingPair], min_rating: float, max_rating: float) -> dict[str, Any]:
    """Every figure of the module docstring for one aspect, unrounded."""
    kept: list[RatingPair] = []
    na_reference = out_of_scale = no_judge = na_both = 0
    for p in pairs:
        if p.reference is None:
            na_reference += 1
            na_both += p.judge is None and not p.judge_failed
        elif not min_rating <= p.reference <= max_rating:
            out_of_scale += 1
        elif p.judge is None:
            no_judge += 1
        else:
            kept.append(p)
    n = len(kept)
    ref = [float(p.reference) for p in kept]  # type: ignore[arg-type]
    got = [float(p.judge) for p in kept]  # type: ignore[arg-type]
    accuracy, compared = pairwise_accuracy(kept)
    return {
        "n": n,
        "exact": sum(r == j for r, j in zip(ref, got)) / n if n else None,
        "within_1": sum(abs(r - j) <= 1 for r, j in zip(ref, got)) / n if n else None,
        "spearman": spearman(ref, got),
        "kappa_quadratic": kappa_quadratic(ref, got, min_rating, max_rating),
        "pairwise_accuracy": accuracy,
        "pairs": compared,
        "excluded_na_reference": na_reference,
        "excluded_out_of_scale": out_of_scale,
        "excluded_no_judge_rating": no_judge,
        "na_both": na_both,
    }


# ---------------------------------------------------------------- rated rows


def reference_ratings(given: Sequence[GivenCompletion], aspects: Sequence[str]) -> dict[str, list[float | None]]:
    """The ``reference_ratings`` column of a rated row: per aspect, one reference rating per completion in the
    row's order (None where the dataset has none, and for an aspect the dataset does not rate at all)."""
    return {a: [g.reference.get(a) for g in given] for a in aspects}


def rating_pairs(rows: Iterable[Mapping[str, Any]], aspect: str) -> list[RatingPair]:
    """One pair per completion of every row that carries ``reference_ratings``."""
    out = []
    for row in rows:
        refs = row.get("reference_ratings")
        if refs is None:
            continue
        n = len(row["generations"])
        ref = refs.get(aspect) or [None] * n
        judged = (row.get("ratings") or {}).get(aspect) or [None] * n
        failed = (row.get("parse_status") or {}).get(aspect) != "ok"
        out += [RatingPair(str(row["prompt_id"]), ref[i], judged[i], failed) for i in range(n)]
    return out


def _round(value: Any) -> Any:
    return round(value, DIGITS) if isinstance(value, float) else value


def agreement_metrics(rows: Sequence[Mapping[str, Any]], aspects: Sequence[str],
                      aspect_cfgs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``metrics.agreement``: aspect -> figures (rounded), over the rows that carry ``reference_ratings``;
    empty when none does (a run whose completions were generated). ``aspect_cfgs`` is ``cfg.aspect`` (or its
    plain-dict form, as ``merge`` reads it from ``.hydra/config.yaml``)."""
    if not any(row.get("reference_ratings") is not None for row in rows):
        return {}
    out = {}
    for a in aspects:
        cfg = aspect_cfgs[a]
        scale = [cfg[k] if isinstance(cfg, Mapping) else getattr(cfg, k) for k in ("min_rating", "max_rating")]
        figures = agreement(rating_pairs(rows, a), *scale)
        out[a] = {k: _round(v) for k, v in figures.items()}
    return out


# ---------------------------------------------------------------- summaries


def judge_usd(summary: Mapping[str, Any]) -> float | None:
    """The judge's attributed $ from ``summary.json``: ``cost_usd.judge.total`` (or the older plain number)."""
    value = (summary.get("cost_usd") or {}).get("judge")
    if isinstance(value, Mapping):
        value = value.get("total")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def usd_per_1k_judged(summary: Mapping[str, Any]) -> float | None:
    """$ per 1,000 judged items: the judge's attributed $ (cache hits at what they cost when paid, so sweep cells
    compare fairly) over ``counts.judged``, the (prompt, aspect) items whose reply parsed. None when nothing was
    judged or the summary has no judge cost."""
    usd = judge_usd(summary)
    judged = (summary.get("counts") or {}).get("judged")
    if usd is None or not judged:
        return None
    return round(1000 * usd / judged, 6)


def agreement_columns(summary: Mapping[str, Any], figures: Sequence[str] = FIGURES) -> dict[str, Any]:
    """A flat view for a comparison table: ``agree.<aspect>.<figure>`` per aspect of ``metrics.agreement``, and
    ``usd_per_1k_judged``."""
    out: dict[str, Any] = {}
    for aspect, values in ((summary.get("metrics") or {}).get("agreement") or {}).items():
        for f in figures:
            out[f"agree.{aspect}.{f}"] = values.get(f)
    out["usd_per_1k_judged"] = usd_per_1k_judged(summary)
    return out
