"""Binarization recipes with ties, N/A and missing scores: exact pairs."""

from __future__ import annotations

import pytest

from uf_experiments.metrics.binarize import binarize, completion_scores, pair_to_record


def row(pid: str, ratings: dict[str, list], n: int | None = None) -> dict:
    n = n or len(next(iter(ratings.values())))
    return {
        "prompt_id": pid,
        "instruction": f"instruction {pid}",
        "generations": [f"{pid}-gen{i}" for i in range(n)],
        "generation_models": [f"m{i}" for i in range(n)],
        "ratings": ratings,
    }


def pairs_of(report):
    return [(p.prompt_id, p.chosen, p.rejected, p.score_chosen, p.score_rejected) for p in report.pairs]


@pytest.mark.parametrize(
    ("ratings", "score", "want"),
    [
        ({"a": [4, 2, None]}, "a", [4.0, 2.0, None]),
        ({"a": [4, 2], "b": [2, None]}, None, [3.0, 2.0]),  # mean over the aspects that rated each one
        ({"a": [None, 2], "b": [None, 4]}, None, [None, 3.0]),  # no aspect rated completion 0: no score, not 0
        ({"a": [1, 5], "b": [5, 1]}, "b", [5.0, 1.0]),
        ({"a": [3.5, 2.0]}, "a", [3.5, 2.0]),  # swap_combine=mean gives halves
    ],
)
def test_completion_scores(ratings, score, want):
    n = len(next(iter(ratings.values())))
    assert completion_scores(ratings, n, score) == want


def test_completion_scores_mean_over_named_aspects_only():
    ratings = {"a": [4, 2], "critique": [10, 1]}
    assert completion_scores(ratings, 2, None, mean_over=["a"]) == [4.0, 2.0]


def test_best_worst():
    rows = [row("p1", {"a": [3, 5, 1]}), row("p2", {"a": [2, 2, 2]}), row("p3", {"a": [None, 4, None]})]
    rep = binarize(rows, "best_worst", "a", "drop", seed=0)
    assert pairs_of(rep) == [("p1", "p1-gen1", "p1-gen2", 5.0, 1.0)]
    assert (rep.ties, rep.ties_dropped, rep.skipped_unscored) == (1, 1, 1)
    kept = binarize(rows, "best_worst", "a", "keep", seed=0)
    assert pairs_of(kept)[1] == ("p2", "p2-gen0", "p2-gen1", 2.0, 2.0)  # first of the equal best vs the next
    assert (kept.ties, kept.ties_dropped) == (1, 0)


def test_h4_rejects_a_seeded_random_other():
    rows = [row(f"p{i}", {"a": [5, 1, 2, 3]}) for i in range(40)]
    rep = binarize(rows, "h4", "a", "drop", seed=1)
    assert len(rep.pairs) == 40
    assert all(p.chosen.endswith("gen0") and p.score_chosen == 5.0 for p in rep.pairs)
    assert {p.rejected[-4:] for p in rep.pairs} == {"gen1", "gen2", "gen3"}  # random, never the chosen one
    again = binarize(rows, "h4", "a", "drop", seed=1)
    assert pairs_of(again) == pairs_of(rep)  # seeded
    other = binarize(rows, "h4", "a", "drop", seed=2)
    assert pairs_of(other) != pairs_of(rep)


def test_h4_ties_keep_or_drop():
    rows = [row("t", {"a": [4, 4]}), row("u", {"a": [4, 3]})]
    dropped = binarize(rows, "h4", "a", "drop", seed=0)
    assert pairs_of(dropped) == [("u", "u-gen0", "u-gen1", 4.0, 3.0)]
    assert (dropped.ties, dropped.ties_dropped) == (1, 1)
    kept = binarize(rows, "h4", "a", "keep", seed=0)
    assert pairs_of(kept) == [("t", "t-gen0", "t-gen1", 4.0, 4.0), ("u", "u-gen0", "u-gen1", 4.0, 3.0)]
    assert (kept.ties, kept.ties_dropped) == (1, 0)


def test_mean_aspects_drops_ties_and_skips_na():
    rows = [
        row("m1", {"a": [5, 3, 1], "honesty": [None, 3, 1]}),  # means 5, 3, 1: N/A left out of the mean, not 0
        row("m2", {"a": [4, 2], "honesty": [2, 4]}),  # means 3 and 3: a tie, always dropped
        row("m3", {"a": [None, None], "honesty": [None, 4]}),  # one scored completion: skipped
    ]
    rep = binarize(rows, "mean_aspects", "a", "keep", seed=3)  # score and ties are ignored by mean_aspects
    assert len(rep.pairs) == 1
    p = rep.pairs[0]
    assert (p.prompt_id, p.chosen, p.score_chosen) == ("m1", "m1-gen0", 5.0)
    assert p.rejected in {"m1-gen1", "m1-gen2"} and p.score_rejected in {3.0, 1.0}
    assert (rep.ties, rep.ties_dropped, rep.skipped_unscored) == (1, 1, 1)


def test_missing_aspect_and_all_failed_rows_are_skipped_not_zero():
    rows = [row("f", {"a": [None, None, None]}), row("g", {"b": [1, 2]})]
    rep = binarize(rows, "h4", "a", "drop", seed=0)
    assert rep.pairs == [] and rep.skipped_unscored == 2


def test_unknown_recipe_raises():
    with pytest.raises(ValueError, match="unknown binarize.recipe 'x'"):
        binarize([row("p", {"a": [1, 2]})], "x", "a", "drop", seed=0)


def test_trl_layout():
    rep = binarize([row("p", {"a": [1, 5]})], "best_worst", "a", "drop", seed=0)
    rec = pair_to_record(rep.pairs[0])
    assert rec["prompt"] == [{"role": "user", "content": "instruction p"}]
    assert rec["chosen"] == [{"role": "assistant", "content": "p-gen1"}]
    assert rec["rejected"] == [{"role": "assistant", "content": "p-gen0"}]
    got = (rec["score_chosen"], rec["score_rejected"], rec["chosen_model"], rec["rejected_model"])
    assert got == (5.0, 1.0, "m1", "m0")
