"""How far a judge agrees with reference ratings (openbmb/UltraFeedback's GPT-4 annotations, an earlier run's
judge, or a mapped column), per aspect: pure functions over (reference, judge) rating pairs grouped by prompt,
and :class:`Agreement`, which accumulates them from rated rows (``reference_ratings`` beside ``ratings``) in
flat memory, one small (reference, judge) table per aspect.

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

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

from uf_experiments.core.records import GivenCompletion

FIGURES = ("n", "exact", "within_1", "spearman", "kappa_quadratic", "pairwise_accuracy")
DIGITS = 4  # metrics.agreement.* are rounded like the other summary metrics
REFERENCE_COLUMN = "reference_ratings"  # the rated row's column: aspect -> one reference rating per completion

Table = Mapping[tuple[float, float], int]  # (reference, judge) -> how many completions have that pair


@dataclass(frozen=True)
class RatingPair:
    """One completion's two ratings on one aspect."""

    group: str  # the prompt id: pairwise accuracy compares completions of one prompt
    reference: float | None
    judge: float | None
    judge_failed: bool = False  # the judge's reply for it never parsed (or was not asked): not an N/A


# ---------------------------------------------------------------- figures over a (reference, judge) table
# Every figure but pairwise accuracy depends only on how many completions have each (reference, judge) pair, so
# a run of any size keeps one small table per aspect (the ratings take a handful of values).


def _ranks(counts: Mapping[float, int]) -> dict[float, float]:
    """value -> its 1-based rank among all counted values; tied values share the mean of the ranks they span."""
    out, below = {}, 0
    for value in sorted(counts):
        out[value] = below + (counts[value] + 1) / 2
        below += counts[value]
    return out


def _margins(table: Table) -> tuple[int, Counter[float], Counter[float]]:
    ref: Counter[float] = Counter()
    got: Counter[float] = Counter()
    for (r, j), c in table.items():
        ref[r] += c
        got[j] += c
    return sum(ref.values()), ref, got


def spearman_table(table: Table) -> float | None:
    """Spearman's rho (Pearson over average ranks); None for fewer than 2 items or a constant rater."""
    n, ref, got = _margins(table)
    if n < 2 or len(ref) < 2 or len(got) < 2:
        return None
    rank_r, rank_j, mid = _ranks(ref), _ranks(got), (n + 1) / 2  # average ranks always average (n+1)/2
    sxy = sum(c * (rank_r[r] - mid) * (rank_j[j] - mid) for (r, j), c in table.items())
    sxx = sum(c * (rank_r[v] - mid) ** 2 for v, c in ref.items())
    syy = sum(c * (rank_j[v] - mid) ** 2 for v, c in got.items())
    return sxy / (sxx * syy) ** 0.5


def kappa_table(table: Table, min_rating: float, max_rating: float) -> float | None:
    """Cohen's kappa with quadratic weights over ``min_rating..max_rating``: ``1 - observed / expected``
    weighted disagreement, the expected one from the two raters' margins. None for fewer than 2 items, a constant
    rater or an empty scale."""
    n, ref, got = _margins(table)
    if n < 2 or len(ref) < 2 or len(got) < 2 or max_rating <= min_rating:
        return None
    span = (max_rating - min_rating) ** 2

    def w(a: float, b: float) -> float:
        return (a - b) ** 2 / span

    observed = sum(c * w(r, j) for (r, j), c in table.items())
    expected = sum(cr * cj * w(r, j) for r, cr in ref.items() for j, cj in got.items()) / n
    return 1 - observed / expected


def average_ranks(values: Sequence[float]) -> list[float]:
    """1-based ranks; tied values share the mean of the ranks they span."""
    ranks = _ranks(Counter(values))
    return [ranks[v] for v in values]


def spearman(reference: Sequence[float], judge: Sequence[float]) -> float | None:
    """Spearman's rho with average ranks for ties; None for fewer than 2 items or a constant rater."""
    return spearman_table(Counter(zip(reference, judge, strict=True)))


def kappa_quadratic(reference: Sequence[float], judge: Sequence[float], min_rating: float,
                    max_rating: float) -> float | None:
    """:func:`kappa_table` over paired ratings."""
    return kappa_table(Counter(zip(reference, judge, strict=True)), min_rating, max_rating)


def _pair_score(members: Sequence[RatingPair]) -> tuple[float, int]:
    """(score, compared) over the pairs of one prompt's completions whose references differ: 1 when the judge
    orders them the same way, 1/2 for a judge tie, 0 otherwise. Every member has both ratings."""
    score, compared = 0.0, 0
    for a, b in combinations(members, 2):
        if a.reference == b.reference:
            continue
        compared += 1
        if a.judge == b.judge:
            score += 0.5
        elif (a.judge > b.judge) == (a.reference > b.reference):  # type: ignore[operator]
            score += 1
    return score, compared


def _by_group(pairs: Iterable[RatingPair]) -> list[list[RatingPair]]:
    groups: dict[str, list[RatingPair]] = defaultdict(list)
    for p in pairs:
        groups[p.group].append(p)
    return list(groups.values())


def pairwise_accuracy(pairs: Iterable[RatingPair]) -> tuple[float | None, int]:
    """(accuracy, compared pairs) over completion pairs of one group whose reference ratings differ; the pairs
    given must all have both ratings."""
    score, compared = 0.0, 0
    for members in _by_group(pairs):
        s, c = _pair_score(members)
        score, compared = score + s, compared + c
    return (score / compared if compared else None), compared


