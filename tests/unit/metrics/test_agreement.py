"""uf_experiments.metrics.agreement: every figure against hand-computed values (tests/helpers/uf_fixture.py shows the
arithmetic), N/A and failure handling, degenerate inputs, and the whole judge path over an UltraFeedback-schema file
with a real content-rating HTTP server as the judge."""

from __future__ import annotations

import json
import urllib.request
from types import SimpleNamespace
from typing import Any

import pyarrow.parquet as pq
import pytest

from tests.helpers.fake_openai import FakeJudge, quality
from tests.helpers.uf_fixture import EXPECTED, MARKERS, write_uf
from uf_experiments.core.records import Completion, GivenCompletion, Request
from uf_experiments.data.given import given_row_fields
from uf_experiments.data.sources import load_prompts
from uf_experiments.judge.judging import make_items, rate
from uf_experiments.judge.judging import outcomes as combine
from uf_experiments.metrics.agreement import (
    RatingPair,
    agreement,
    agreement_columns,
    agreement_metrics,
    average_ranks,
    kappa_quadratic,
    pairwise_accuracy,
    reference_field,
    reference_ratings,
    row_pairs,
    spearman,
    usd_per_1k_judged,
)
from uf_experiments.outputs.writer import rated_schema, write_outputs

ASPECTS = ["instruction_following", "honesty", "truthfulness", "helpfulness", "critique"]


def rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}


def pairs(group: str, reference: list[float | None], judge: list[float | None],
          failed: bool = False) -> list[RatingPair]:
    return [RatingPair(group, r, j, failed) for r, j in zip(reference, judge, strict=True)]


# ---- the pure functions ----


@pytest.mark.parametrize(
    ("values", "ranks"),
    [
        ([10, 20, 20, 30], [1, 2.5, 2.5, 4]),
        ([3, 1, 2], [3, 1, 2]),
        ([5, 5, 5], [2, 2, 2]),
        ([2, 1, 2, 1, 2], [4, 1.5, 4, 1.5, 4]),  # 1s share ranks 1-2, 2s share 3-5
        ([], []),
    ],
)
def test_average_ranks(values, ranks):
    assert average_ranks(values) == ranks


@pytest.mark.parametrize(
    ("reference", "judge", "rho"),
    [
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], 1.0),
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], -1.0),
        ([1, 2, 3], [10, 20, 30], 1.0),  # ranks, not values
        # ranks R [1,2.5,2.5,4], J [1,2,3,4]; deviations R [-1.5,0,0,1.5], J [-1.5,-.5,.5,1.5]: 4.5/sqrt(4.5*5)
        ([1, 2, 2, 3], [1, 2, 3, 4], 4.5 / (4.5 * 5) ** 0.5),
        ([3, 3, 3], [1, 2, 3], None),  # a constant rater
        ([1, 2, 3], [2, 2, 2], None),
        ([4], [4], None),  # one item
        ([], [], None),
    ],
)
def test_spearman(reference, judge, rho):
    got = spearman(reference, judge)
    assert got == (None if rho is None else pytest.approx(rho))


@pytest.mark.parametrize(
    ("reference", "judge", "scale", "kappa"),
    [
        ([1, 2, 3, 4, 5], [1, 2, 3, 4, 5], (1, 5), 1.0),
        # observed 16+4+0+4+16 = 40; all combinations 5*55 + 5*55 - 2*15*15 = 100 -> 1 - 40/(100/5) = -1
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], (1, 5), -1.0),
        # half points (judge.swap_combine=mean): observed .25; 3*14 + 3*15.25 - 2*6*6.5 = 9.75 -> 1 - .25/3.25
        ([1, 2, 3], [1.5, 2, 3], (1, 5), 1 - 0.25 / 3.25),
        # the scale's width cancels: the same ratings on 1-10 give the same kappa
        ([1, 2, 3], [1.5, 2, 3], (1, 10), 1 - 0.25 / 3.25),
        ([3, 3, 3], [1, 2, 3], (1, 5), None),  # constant reference: kappa would be 0 whatever the judge says
        ([1, 2, 3], [4, 4, 4], (1, 5), None),
        ([2], [2], (1, 5), None),
        ([1, 2], [1, 2], (3, 3), None),  # an empty scale
    ],
)
def test_kappa_quadratic(reference, judge, scale, kappa):
    got = kappa_quadratic(reference, judge, *scale)
    assert got == (None if kappa is None else pytest.approx(kappa))


