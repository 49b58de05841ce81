"""Completions a dataset already holds (``dataset.completions``, ``experiment=rejudge``): the layouts they come in,
read row by row into ``Prompt.given``, judged as they are and never generated. ``auto`` reads the layout from the
first row:

- ``dataset.columns.responses`` mapped -> ``columns``: a list column of responses, optionally ``models``,
  ``principles`` and ``system_prompts`` list columns beside it (``dataset.columns.models=NAME``), and reference
  ratings per aspect (``dataset.reference.honesty=NAME``: a list column, one rating per response);
- a ``completions`` column -> ``ultrafeedback``: openbmb/UltraFeedback's schema. Each completion's ``response``,
  ``model``, ``principle`` and ``custom_system_prompt``; reference ratings from
  ``annotations.<aspect>.Rating`` for instruction_following, honesty, truthfulness and helpfulness (strings;
  ``"N/A"`` is no rating) and ``overall_score`` for ``critique``;
- a ``generations`` column -> ``run``: an earlier run's ``rated.parquet`` (``dataset.path=RUN_DIR`` reads
  ``RUN_DIR/rated.parquet``): its generations, models, principles and system prompts, and its judge's
  ``ratings`` as the reference.

A reference rating that is missing, ``"N/A"`` or not a number is None (no reference for that completion).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from uf_experiments.config import ConfigError
from uf_experiments.core.records import GivenCompletion, Prompt

UF_ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")  # keys of UF's `annotations`


UF_CRITIQUE = "critique"  # our aspect whose reference is UF's per-completion `overall_score` (1-10)


LIST_COLUMNS = ("models", "principles", "system_prompts")  # columns layout: list columns beside `responses`


def reference_value(value: Any) -> float | None:
    """A reference rating as a number: ``4``, ``"4"``, ``4.5`` and ``"7.5"`` are numbers; None, ``"N/A"``, an
    empty or non-numeric string, NaN and booleans are no rating (never a 0)."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def _response(value: Any) -> str:
    """A response as it is (never stripped: the judge sees what the model wrote); anything but text is empty."""
    return value if isinstance(value, str) else ""


Reader = Callable[[Mapping[str, Any], int], list[GivenCompletion]]  # (row, row number) -> its completions


def _uf_rating(annotation: Any) -> float | None:
    """``annotations.<aspect>``: a struct with ``Rating``; the raw release also has an empty list where GPT-4's
    reply never parsed (no rating)."""
    if isinstance(annotation, list) and len(annotation) == 1:
        annotation = annotation[0]
    return reference_value(annotation.get("Rating")) if isinstance(annotation, Mapping) else None


def _ultrafeedback(row: Mapping[str, Any], _: int) -> list[GivenCompletion]:
    out = []
    for c in row.get("completions") or []:
        if not isinstance(c, Mapping):
            continue
        annotations = c.get("annotations") or {}
        reference = {a: _uf_rating(annotations.get(a)) for a in UF_ASPECTS}
        reference[UF_CRITIQUE] = reference_value(c.get("overall_score"))
        out.append(GivenCompletion(text=_response(c.get("response")), model=_text(c.get("model")) or "unknown",
                                   principle=_text(c.get("principle")),
                                   system_prompt=_text(c.get("custom_system_prompt")), reference=reference))
    return out


def _at(values: Any, i: int) -> Any:
    return values[i] if isinstance(values, Sequence) and not isinstance(values, str) and i < len(values) else None


def _run(row: Mapping[str, Any], _: int) -> list[GivenCompletion]:
    texts = row.get("generations") or []
    ratings = row.get("ratings") or {}
    return [
        GivenCompletion(text=_response(text), model=_text(_at(row.get("generation_models"), i)) or "unknown",
                        principle=_text(_at(row.get("principles"), i)),
                        system_prompt=_text(_at(row.get("system_prompts"), i)),
                        reference={a: reference_value(_at(values, i)) for a, values in ratings.items()})
        for i, text in enumerate(texts)
    ]


