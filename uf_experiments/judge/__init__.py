"""The UltraFeedback judge: prompts built from the package's templates (:mod:`~uf_experiments.judge.prompts`,
``templates/``), parsing that never guesses (:mod:`~uf_experiments.judge.parse`), and judging a prompt's
completions side by side in a seeded order, re-asking unparseable replies and combining swapped orders
(:mod:`~uf_experiments.judge.judging`)."""

from uf_experiments.judge.judging import JudgeItem, Outcome, make_items, request_for, settle
from uf_experiments.judge.parse import Parsed, parse_reply
from uf_experiments.judge.prompts import judge_messages, response_schema

__all__ = ["JudgeItem", "Outcome", "Parsed", "judge_messages", "make_items", "parse_reply", "request_for",
           "response_schema", "settle"]