def test_pairwise_accuracy_counts_ties_half_and_stays_inside_a_prompt():
    got = pairwise_accuracy([
        *pairs("a", [1, 2, 3], [1, 1, 5]),  # 1<2 judge tie (.5), 1<3 ok, 2<3 ok
        *pairs("b", [4, 4, 2], [1, 5, 3]),  # 4=4 skipped, 4>2 but 1<3 wrong, 4>2 and 5>3 ok
        *pairs("c", [5], [1]),  # alone: no pair (and never paired with a or b)
    ])
    assert got == ((0.5 + 1 + 1 + 0 + 1) / 5, 5)
    assert pairwise_accuracy(pairs("a", [3, 3], [1, 5])) == (None, 0)


def test_agreement_leaves_out_and_counts_what_cannot_be_compared():
    got = agreement([
        *pairs("p", [None, None, 4, 0, 6, 3, 5], [None, 2, None, 1, 5, 3, 4]),  # judge parsed: None is an N/A
        *pairs("q", [None, 2], [None, None], failed=True),  # the judge's reply never parsed
    ], 1, 5)
    assert got == pytest.approx({
        "n": 2,  # (3,3) and (5,4)
        "exact": 1 / 2,
        "within_1": 2 / 2,
        "spearman": 1.0,  # two items, ranked alike by both
        # observed (5-4)^2 = 1; R [3,5], J [3,4]: 2*34 + 2*25 - 2*8*7 = 6 -> 1 - 1/(6/2)
        "kappa_quadratic": 1 - 1 / 3,
        "pairwise_accuracy": 1.0,  # 3<5 and 3<4
        "pairs": 1,
        "excluded_na_reference": 3,  # p#1, p#2 and q#1
        "excluded_out_of_scale": 2,  # 0 and 6 on a 1-5 scale
        "excluded_no_judge_rating": 2,  # p#3 (judge N/A) and q#2 (failed)
        "na_both": 1,  # p#1 only: q#1's judge failed, which is not an N/A
    })


def test_agreement_with_nothing_to_compare_is_none_not_zero():
    got = agreement(pairs("p", [None, 2], [3, None]), 1, 5)
    assert got == {"n": 0, "exact": None, "within_1": None, "spearman": None, "kappa_quadratic": None,
                   "pairwise_accuracy": None, "pairs": 0, "excluded_na_reference": 1, "excluded_out_of_scale": 0,
                   "excluded_no_judge_rating": 1, "na_both": 0}
    assert agreement([], 1, 5)["n"] == 0


# ---- rows and summaries ----


def test_reference_ratings_follow_completion_order_and_name_every_aspect():
    given = (GivenCompletion("a", reference={"honesty": 4.0, "critique": 7.5}),
             GivenCompletion("b", reference={"honesty": None}))
    assert reference_ratings(given, ["honesty", "critique", "overall_rating"]) == {
        "honesty": [4.0, None], "critique": [7.5, None], "overall_rating": [None, None]}


def test_agreement_metrics_is_empty_for_generated_rows():
    rows = [{"prompt_id": "p", "generations": ["a", "b"], "ratings": {"honesty": [1, 2]},
             "parse_status": {"honesty": "ok"}}]
    assert agreement_metrics(rows, ["honesty"], {"honesty": SimpleNamespace(min_rating=1, max_rating=5)}) == {}


def test_row_pairs_mark_a_failed_aspect():
    row = {"prompt_id": "p", "generations": ["a", "b"], "ratings": {"honesty": [None, None]},
           "parse_status": {"honesty": "failed after 3 attempts: no rating"},
           "reference_ratings": {"honesty": [None, 3.0]}}
    assert row_pairs(row, "honesty") == [RatingPair("p", None, None, True), RatingPair("p", 3.0, None, True)]
    assert row_pairs(row, "truthfulness") == [RatingPair("p", None, None, True), RatingPair("p", None, None, True)]
    assert row_pairs({k: v for k, v in row.items() if k != "reference_ratings"}, "honesty") == []