def _columns_reader(columns: Mapping[str, str | None], reference: Mapping[str, str], origin: str) -> Reader:
    responses = str(columns["responses"])
    beside = {k: columns[k] for k in LIST_COLUMNS if columns.get(k)}

    def listed(row: Mapping[str, Any], column: str, key: str, number: int, n: int | None) -> list[Any]:
        values = row.get(column)
        if not isinstance(values, Sequence) or isinstance(values, str):
            raise ConfigError(f"{origin} row {number}: {key}={column} must be a list column "
                              f"(got {type(values).__name__})")
        if n is not None and len(values) != n:
            raise ConfigError(f"{origin} row {number}: {key}={column} has {len(values)} values for {n} responses")
        return list(values)

    def read(row: Mapping[str, Any], number: int) -> list[GivenCompletion]:
        texts = listed(row, responses, "dataset.columns.responses", number, None)
        n = len(texts)
        extra = {k: listed(row, col, f"dataset.columns.{k}", number, n) for k, col in beside.items()}
        refs = {a: listed(row, col, f"dataset.reference.{a}", number, n) for a, col in reference.items()}
        return [
            GivenCompletion(text=_response(text),
                            model=(_text(extra["models"][i]) if "models" in extra else None) or "unknown",
                            principle=_text(extra["principles"][i]) if "principles" in extra else None,
                            system_prompt=_text(extra["system_prompts"][i]) if "system_prompts" in extra else None,
                            reference={a: reference_value(values[i]) for a, values in refs.items()})
            for i, text in enumerate(texts)
        ]

    return read


def given_reader(layout: str, keys: Sequence[str], columns: Mapping[str, str | None],
                 reference: Mapping[str, str | None], origin: str) -> tuple[str, Reader]:
    """The layout (``auto`` resolved from the first row's ``keys``) and the function that reads a row's completions."""
    responses = columns.get("responses")
    if layout == "auto":
        if responses:
            layout = "columns"
        elif "completions" in keys:
            layout = "ultrafeedback"
        elif "generations" in keys:
            layout = "run"
        else:
            raise ConfigError(
                f"{origin} holds no completions (columns: {', '.join(map(str, keys))}): map a list column of "
                "responses with dataset.columns.responses=NAME, or use openbmb/UltraFeedback's schema or a run dir"
            )
    needs = {"ultrafeedback": "completions", "run": "generations", "columns": responses}[layout]
    if needs not in keys:
        hint = "dataset.columns.responses=NAME" if layout == "columns" else "dataset.completions=auto"
        raise ConfigError(f"{origin} has no column '{needs}' for dataset.completions={layout} "
                          f"(columns: {', '.join(map(str, keys))}); map yours with {hint}")
    if layout == "columns":
        missing = [f"dataset.columns.{k}={columns[k]}" for k in LIST_COLUMNS
                   if columns.get(k) and columns[k] not in keys]
        missing += [f"dataset.reference.{a}={c}" for a, c in reference.items() if c and c not in keys]
        if missing:
            raise ConfigError(f"{origin} has no column for {missing[0]} (columns: {', '.join(map(str, keys))})")
        return layout, _columns_reader(columns, {a: str(c) for a, c in reference.items() if c}, origin)
    return layout, _ultrafeedback if layout == "ultrafeedback" else _run


def given_row_fields(prompt: Prompt) -> dict[str, Any]:
    """The generation fields of a rated row for a prompt whose completions the dataset holds, in the order they
    are judged: ``principles``, ``system_prompts``, ``generations``, ``generation_models``."""
    return {
        "principles": [g.principle for g in prompt.given],
        "system_prompts": [g.system_prompt for g in prompt.given],
        "generations": [g.text for g in prompt.given],
        "generation_models": [g.model for g in prompt.given],
    }
