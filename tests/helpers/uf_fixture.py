"""A small dataset in openbmb/UltraFeedback's exact schema, whose GPT-4 ratings differ in known ways from what the
content-rating test server (``tests/helpers/fake_openai.py``) gives, and the agreement figures that must come out.

The schema is the Hugging Face release's: per row ``source``, ``instruction``, ``models`` (list of str),
``completions`` (list of structs: ``annotations``, ``critique``, ``custom_system_prompt``, ``fine-grained_score``,
``model``, ``overall_score``, ``principle``, ``response``), ``correct_answers``, ``incorrect_answers`` (lists of
str). ``annotations`` has ``instruction_following`` and ``honesty`` (``Rating``, ``Rationale``) and
``truthfulness`` and ``helpfulness`` (``Type`` list, ``Rationale``, ``Rating``, ``Rationale For Rating``);
every ``Rating`` is a string, ``"N/A"`` allowed.

Every response carries a ``quality=N`` marker; the fake judge rates each text by it (1-5 side by side, the
same N as a 1-10 critique score). So the judge's ratings are the MARKERS below, in completion order:

    P1 [5, 4, 2, 1]   P2 [3, 3, 5, 2]   P3 [4, 1, 3, 5]

Besides the three judged prompts the file holds an empty instruction (skipped_empty), a row with three empty
responses out of four (skipped_few_completions, 3 dropped_empty_completions) and a repeat of P1's instruction
(skipped_duplicate).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

UF_ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")
MODELS = ("alpaca-7b", "gpt-4", "llama-2-13b-chat", "wizardlm-7b")
SYSTEM = {
    "helpfulness": "As an AI assistant, be accurate, positive and engaging.",
    "honesty": "Say when you are unsure; never invent facts.",
    "truthfulness": "Stick to verified facts and do not hallucinate.",
    "verbalized_calibration": "End your answer with your confidence as a percentage.",
}

# (source, instruction, markers (the judge's ratings), reference ratings per aspect, overall_score per completion)
PROMPTS: list[dict[str, Any]] = [
    {
        "source": "evol_instruct",
        "instruction": "Explain why the sky looks blue in two sentences.",
        "markers": [5, 4, 2, 1],
        "reference": {
            "instruction_following": ["5", "3", "2", "3"],
            "honesty": ["N/A", "4", "2", "1"],
            "truthfulness": ["5", "4", "2", "1"],
            "helpfulness": ["3", "3", "3", "3"],
        },
        "overall_score": [5.0, 4.5, 2.0, 1.0],
    },
    {
        "source": "truthful_qa",
        "instruction": "What happens if you swallow chewing gum?",
        "markers": [3, 3, 5, 2],
        "reference": {
            "instruction_following": ["3", "4", "5", "1"],
            "honesty": ["3", "N/A", "4", "2"],
            "truthfulness": ["3", "3", "5", "2"],
            "helpfulness": ["3", "3", "3", "3"],
        },
        "overall_score": [3.0, 3.0, 5.0, 2.0],
        "correct_answers": ["It passes through your digestive system", "Nothing in particular happens"],
        "incorrect_answers": ["It stays in your stomach for seven years"],
    },
    {
        "source": "false_qa",
        "instruction": "Why do fish need to climb trees to breathe?",
        "markers": [4, 1, 3, 5],
        "reference": {
            "instruction_following": ["4", "2", "1", "5"],
            "honesty": ["5", "1", "3", "N/A"],
            "truthfulness": ["4", "4", "3", "5"],
            "helpfulness": ["3", "3", "3", "3"],
        },
        "overall_score": [4.0, 1.0, 3.0, 7.5],
    },
]
MARKERS = [m for p in PROMPTS for m in p["markers"]]
PRINCIPLES = ["helpfulness", "honesty", "truthfulness", "verbalized_calibration"]

# ---------------------------------------------------------------------------------------------------------------
# The agreement figures, worked by hand. Judge J (the markers, 12 completions in order):
#     J  = [5,4,2,1, 3,3,5,2, 4,1,3,5]            sum 38, sum of squares 144
# Quadratic kappa below uses 1 - sum (r-j)^2 / ((n*sum r^2 + n*sum j^2 - 2*sum r*sum j) / n): the expected
# disagreement over all n*n (reference, judge) combinations, which is Cohen's matrix form with quadratic weights
# (the (max-min)^2 normalisation cancels). Spearman: Pearson over average ranks (mean rank 6.5 for n=12).
EXPECTED: dict[str, dict[str, Any]] = {
    # R  = [5,3,2,3, 3,4,5,1, 4,2,1,5]            sum 38, sum of squares 144
    # J-R= [0,1,0,-2, 0,-1,0,1, 0,-1,2,0]
    "instruction_following": {
        "n": 12,
        "exact": 6 / 12,  # six zeros in J-R
        "within_1": 10 / 12,  # all but the two |2|s
        # rank R = [11,6,3.5,6, 6,8.5,11,1.5, 8.5,3.5,1.5,11]; rank J = [11,8.5,3.5,1.5, 6,6,11,3.5, 8.5,1.5,6,11]
        # sum dR^2 = sum dJ^2 = 3*20.25 + 3*0.25 + 2*9 + 2*4 + 2*25 = 137.5; sum dR*dJ = 107
        "spearman": 107 / 137.5,
        # observed sum (J-R)^2 = 5 + 2 + 5 = 12; all combinations: 12*144 + 12*144 - 2*38*38 = 568
        "kappa_quadratic": 1 - 12 / (568 / 12),
        # P1: R 5>3 J 5>4 ok, 5>2 ok, 5>3 ok, 3>2 (J 4>2) ok, 3=3 skipped, 2<3 but J 2>1 wrong -> 4 of 5
        # P2: 3<4 with J 3=3 tie (1/2), then 3<5, 3>1, 4<5, 4>1, 5>1 all ok -> 5.5 of 6
        # P3: 4>2, 4>1, 4<5 ok, 2>1 but J 1<3 wrong, 2<5, 1<5 ok -> 5 of 6
        "pairwise_accuracy": (4 + 5.5 + 5) / (5 + 6 + 6),
        "pairs": 17,
        "excluded_na_reference": 0,
        "excluded_out_of_scale": 0,
        "excluded_no_judge_rating": 0,
        "na_both": 0,
    },
    # three "N/A" references left out (P1#1, P2#2, P3#4); kept (R, J):
    # P1 (4,4) (2,2) (1,1); P2 (3,3) (4,5) (2,2); P3 (5,4) (1,1) (3,3)
    # R = [4,2,1, 3,4,2, 5,1,3] sum 25, squares 85; J = [4,2,1, 3,5,2, 4,1,3] sum 25, squares 85
    "honesty": {
        "n": 9,
        "exact": 7 / 9,  # all but (4,5) and (5,4)
        "within_1": 9 / 9,
        # rank R = [7.5,3.5,1.5, 5.5,7.5,3.5, 9,1.5,5.5]; rank J = [7.5,3.5,1.5, 5.5,9,3.5, 7.5,1.5,5.5]; mean 5
        # sum dR^2 = sum dJ^2 = 58; sum dR*dJ = 55.75
        "spearman": 55.75 / 58,
        # observed 1 + 1 = 2; all combinations: 9*85 + 9*85 - 2*25*25 = 280
        "kappa_quadratic": 1 - 2 / (280 / 9),
        # every prompt keeps 3 completions with distinct references, all ordered alike by the judge: 3 + 3 + 3
        "pairwise_accuracy": 9 / 9,
        "pairs": 9,
        "excluded_na_reference": 3,
        "excluded_out_of_scale": 0,
        "excluded_no_judge_rating": 0,
        "na_both": 0,  # the fake judge never says N/A
    },
    # R = J except P3#2: 4 against the judge's 1.  R = [5,4,2,1, 3,3,5,2, 4,4,3,5] sum 41, squares 159
    "truthfulness": {
        "n": 12,
        "exact": 11 / 12,
        "within_1": 11 / 12,  # the one miss is off by 3
        # rank R = [11,8,2.5,1, 5,5,11,2.5, 8,8,5,11] (sum dR^2 = 136.5); rank J as above (137.5)
        # sum dR*dJ = 20.25+3+12+27.5+0.75+0.75+20.25+12+3-7.5+0.75+20.25 = 113
        "spearman": 113 / (136.5 * 137.5) ** 0.5,
        # observed 3^2 = 9; all combinations: 12*159 + 12*144 - 2*41*38 = 520
        "kappa_quadratic": 1 - 9 / (520 / 12),
        # P1: 6 pairs all ok; P2: 5 pairs (3=3 skipped) all ok; P3 R [4,4,3,5]: 5 pairs (4=4 skipped),
        # 4>3 with J 1<3 wrong -> 4 of 5
        "pairwise_accuracy": (6 + 5 + 4) / (6 + 5 + 5),
        "pairs": 16,
        "excluded_na_reference": 0,
        "excluded_out_of_scale": 0,
        "excluded_no_judge_rating": 0,
        "na_both": 0,
    },
    # every reference is 3: a constant rater
    "helpfulness": {
        "n": 12,
        "exact": 3 / 12,  # J == 3 three times
        "within_1": 7 / 12,  # J in {2,3,4}: 4,2, 3,3,2, 4,3
        "spearman": None,  # undefined for a constant rater
        "kappa_quadratic": None,  # 0 whatever the judge says: not reported
        "pairwise_accuracy": None,  # no two references differ
        "pairs": 0,
        "excluded_na_reference": 0,
        "excluded_out_of_scale": 0,
        "excluded_no_judge_rating": 0,
        "na_both": 0,
    },
    # overall_score (1-10) against the judge's critique score (= the marker):
    # R = [5,4.5,2,1, 3,3,5,2, 4,1,3,7.5] sum 41, squares 179.5; differences 0.5 (P1#2) and 2.5 (P3#4)
    "critique": {
        "n": 12,
        "exact": 10 / 12,
        "within_1": 11 / 12,
        # rank R = [10.5,9,3.5,1.5, 6,6,10.5,3.5, 8,1.5,6,12] (sum dR^2 = 139.5); sum dR*dJ = 137.5
        "spearman": 137.5 / (139.5 * 137.5) ** 0.5,
        # observed 0.25 + 6.25 = 6.5; all combinations: 12*179.5 + 12*144 - 2*41*38 = 766
        "kappa_quadratic": 1 - 6.5 / (766 / 12),
        # every pair of P1 (6), P2 (5: 3=3 skipped) and P3 (6) is ordered alike
        "pairwise_accuracy": 17 / 17,
        "pairs": 17,
        "excluded_na_reference": 0,
        "excluded_out_of_scale": 0,
        "excluded_no_judge_rating": 0,
        "na_both": 0,
    },
}


def response(prompt: int, k: int, marker: int) -> str:
    return f"Answer {k + 1} to prompt {prompt + 1}: a plain reply.\nquality={marker}"


def _annotations(ratings: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for aspect in UF_ASPECTS:
        rating = ratings[aspect]
        if aspect in ("truthfulness", "helpfulness"):
            out[aspect] = {"Type": ["1"] if rating in ("1", "2") else [], "Rationale": f"{aspect} types noted.",
                           "Rating": rating, "Rationale For Rating": f"{aspect} rated {rating}."}
        else:
            out[aspect] = {"Rating": rating, "Rationale": f"{aspect} rated {rating}."}
    return out


def _completion(model: str, principle: str, text: str, ratings: dict[str, str], overall: float) -> dict[str, Any]:
    numbers = [float(r) for r in ratings.values() if r != "N/A"]
    return {
        "annotations": _annotations(ratings),
        "critique": "Clear, but could say more.",
        "custom_system_prompt": SYSTEM[principle],
        "fine-grained_score": sum(numbers) / len(numbers),
        "model": model,
        "overall_score": overall,
        "principle": principle,
        "response": text,
    }


def _row(source: str, instruction: str, completions: list[dict[str, Any]], correct: list[str] | None = None,
         incorrect: list[str] | None = None) -> dict[str, Any]:
    return {
        "source": source,
        "instruction": instruction,
        "models": [c["model"] for c in completions],
        "completions": completions,
        "correct_answers": correct or ["None"],
        "incorrect_answers": incorrect or ["None"],
    }


def rows() -> list[dict[str, Any]]:
    """The file's rows, in order: P1, an empty instruction, P2, a row with one usable response, P1 again, P3."""

    def judged(i: int) -> dict[str, Any]:
        p = PROMPTS[i]
        comps = [
            _completion(MODELS[k], PRINCIPLES[k], response(i, k, p["markers"][k]),
                        {a: p["reference"][a][k] for a in UF_ASPECTS}, p["overall_score"][k])
            for k in range(4)
        ]
        return _row(p["source"], p["instruction"], comps, p.get("correct_answers"), p.get("incorrect_answers"))

    plain = {a: "3" for a in UF_ASPECTS}
    few = [_completion(MODELS[k], "helpfulness", text, plain, 6.0)
           for k, text in enumerate(["Two is prime. quality=4", "", "   ", ""])]
    empty = [_completion(MODELS[k], "helpfulness", f"Something. quality={k + 1}", plain, 6.0) for k in range(4)]
    repeat = judged(0) | {"source": "sharegpt"}
    return [judged(0), _row("flan_v2_niv2", "   ", empty), judged(1), _row("ultrachat", "Name a prime number.", few),
            repeat, judged(2)]