@pytest.mark.parametrize(
    ("summary", "usd"),
    [
        ({"cost_usd": {"judge": 0.25}, "counts": {"judged": 500}}, 0.5),  # today's plain number
        ({"cost_usd": {"judge": {"total": 0.3, "paid": 0.1, "saved_by_cache": 0.2}}, "counts": {"judged": 600}}, 0.5),
        ({"cost_usd": {"judge": {"total": 0.0}}, "counts": {"judged": 8}}, 0.0),  # a free local judge
        ({"cost_usd": {"judge": 0.25}, "counts": {"judged": 0}}, None),
        ({"counts": {"judged": 10}}, None),
    ],
)
def test_usd_per_1k_judged(summary, usd):
    assert usd_per_1k_judged(summary) == usd


def test_agreement_columns_flatten_for_a_table():
    summary = {"cost_usd": {"judge": {"total": 0.02}}, "counts": {"judged": 40},
               "metrics": {"agreement": {"honesty": {"n": 9, "exact": 0.7778, "within_1": 1.0, "spearman": 0.9612,
                                                     "kappa_quadratic": 0.9357, "pairwise_accuracy": 1.0, "pairs": 9}}}}
    assert agreement_columns(summary) == {
        "agree.honesty.n": 9, "agree.honesty.exact": 0.7778, "agree.honesty.within_1": 1.0,
        "agree.honesty.spearman": 0.9612, "agree.honesty.kappa_quadratic": 0.9357,
        "agree.honesty.pairwise_accuracy": 1.0, "usd_per_1k_judged": 0.5}  # 1000 * 0.02 / 40
    assert agreement_columns({}) == {"usd_per_1k_judged": None}


# ---- the UltraFeedback fixture ----


def load_fixture(compose, path, *overrides: str):
    cfg = compose(["experiment=rejudge", f"dataset.path={path}", *overrides])
    return cfg, load_prompts(cfg.dataset).prompts


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_fixture_agreement_with_the_fake_judges_ratings(tmp_path, compose, suffix):
    """Rows judged by the fake judge's rule (each text rated by its quality marker): every figure as worked by hand."""
    cfg, prompts = load_fixture(compose, write_uf(tmp_path / f"uf{suffix}"), f"aspect=[{','.join(ASPECTS)}]")
    rows = []
    for p in prompts:
        fields = given_row_fields(p)
        texts = fields["generations"]
        rows.append({"prompt_id": p.prompt_id, **fields,
                     "ratings": {a: [quality(t, cfg.aspect[a].max_rating) for t in texts] for a in ASPECTS},
                     "parse_status": {a: "ok" for a in ASPECTS},
                     "reference_ratings": reference_ratings(p.given, ASPECTS)})
    assert [r for row in rows for r in row["ratings"]["honesty"]] == MARKERS
    # through rated.parquet, as the run writes it (the reference column added to the fixed schema) and reads it
    (tmp_path / "run").mkdir()
    write_outputs(tmp_path / "run", rated_schema(cfg.aspect, False, [reference_field(ASPECTS)]), rows, [])
    stored = pq.read_table(tmp_path / "run" / "rated.parquet").to_pylist()
    assert [r["reference_ratings"] for r in stored] == [r["reference_ratings"] for r in rows]

    got = agreement_metrics(stored, ASPECTS, cfg.aspect)

    assert got == {a: rounded(EXPECTED[a]) for a in ASPECTS}


def _ask(judge: FakeJudge):
    """The judge's batch call, one plain HTTP POST a request (what an OpenAI-compatible engine sends)."""

    def generate(requests: list[Request]) -> list[Completion]:
        out = []
        for r in requests:
            body: dict[str, Any] = {"model": r.model, "messages": list(r.messages), "seed": r.seed,
                                    "max_tokens": r.max_tokens, "temperature": r.temperature, "top_p": r.top_p}
            if r.response_format is not None:
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": "ratings", "schema": r.response_format}}
            req = urllib.request.Request(f"{judge.base_url}/chat/completions", data=json.dumps(body).encode(),
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=60) as reply:
                text = json.loads(reply.read())["choices"][0]["message"]["content"]
            out.append(Completion(r, text))
        return out

    return generate


