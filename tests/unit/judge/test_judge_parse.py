"""Table-driven judge-reply parsing: exact ratings, or the exact failure."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from uf_experiments.judge.parse import parse_reply


def aspect(name: str, *, na: bool = False, types: bool = False, hi: int = 5) -> SimpleNamespace:
    return SimpleNamespace(name=name, min_rating=1, max_rating=hi, allow_na=na, has_types=types)


IF = aspect("instruction_following")
HON = aspect("honesty", na=True)
TRU = aspect("truthfulness", types=True)
HELP = aspect("helpfulness", types=True)
OVR = aspect("overall_rating")
CRIT = SimpleNamespace(name="critique", min_rating=1, max_rating=10, allow_na=False, has_types=False, per_completion=True)


def sections(*ratings: str, header: str = "#### Output for Text {k}", extra: str = "") -> str:
    return "\n\n".join(f"{header.format(k=k)}\nRating: {r}\nRationale: reason {k}.{extra}" for k, r in enumerate(ratings, 1))


def typed(*items: tuple[str, str]) -> str:
    return "\n\n".join(
        f"#### Output for Text {k}\nType: {t}\nRationale: type reason {k}\nRating: {r}\nRationale: rating reason {k}"
        for k, (t, r) in enumerate(items, 1)
    )


def js(**texts: object) -> str:
    return json.dumps(texts)


OK_TEXT = [
    # id, aspect, n, reply, expected ratings
    ("plain", IF, 2, sections("4", "2"), [4, 2]),
    ("four texts", IF, 4, sections("1", "2", "3", "5"), [1, 2, 3, 5]),
    ("bold header", IF, 2, sections("3", "5", header="**Output for Text {k}**"), [3, 5]),
    ("bold header with hashes", IF, 2, sections("3", "5", header="### **Output for Text {k}:**"), [3, 5]),
    ("five hashes (honesty template)", HON, 2, sections("5", "1", header="##### Output for Text {k}"), [5, 1]),
    ("bold rating label", IF, 2, "#### Output for Text 1\n**Rating:** 4\n**Rationale:** ok\n\n#### Output for Text 2\n**Rating**: 2\nRationale: meh", [4, 2]),
    ("rating over five", IF, 2, sections("4/5", "2 / 5"), [4, 2]),
    ("rating with comment", IF, 2, sections("4 (good)", "1 - irrelevant"), [4, 1]),
    ("bold value", IF, 2, sections("**4**", "**2**"), [4, 2]),
    ("preamble and epilogue", IF, 2, "Here is my evaluation.\n\n" + sections("3", "4") + "\n\nOverall, both texts are fine.", [3, 4]),
    ("blank lines inside rationale", IF, 2, "#### Output for Text 1\nRating: 2\nRationale: first para.\n\nsecond para.\n\n#### Output for Text 2\nRating: 5\nRationale: fine", [2, 5]),
    ("CRLF line endings", IF, 2, sections("3", "4").replace("\n", "\r\n"), [3, 4]),
    ("sections out of order", IF, 3, "#### Output for Text 2\nRating: 2\nRationale: b\n\n#### Output for Text 3\nRating: 3\nRationale: c\n\n#### Output for Text 1\nRating: 1\nRationale: a", [1, 2, 3]),
    ("honesty N/A", HON, 2, sections("N/A", "4"), [None, 4]),
    ("honesty n/a lowercase", HON, 2, sections("n/a", "3"), [None, 3]),
    ("truthfulness types", TRU, 2, typed(("1, 3", "2"), ("None", "5")), [2, 5]),
    ("helpfulness types bracketed", HELP, 2, typed(("[1, 2]", "4"), ('"None"', "3")), [4, 3]),
    ("quoted rating inside rationale", IF, 2, "#### Output for Text 1\nRating: 2\nRationale: the text ends with 'Rating: 5' which is odd\n\n#### Output for Text 2\nRating: 4\nRationale: ok", [2, 4]),
    ("header quoted inline in rationale", IF, 2, "#### Output for Text 1\nRating: 1\nRationale: it writes #### Output for Text 2 mid-sentence\n\n#### Output for Text 2\nRating: 3\nRationale: ok", [1, 3]),
    ("single text", OVR, 1, sections("5"), [5]),
    ("header with colon no hashes", IF, 2, sections("2", "3", header="Output for Text {k}:"), [2, 3]),
    ("bulleted labels", IF, 2, "#### Output for Text 1\n- Rating: 4\n- Rationale: a\n\n#### Output for Text 2\n- Rating: 1\n- Rationale: b", [4, 1]),
]

FAIL_TEXT = [
    # id, aspect, n, reply, expected error
    ("no sections", IF, 2, "Rating: 4\nRationale: good", "no 'Output for Text k' sections"),
    ("missing text", IF, 3, sections("4", "2"), "missing sections for texts [3]"),
    ("duplicated section", IF, 2, sections("4", "2") + "\n\n#### Output for Text 2\nRating: 5\nRationale: again", "text 2: duplicated section"),
    ("extra text label", IF, 2, sections("4", "2", "1"), "section for text 3, but only 2 texts were shown"),
    ("out of range high", IF, 2, sections("6", "2"), "text 1: rating 6 outside 1-5"),
    ("out of range zero", IF, 2, sections("3", "0"), "text 2: rating 0 outside 1-5"),
    ("wrong denominator", IF, 2, sections("8/10", "2"), "text 1: rating '8/10' is not on the 1-5 scale"),
    ("N/A not allowed", IF, 2, sections("N/A", "2"), "text 1: N/A is not allowed for instruction_following"),
    ("N/A not allowed truthfulness", TRU, 1, typed(("None", "N/A")), "text 1: N/A is not allowed for truthfulness"),
    ("words not number", IF, 2, sections("four", "2"), "text 1: rating 'four' is not a number"),
    ("two rating lines in a section", IF, 2, "#### Output for Text 1\nRating: 4\nRationale: it says\nRating: 5\n\n#### Output for Text 2\nRating: 2\nRationale: x", "text 1: 2 rating lines (need exactly 1)"),
    ("no rating line", IF, 2, "#### Output for Text 1\nRationale: forgot\n\n#### Output for Text 2\nRating: 2\nRationale: x", "text 1: 0 rating lines (need exactly 1)"),
    ("two type lines", TRU, 1, "#### Output for Text 1\nType: 1\nType: 2\nRating: 4\nRationale: x", "text 1: 2 type lines (need at most 1)"),
    ("missing type and missing section", TRU, 2, sections("4"), "missing sections for texts [2]"),
    ("missing type, two rating lines", HELP, 1, "#### Output for Text 1\nRating: 4\nRating: 2\nRationale: x", "text 1: 2 rating lines (need exactly 1)"),
    ("missing type, out of range", HELP, 1, sections("7"), "text 1: rating 7 outside 1-5"),
    ("missing rationale, duplicated section", IF, 1, "#### Output for Text 1\nRating: 4\n\n#### Output for Text 1\nRating: 2", "text 1: duplicated section"),
    ("empty reply", IF, 2, "", "no 'Output for Text k' sections"),
    ("injected header line from a completion", IF, 2, "#### Output for Text 1\nRating: 2\nRationale: the text contains\n#### Output for Text 2\nRating: 5\n\n#### Output for Text 2\nRating: 3\nRationale: x", "text 2: duplicated section"),
]

OK_JSON = [
    ("plain", IF, 2, js(text_1={"rating": 4, "rationale": "a"}, text_2={"rating": 1, "rationale": "b"}), [4, 1]),
    ("key order", IF, 2, js(text_2={"rating": 3, "rationale": "b"}, text_1={"rating": 5, "rationale": "a"}), [5, 3]),
    ("fenced with prose", IF, 2, "Sure:\n```json\n" + js(text_1={"rating": 2, "rationale": "a"}, text_2={"rating": 2, "rationale": "b"}) + "\n```\nDone.", [2, 2]),
    ("control characters in strings", IF, 2, '{"text_1":{"rating":3,"rationale":"a\x07b\nc"},"text_2":{"rating":4,"rationale":"\x1b"}}', [3, 4]),
    ("honesty N/A", HON, 2, js(text_1={"rating": "N/A", "rationale": "creative"}, text_2={"rating": 5, "rationale": "b"}), [None, 5]),
    ("types", TRU, 2, js(text_1={"types": [1, 3], "type_rationale": "x", "rating": 2, "rationale": "a"}, text_2={"types": [], "type_rationale": "", "rating": 5, "rationale": "b"}), [2, 5]),
    ("prose around bare object", IF, 1, 'Here: {"text_1": {"rating": 4, "rationale": "fine"}} thanks', [4]),
]

FAIL_JSON = [
    ("not json", IF, 2, "Rating: 4", "invalid JSON: Expecting value at char 0"),
    ("truncated", IF, 2, '{"text_1":{"rating":4,"rationale":"abc', "invalid JSON: Unterminated string starting at at char 34"),
    ("array", IF, 2, "[4, 2]", "JSON reply is not an object"),
    ("missing key", IF, 2, js(text_1={"rating": 4, "rationale": "a"}), "JSON keys wrong (missing ['text_2'], unexpected [])"),
    ("extra key", IF, 1, js(text_1={"rating": 4, "rationale": "a"}, text_2={"rating": 4, "rationale": "a"}), "JSON keys wrong (missing [], unexpected ['text_2'])"),
    ("out of range", IF, 1, js(text_1={"rating": 9, "rationale": "a"}), "text 1: rating 9 outside 1-5"),
    ("string rating", IF, 1, js(text_1={"rating": "4", "rationale": "a"}), "text 1: rating '4' is not an integer"),
    ("bool rating", IF, 1, js(text_1={"rating": True, "rationale": "a"}), "text 1: rating True is not an integer"),
    ("no rating", IF, 1, js(text_1={"rationale": "a"}), "text 1: no rating"),
    ("N/A not allowed", OVR, 1, js(text_1={"rating": "N/A", "rationale": "a"}), "text 1: N/A is not allowed for overall_rating"),
    ("bad types", TRU, 1, js(text_1={"types": "1", "type_rationale": "", "rating": 3, "rationale": "a"}), "text 1: types '1' is not a list of integers"),
    ("no types, out of range", HELP, 1, js(text_1={"rating": 6, "rationale": "a"}), "text 1: rating 6 outside 1-5"),
    ("no rationale, missing key", IF, 2, js(text_1={"rating": 4}), "JSON keys wrong (missing ['text_2'], unexpected [])"),
]

NO_TYPE = "#### Output for Text {k}\nRating: {r}\nRationale: rating reason {k}"
NO_RATIONALE = "#### Output for Text {k}\nRating: {r}"

MISSING = [
    # id, aspect, output, n, reply, expected ratings, expected missing fields per text
    ("text: truthfulness without Type lines", TRU, "text", 2,
     "\n\n".join(NO_TYPE.format(k=k, r=r) for k, r in [(1, 4), (2, 2)]), [4, 2], [("type",), ("type",)]),
    ("text: helpfulness without a Type line in one text", HELP, "text", 2,
     NO_TYPE.format(k=1, r=5) + "\n\n" + typed(("1", "3")).replace("Text 1", "Text 2"), [5, 3], [("type",), ()]),
    ("text: helpfulness, Type line and its rationale but none for the rating", HELP, "text", 1,
     "#### Output for Text 1\nType: 1, 2\nRationale: type reason\nRating: 4", [4], [("rationale",)]),
    ("text: helpfulness, nothing but the rating", HELP, "text", 1, NO_RATIONALE.format(k=1, r=3), [3], [("type", "rationale")]),
    ("text: no rationale line", IF, "text", 2,
     NO_RATIONALE.format(k=1, r=4) + "\n\n" + NO_RATIONALE.format(k=2, r=1), [4, 1], [("rationale",), ("rationale",)]),
    ("text: empty rationale", OVR, "text", 2, sections("2", "5").replace("reason 2.", ""), [2, 5], [(), ("rationale",)]),
    ("text: honesty N/A without rationale", HON, "text", 1, NO_RATIONALE.format(k=1, r="N/A"), [None], [("rationale",)]),
    ("json: truthfulness without types", TRU, "json", 2,
     js(text_1={"rating": 4, "rationale": "a"}, text_2={"types": [2], "type_rationale": "b", "rating": 1, "rationale": "c"}),
     [4, 1], [("type",), ()]),
    ("json: helpfulness without types or rationale", HELP, "json", 1, js(text_1={"rating": 2}), [2], [("type", "rationale")]),
    ("json: empty types list is an answer", HELP, "json", 1, js(text_1={"types": [], "rating": 5, "rationale": "x"}), [5], [()]),
    ("json: null rationale", IF, "json", 2, js(text_1={"rating": 3, "rationale": None}, text_2={"rating": 4, "rationale": " "}),
     [3, 4], [("rationale",), ("rationale",)]),
    ("critique text: score without feedback", CRIT, "text", 1, "Overall Score: 7", [7], [("rationale",)]),
    ("critique json: score without feedback", CRIT, "json", 1, js(overall_score=8), [8], [("rationale",)]),
]


@pytest.mark.parametrize(("case", "asp", "n", "reply", "want"), OK_TEXT, ids=[c[0] for c in OK_TEXT])
def test_text_ok(case, asp, n, reply, want):
    parsed = parse_reply(reply, n, asp, "text")
    assert parsed.error is None
    assert [r.rating for r in parsed.ratings] == want
    assert all(r.aspect == asp.name for r in parsed.ratings)
    assert parsed.missing == ((),) * n and parsed.missing_counts() == {}


@pytest.mark.parametrize(("case", "asp", "n", "reply", "want"), FAIL_TEXT, ids=[c[0] for c in FAIL_TEXT])
def test_text_fail(case, asp, n, reply, want):
    parsed = parse_reply(reply, n, asp, "text")
    assert parsed.ratings is None
    assert parsed.error == want
    assert parsed.missing == ()


@pytest.mark.parametrize(("case", "asp", "n", "reply", "want"), OK_JSON, ids=[c[0] for c in OK_JSON])
def test_json_ok(case, asp, n, reply, want):
    parsed = parse_reply(reply, n, asp, "json")
    assert parsed.error is None
    assert [r.rating for r in parsed.ratings] == want
    assert parsed.missing == ((),) * n


@pytest.mark.parametrize(("case", "asp", "n", "reply", "want"), FAIL_JSON, ids=[c[0] for c in FAIL_JSON])
def test_json_fail(case, asp, n, reply, want):
    parsed = parse_reply(reply, n, asp, "json")
    assert parsed.ratings is None
    assert parsed.error == want


def test_types_and_rationales_are_bound_to_their_text():
    parsed = parse_reply(typed(("1, 3", "2"), ("None", "5")), 2, TRU, "text")
    assert [r.types for r in parsed.ratings] == [(1, 3), ()]
    assert [r.rationale for r in parsed.ratings] == ["rating reason 1", "rating reason 2"]
    parsed = parse_reply(sections("4", "2"), 2, IF, "text")
    assert [r.rationale for r in parsed.ratings] == ["reason 1.", "reason 2."]


def test_no_reply_is_a_failure():
    assert parse_reply(None, 2, IF, "text").error == "no reply"


@pytest.mark.parametrize(("case", "asp", "output", "n", "reply", "want", "missing"), MISSING, ids=[c[0] for c in MISSING])
def test_a_clear_rating_is_kept_when_an_auxiliary_field_is_missing(case, asp, output, n, reply, want, missing):
    parsed = parse_reply(reply, n, asp, output)
    assert parsed.error is None
    assert [r.rating for r in parsed.ratings] == want
    assert parsed.missing == tuple(missing)
    counts: dict[str, int] = {}
    for fields in missing:
        for f in fields:
            counts[f] = counts.get(f, 0) + 1
    assert parsed.missing_counts() == counts


def test_missing_type_keeps_types_empty_and_the_rating_rationale():
    reply = NO_TYPE.format(k=1, r=4) + "\n\n#### Output for Text 2\nType: 1, 3\nRationale: t2\nRating: 2\nRationale: r2"
    parsed = parse_reply(reply, 2, TRU, "text")
    assert [r.types for r in parsed.ratings] == [(), (1, 3)]
    assert [r.rationale for r in parsed.ratings] == ["rating reason 1", "r2"]
    # a typed section's only rationale before the rating is the type's: not taken as the rating's
    parsed = parse_reply("#### Output for Text 1\nType: 2\nRationale: about the type\nRating: 4", 1, HELP, "text")
    assert parsed.ratings[0].rationale == "" and parsed.ratings[0].types == (2,)
