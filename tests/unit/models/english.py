"""Is a completion English text that answers its instruction? Two checks that gibberish fails:

- the share of its words that are among the ~120 most common English words (function words: any English prose is
  about half made of them, random tokens almost never are);
- whether it mentions a content word of the instruction (a word of 4+ letters that is not a common one; matched on
  its first 5 letters, so "immune" finds "immunity").
"""

from __future__ import annotations

import re

COMMON = frozenset("""
a about after all also an and any are as at be because been but by can could did do does each even first for from
get has have he her his how i if in into is it its just like make many may more most much must my no not of on one
only or other our out over people so some such than that the their them then there these they this those through
time to two up us use used very was way we well were what when where which while who will with would you your
""".split())
WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def common_share(text: str) -> float:
    """The share of the text's words that are common English words (0 for no words at all)."""
    found = words(text)
    return sum(w in COMMON for w in found) / len(found) if found else 0.0


def content_words(instruction: str) -> set[str]:
    return {w for w in words(instruction) if len(w) >= 4 and w not in COMMON}


def mentions(instruction: str, answer: str) -> bool:
    """The answer uses a content word of the instruction (same first 5 letters)."""
    stems = {w[:5] for w in content_words(instruction)}
    return any(w[:5] in stems for w in words(answer) if len(w) >= 4)


def english_answers(pairs: list[tuple[str, str]], min_share: float = 0.3) -> tuple[int, int]:
    """(answers that read as English, answers that mention their instruction) among (instruction, answer) pairs."""
    english = sum(common_share(answer) >= min_share for _, answer in pairs)
    on_topic = sum(mentions(instruction, answer) for instruction, answer in pairs)
    return english, on_topic
