"""Turn a judge reply into exactly one rating per text, or a parse failure with its reason. Never guesses.

A reply is accepted only when every text 1..n has exactly one section, each section has exactly one
in-range rating (or "N/A" where the aspect allows it), and no section is labelled outside 1..n. Ratings are
bound to the section's own label, so a section out of order is still read correctly, and text quoted from a
completion inside a rationale cannot move a rating onto another text.

Auxiliary fields never cost a clear rating: a text whose ``Type:`` line (truthfulness, helpfulness) or rationale
is missing keeps its rating, and :attr:`Parsed.missing` says which fields were missing, per text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from uf_experiments.core.records import Rating

TYPE, RATIONALE = "type", "rationale"  # the auxiliary fields a reply may leave out (Parsed.missing)


@dataclass(frozen=True)
class Parsed:
    ratings: tuple[Rating, ...] | None  # one per text, in text order; None on failure
    error: str | None = None
    # one tuple per text, in text order (like ``ratings``): the auxiliary fields that text's answer lacked,
    # e.g. ``(("type",), ())``; the rating was kept. Empty on failure.
    missing: tuple[tuple[str, ...], ...] = ()

    @property
    def ok(self) -> bool:
        return self.ratings is not None

    def missing_counts(self) -> dict[str, int]:
        """``{"type": texts without a Type line, "rationale": texts without a rationale}`` (only the nonzero)."""
        counts: dict[str, int] = {}
        for fields in self.missing:
            for f in fields:
                counts[f] = counts.get(f, 0) + 1
        return counts


def _ok(pairs: list[tuple[Rating, tuple[str, ...]]]) -> Parsed:
    return Parsed(tuple(r for r, _ in pairs), None, tuple(m for _, m in pairs))


def _fail(reason: str) -> Parsed:
    return Parsed(None, reason)


def _rating_value(raw: Any, aspect: Any, label: str) -> tuple[int | None, str | None]:
    """(rating, error). N/A -> (None, None) when allowed."""
    if isinstance(raw, str) and raw.strip().upper() in {"N/A", "NA"}:
        return (None, None) if aspect.allow_na else (None, f"{label}: N/A is not allowed for {aspect.name}")
    if isinstance(raw, bool) or not isinstance(raw, int):
        return None, f"{label}: rating {raw!r} is not an integer"
    if not aspect.min_rating <= raw <= aspect.max_rating:
        return None, f"{label}: rating {raw} outside {aspect.min_rating}-{aspect.max_rating}"
    return raw, None


def _strip_fences(text: str) -> str:
    m = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    return m.group(1) if m else text


def parse_json(reply: str, n: int, aspect: Any) -> Parsed:
    """JSON mode: an object with keys text_1..text_n (extra prose around a fenced block is tolerated)."""
    body = _strip_fences(reply).strip()
    if not body.startswith("{"):
        start, end = body.find("{"), body.rfind("}")
        body = body[start : end + 1] if 0 <= start < end else body
    try:
        data = json.loads(body, strict=False)  # strict=False: tolerate control characters inside strings
    except json.JSONDecodeError as exc:
        return _fail(f"invalid JSON: {exc.msg} at char {exc.pos}")
    if not isinstance(data, dict):
        return _fail("JSON reply is not an object")
    expected = {f"text_{k}" for k in range(1, n + 1)}
    if set(data) != expected:
        missing, extra = sorted(expected - set(data)), sorted(set(data) - expected)
        return _fail(f"JSON keys wrong (missing {missing}, unexpected {extra})")
    out = []
    for k in range(1, n + 1):
        item = data[f"text_{k}"]
        if not isinstance(item, dict) or "rating" not in item:
            return _fail(f"text {k}: no rating")
        value, err = _rating_value(item["rating"], aspect, f"text {k}")
        if err:
            return _fail(err)
        missing: list[str] = []
        types: tuple[int, ...] = ()
        if aspect.has_types:
            raw_types = item.get("types")
            if raw_types is None:
                missing.append(TYPE)  # no "types" key (an empty list is the answer "None", not a missing field)
            elif not isinstance(raw_types, list) or not all(type(t) is int for t in raw_types):  # bool is no int here
                return _fail(f"text {k}: types {raw_types!r} is not a list of integers")
            else:
                types = tuple(raw_types)
        rationale = _json_text(item.get("rationale"))
        if not rationale:
            missing.append(RATIONALE)
        out.append((Rating(aspect.name, value, rationale, types), tuple(missing)))
    return _ok(out)


def _json_text(value: Any) -> str:
    return "" if value is None else str(value).strip()


_HEADER = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?\**[ \t]*Output for Text[ \t]*(\d+)[ \t]*\**[ \t]*:?[ \t]*\**[ \t]*$", re.I | re.M
)
_RATING = re.compile(r"^[ \t]*(?:[-*][ \t]+)?\**Rating\**[ \t]*:[ \t]*\**[ \t]*(.*)$", re.I | re.M)
_TYPE = re.compile(r"^[ \t]*(?:[-*][ \t]+)?\**Type\**[ \t]*:[ \t]*\**[ \t]*(.*)$", re.I | re.M)
_RATIONALE = re.compile(r"^[ \t]*(?:[-*][ \t]+)?\**Rationale\**[ \t]*:[ \t]*\**(.*)$", re.I | re.M)
_VALUE = re.compile(r"^\**[ \t]*(N/A|\d+)(?:[ \t]*/[ \t]*(\d+))?\b", re.I)


def _parse_section(body: str, k: int, aspect: Any) -> tuple[tuple[Rating, tuple[str, ...]] | None, str | None]:
    """((the text's rating, its missing fields), None), or (None, why the section does not parse)."""
    ratings = _RATING.findall(body)
    if len(ratings) != 1:
        return None, f"text {k}: {len(ratings)} rating lines (need exactly 1)"
    m = _VALUE.match(ratings[0].strip())
    if not m:
        return None, f"text {k}: rating {ratings[0].strip()!r} is not a number"
    if m.group(1).upper() == "N/A":
        value, err = _rating_value("N/A", aspect, f"text {k}")
    else:
        if m.group(2) is not None and int(m.group(2)) != aspect.max_rating:
            return None, f"text {k}: rating {m.group(0)!r} is not on the {aspect.min_rating}-{aspect.max_rating} scale"
        value, err = _rating_value(int(m.group(1)), aspect, f"text {k}")
    if err:
        return None, err
    missing: list[str] = []
    types: tuple[int, ...] = ()
    if aspect.has_types:
        found = _TYPE.findall(body)
        if len(found) > 1:
            return None, f"text {k}: {len(found)} type lines (need at most 1)"
        if not found:
            missing.append(TYPE)
        else:
            raw = found[0].strip().strip("*").strip()
            if raw.lower().strip("[]\"' .") != "none":
                types = tuple(int(t) for t in re.findall(r"\b\d+\b", raw))
    rating_pos = _RATING.search(body).end()  # type: ignore[union-attr]
    after = _RATIONALE.search(body, rating_pos)
    if after:
        rationale = body[after.start() :].split(":", 1)[1]
    elif aspect.has_types:
        rationale = ""  # the Rationale line before the rating is the type's, not the rating's
    else:
        before = _RATIONALE.findall(body)
        rationale = before[-1] if before else ""
    rationale = rationale.strip().strip("*").strip()
    if not rationale:
        missing.append(RATIONALE)
    return (Rating(aspect.name, value, rationale, types), tuple(missing)), None


def parse_text(reply: str, n: int, aspect: Any) -> Parsed:
    """The paper's text format: ``#### Output for Text k`` sections with ``Rating:`` / ``Rationale:`` lines."""
    text = reply.replace("\r\n", "\n").replace("\r", "\n")
    headers = list(_HEADER.finditer(text))
    if not headers:
        return _fail("no 'Output for Text k' sections")
    sections: dict[int, str] = {}
    for i, h in enumerate(headers):
        k = int(h.group(1))
        end = headers[i + 1].start() if i + 1 < len(headers) else len(text)
        if k in sections:
            return _fail(f"text {k}: duplicated section")
        if not 1 <= k <= n:
            return _fail(f"section for text {k}, but only {n} texts were shown")
        sections[k] = text[h.end() : end]
    missing = [k for k in range(1, n + 1) if k not in sections]
    if missing:
        return _fail(f"missing sections for texts {missing}")
    out = []
    for k in range(1, n + 1):
        parsed, err = _parse_section(sections[k], k, aspect)
        if parsed is None:
            return _fail(err or f"text {k}: unreadable")
        out.append(parsed)
    return _ok(out)


_SCORE = re.compile(r"^[ \t]*\**[ \t]*Overall Score\**[ \t]*:[ \t]*\**[ \t]*(.*)$", re.I | re.M)
_FEEDBACK = re.compile(r"^[ \t]*(?:#{1,6}[ \t]*)?\**[ \t]*Feedback\**[ \t]*:?[ \t]*\**[ \t]*$", re.I | re.M)


def parse_critique_text(reply: str, aspect: Any) -> Parsed:
    """The paper's critique format: feedback, then exactly one ``Overall Score: N`` line (N or N/10)."""
    text = reply.replace("\r\n", "\n").replace("\r", "\n")
    scores = list(_SCORE.finditer(text))
    if len(scores) != 1:
        return _fail(f"{len(scores)} 'Overall Score' lines (need exactly 1)")
    m = _VALUE.match(scores[0].group(1).strip())
    if not m or m.group(1).upper() == "N/A":
        return _fail(f"overall score {scores[0].group(1).strip()!r} is not a number")
    if m.group(2) is not None and int(m.group(2)) != aspect.max_rating:
        return _fail(f"overall score {m.group(0)!r} is not on the {aspect.min_rating}-{aspect.max_rating} scale")
    value, err = _rating_value(int(m.group(1)), aspect, "text 1")
    if err:
        return _fail(err)
    head = _FEEDBACK.search(text, 0, scores[0].start())
    feedback = text[head.end() if head else 0 : scores[0].start()].strip()
    return _ok([(Rating(aspect.name, value, feedback), () if feedback else (RATIONALE,))])


def parse_critique_json(reply: str, aspect: Any) -> Parsed:
    body = _strip_fences(reply).strip()
    try:
        data = json.loads(body, strict=False)
    except json.JSONDecodeError as exc:
        return _fail(f"invalid JSON: {exc.msg} at char {exc.pos}")
    if not isinstance(data, dict) or "overall_score" not in data:
        return _fail("JSON reply has no overall_score")
    value, err = _rating_value(data["overall_score"], aspect, "text 1")
    if err:
        return _fail(err)
    feedback = _json_text(data.get("feedback"))
    return _ok([(Rating(aspect.name, value, feedback), () if feedback else (RATIONALE,))])


def parse_reply(reply: str | None, n: int, aspect: Any, output: str) -> Parsed:
    if reply is None:
        return _fail("no reply")
    if getattr(aspect, "per_completion", False):
        return parse_critique_json(reply, aspect) if output == "json" else parse_critique_text(reply, aspect)
    return parse_json(reply, n, aspect) if output == "json" else parse_text(reply, n, aspect)
