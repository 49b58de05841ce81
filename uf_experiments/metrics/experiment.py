"""The experiment metrics of a run (README, "summary.json"), accumulated row by row so a run of any size keeps
flat memory: parse-failure rates, tie rate, mean margin, rating-length correlation, per-model mean score and
chosen/rejected counts, flip rates (``judge.swap``), $ per pair."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from uf_experiments.core.records import Pair
from uf_experiments.core.status import judged
from uf_experiments.metrics.binarize import BinarizeReport, completion_scores


class _Pearson:
    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.syy = self.sxy = 0.0

    def add(self, x: float, y: float) -> None:
        self.n += 1
        self.sx += x
        self.sy += y
        self.sxx += x * x
        self.syy += y * y
        self.sxy += x * y

    def value(self) -> float | None:
        if self.n < 3:
            return None
        cov = self.sxy - self.sx * self.sy / self.n
        vx = self.sxx - self.sx * self.sx / self.n
        vy = self.syy - self.sy * self.sy / self.n
        if vx <= 1e-12 or vy <= 1e-12:
            return None
        return round(cov / (vx * vy) ** 0.5, 4)


class Metrics:
    """Feed it every rated row and the pairs binarized from it; ``result()`` gives ``summary.json`` ``metrics``."""

    def __init__(self, aspects: Sequence[str], score: str | None, mean_over: Sequence[str] | None) -> None:
        self.aspects, self.score, self.mean_over = list(aspects), score, mean_over
        self.asked: dict[str, int] = defaultdict(int)
        self.failed: dict[str, int] = defaultdict(int)
        self.model_sum: dict[str, float] = defaultdict(float)
        self.model_n: dict[str, int] = defaultdict(int)
        self.length_score = _Pearson()
        self.chosen: dict[str, int] = defaultdict(int)
        self.rejected: dict[str, int] = defaultdict(int)
        self.pairs = 0
        self.margin_sum = 0.0
        self.ties = self.ties_dropped = self.skipped_unscored = 0

    def add_row(self, row: Mapping[str, Any]) -> None:
        for a in self.aspects:
            status = row["parse_status"][a]
            if judged(status):
                self.asked[a] += 1
                self.failed[a] += status != "ok"
        scores = completion_scores(row["ratings"], len(row["generations"]), self.score, self.mean_over)
        for i, (text, s) in enumerate(zip(row["generations"], scores, strict=True)):
            if s is not None:
                model = row["generation_models"][i]
                self.model_sum[model] += s
                self.model_n[model] += 1
                self.length_score.add(float(len(text)), s)

    def add_pairs(self, pairs: Iterable[Pair], report: BinarizeReport | None = None) -> None:
        for p in pairs:
            self.pairs += 1
            self.margin_sum += p.score_chosen - p.score_rejected
            self.chosen[p.chosen_model] += 1
            self.rejected[p.rejected_model] += 1
        if report is not None:
            self.ties += report.ties
            self.ties_dropped += report.ties_dropped
            self.skipped_unscored += report.skipped_unscored

    def result(self) -> dict[str, Any]:
        asked = sum(self.asked.values())
        candidates = self.pairs + self.ties_dropped
        return {
            "parse_failure_rate": round(sum(self.failed.values()) / asked, 4) if asked else None,
            "parse_failure_rate_by_aspect": {a: round(self.failed[a] / self.asked[a], 4) if self.asked[a] else None
                                             for a in self.aspects},
            "tie_rate": round(self.ties / candidates, 4) if candidates else None,
            "mean_margin": round(self.margin_sum / self.pairs, 4) if self.pairs else None,
            "rating_length_correlation": self.length_score.value(),
            "mean_rating_by_model": {m: round(self.model_sum[m] / n, 4) for m, n in sorted(self.model_n.items())},
            "chosen_by_model": dict(sorted(self.chosen.items())),
            "rejected_by_model": dict(sorted(self.rejected.items())),
        }


def judge_metrics(rows: Iterable[Mapping[str, Any]], aspects: Sequence[str], report: BinarizeReport,
                  score: str | None, mean_over: Sequence[str] | None = None) -> dict[str, Any]:
    """The metrics of finished rows and their binarization report (``merge`` recomputes merged runs with it)."""
    m = Metrics(aspects, score, mean_over)
    for row in rows:
        m.add_row(row)
    m.add_pairs(report.pairs, report)
    return m.result()


def flip_rates(counts: Mapping[str, Sequence[int]]) -> dict[str, float | None]:
    return {a: round(f / c, 4) if c else None for a, (f, c) in counts.items()}