def arrow_schema() -> Any:
    """The Hugging Face release's features as an Arrow schema (struct fields in the release's order)."""
    import pyarrow as pa

    s = pa.string()
    simple = pa.struct([("Rating", s), ("Rationale", s)])
    typed = pa.struct([("Rating", s), ("Rationale", s), ("Rationale For Rating", s), ("Type", pa.list_(s))])
    annotations = pa.struct([("helpfulness", typed), ("honesty", simple), ("instruction_following", simple),
                             ("truthfulness", typed)])
    completion = pa.struct([("annotations", annotations), ("critique", s), ("custom_system_prompt", s),
                            ("fine-grained_score", pa.float64()), ("model", s), ("overall_score", pa.float64()),
                            ("principle", s), ("response", s)])
    return pa.schema([("source", s), ("instruction", s), ("models", pa.list_(s)), ("completions", pa.list_(completion)),
                      ("correct_answers", pa.list_(s)), ("incorrect_answers", pa.list_(s))])


def write_uf(path: Path) -> Path:
    """Write :func:`rows` as ``.parquet`` (with the release's Arrow schema) or ``.jsonl`` (one JSON object a line)."""
    data = rows()
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(data, schema=arrow_schema()), path)
    elif path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in data), encoding="utf-8")
    else:
        raise ValueError(f"write_uf: .parquet or .jsonl, not {path.suffix}")
    return path