@dataclass
class Tally:
    """One aspect's agreement, fed one prompt's completions at a time."""

    min_rating: float
    max_rating: float
    table: Counter[tuple[float, float]] = field(default_factory=Counter)
    pair_score: float = 0.0
    pairs: int = 0
    na_reference: int = 0
    out_of_scale: int = 0
    no_judge: int = 0
    na_both: int = 0

    def add(self, prompt: Iterable[RatingPair]) -> None:
        """The completions of one prompt."""
        kept = []
        for p in prompt:
            if p.reference is None:
                self.na_reference += 1
                self.na_both += p.judge is None and not p.judge_failed
            elif not self.min_rating <= p.reference <= self.max_rating:
                self.out_of_scale += 1
            elif p.judge is None:
                self.no_judge += 1
            else:
                kept.append(p)
                self.table[(float(p.reference), float(p.judge))] += 1
        score, compared = _pair_score(kept)
        self.pair_score += score
        self.pairs += compared

    def result(self) -> dict[str, Any]:
        """Every figure of the module docstring, unrounded."""
        n = sum(self.table.values())
        exact = sum(c for (r, j), c in self.table.items() if r == j)
        within = sum(c for (r, j), c in self.table.items() if abs(r - j) <= 1)
        return {
            "n": n,
            "exact": exact / n if n else None,
            "within_1": within / n if n else None,
            "spearman": spearman_table(self.table),
            "kappa_quadratic": kappa_table(self.table, self.min_rating, self.max_rating),
            "pairwise_accuracy": self.pair_score / self.pairs if self.pairs else None,
            "pairs": self.pairs,
            "excluded_na_reference": self.na_reference,
            "excluded_out_of_scale": self.out_of_scale,
            "excluded_no_judge_rating": self.no_judge,
            "na_both": self.na_both,
        }


def agreement(pairs: Iterable[RatingPair], min_rating: float, max_rating: float) -> dict[str, Any]:
    """Every figure of the module docstring for one aspect, unrounded (``group`` tells the prompts apart)."""
    tally = Tally(min_rating, max_rating)
    for members in _by_group(pairs):
        tally.add(members)
    return tally.result()


# ---------------------------------------------------------------- rated rows


def reference_ratings(given: Sequence[GivenCompletion], aspects: Sequence[str]) -> dict[str, list[float | None]]:
    """The ``reference_ratings`` column of a rated row: per aspect, one reference rating per completion in the
    row's order (None where the dataset has none, and for an aspect the dataset does not rate at all)."""
    return {a: [g.reference.get(a) for g in given] for a in aspects}


def reference_field(aspects: Iterable[str]) -> Any:
    """The ``reference_ratings`` column's Arrow field (for ``outputs.rated_schema(..., extra=[...])``)."""
    import pyarrow as pa

    return pa.field(REFERENCE_COLUMN, pa.struct([(a, pa.list_(pa.float64())) for a in aspects]))


def row_pairs(row: Mapping[str, Any], aspect: str) -> list[RatingPair]:
    """One pair per completion of a rated row that carries ``reference_ratings`` (none for one that does not)."""
    refs = row.get(REFERENCE_COLUMN)
    if refs is None:
        return []
    n = len(row["generations"])
    ref = refs.get(aspect) or [None] * n
    judged = (row.get("ratings") or {}).get(aspect) or [None] * n
    failed = (row.get("parse_status") or {}).get(aspect) != "ok"
    return [RatingPair(str(row["prompt_id"]), ref[i], judged[i], failed) for i in range(n)]


def _round(value: Any) -> Any:
    return round(value, DIGITS) if isinstance(value, float) else value


def _scale(cfg: Any) -> tuple[float, float]:
    get = cfg.__getitem__ if isinstance(cfg, Mapping) else cfg.__getattribute__
    return get("min_rating"), get("max_rating")


class Agreement:
    """``metrics.agreement``, accumulated row by row (flat memory at any size, like ``metrics.Metrics``):
    ``add_row(row)`` for every rated row, then ``result()``. ``aspect_cfgs`` is ``cfg.aspect`` (or its plain-dict
    form, as ``merge`` reads it from ``.hydra/config.yaml``)."""

    def __init__(self, aspects: Sequence[str], aspect_cfgs: Mapping[str, Any]) -> None:
        self.tallies = {a: Tally(*_scale(aspect_cfgs[a])) for a in aspects}
        self.rows = 0  # rows that carried reference ratings

    def add_row(self, row: Mapping[str, Any]) -> None:
        if row.get(REFERENCE_COLUMN) is None:
            return
        self.rows += 1
        for a, tally in self.tallies.items():
            tally.add(row_pairs(row, a))

    def result(self) -> dict[str, dict[str, Any]]:
        """aspect -> figures (rounded); empty when no row carried reference ratings (completions generated)."""
        if not self.rows:
            return {}
        return {a: {k: _round(v) for k, v in t.result().items()} for a, t in self.tallies.items()}


def agreement_metrics(rows: Iterable[Mapping[str, Any]], aspects: Sequence[str],
                      aspect_cfgs: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """:class:`Agreement` over ``rows`` at once (``merge``, tests)."""
    acc = Agreement(aspects, aspect_cfgs)
    for row in rows:
        acc.add_row(row)
    return acc.result()


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