@pytest.mark.parametrize("output", ["text", "json"])
def test_fixture_rejudged_through_the_judge_prompts_and_a_real_server(tmp_path, compose, output):
    """The given completions go through the real judge path (prompts with the texts shuffled, the server, the
    parser, the mapping back through the order) and the figures still come out as worked by hand."""
    cfg, prompts = load_fixture(compose, write_uf(tmp_path / "uf.parquet"), f"aspect=[{','.join(ASPECTS)}]",
                                "judge=served", "judge.model.path=fake-judge", f"judge.output={output}")
    with FakeJudge() as judge:
        items = [it for p in prompts for it in make_items(p, [g.text for g in p.given], cfg.aspect, cfg.seed, False)]
        rate(items, _ask(judge), cfg.judge, cfg.aspect, cfg.seed)
    outcomes = combine(items, cfg.aspect)
    rows = [{"prompt_id": p.prompt_id, **given_row_fields(p),
             "ratings": {a: outcomes[(p.prompt_id, a)].ratings for a in ASPECTS},
             "parse_status": {a: outcomes[(p.prompt_id, a)].status for a in ASPECTS},
             "reference_ratings": reference_ratings(p.given, ASPECTS)} for p in prompts]

    # 3 prompts x 4 side-by-side aspects + 3 x 4 critiques, every one a judge request (nothing is generated)
    assert len(judge.paid) == 3 * 4 + 3 * 4
    assert all(body["model"] == "fake-judge" for body in judge.paid)
    assert agreement_metrics(rows, ASPECTS, cfg.aspect) == {a: rounded(EXPECTED[a]) for a in ASPECTS}


def test_merged_shards_of_a_rejudge_report_the_agreement_of_all_rows(tmp_path, compose):
    """uf-experiments-merge recomputes metrics.agreement from the merged rows (shard dirs written by hand here, in
    the run-dir layout: .hydra/config.yaml, rated.parquet, summary.json)."""
    from datasets import Dataset
    from omegaconf import OmegaConf

    from uf_experiments.report.merge import merge

    data = write_uf(tmp_path / "uf.parquet")
    shards = []
    for index in range(2):
        cfg, prompts = load_fixture(compose, data, f"aspect=[{','.join(ASPECTS)}]", "dataset.shard.count=2",
                                    f"dataset.shard.index={index}")
        run = tmp_path / "shards" / f"{index}_shard"
        (run / ".hydra").mkdir(parents=True)
        (run / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
        rows = [{"prompt_id": p.prompt_id, "prompt_index": p.index, **given_row_fields(p),
                 "ratings": {a: [quality(t, cfg.aspect[a].max_rating) for t in given_row_fields(p)["generations"]]
                             for a in ASPECTS},
                 "parse_status": {a: "ok" for a in ASPECTS},
                 "reference_ratings": reference_ratings(p.given, ASPECTS)} for p in prompts]
        Dataset.from_list(rows).to_parquet(str(run / "rated.parquet"))
        judged = len(rows) * len(ASPECTS)
        (run / "summary.json").write_text(json.dumps({
            "experiment": "rejudge", "stopped": None,
            "counts": {"rows_read": 6, "skipped_few_completions": 1, "dropped_empty_completions": 3,
                       "judged": judged, "pairs": 0},
            "cost_usd": {"judge": {"total": 0.001 * judged}, "total": 0.001 * judged},
        }))
        shards.append(run)

    summary = merge(shards, tmp_path / "merged")

    assert summary["metrics"]["agreement"] == {a: rounded(EXPECTED[a]) for a in ASPECTS}
    assert summary["metrics"]["usd_per_1k_judged"] == 1.0  # $0.001 an item
    assert summary["counts"]["judged"] == 3 * 5  # summed over the shards (2 + 1 prompts)
    assert (summary["counts"]["skipped_few_completions"], summary["counts"]["dropped_empty_completions"]) == (1, 3)
    merged = pq.read_table(tmp_path / "merged" / "rated.parquet").to_pylist()
    assert [r["reference_ratings"]["honesty"] for r in merged] == [[None, 4.0, 2.0, 1.0], [3.0, None, 4.0, 2.0],
                                                                  [5.0, 1.0, 3.0, None]]
