"""Raw rows -> Prompts, with the same rules for every source (demo, local file, Hub). Every loader maps the
dataset's columns onto ours (``dataset.columns``: our name -> theirs), then :func:`to_prompts`:

- a missing instruction column is an error that names the columns the dataset does have;
- empty or whitespace-only instructions are skipped and counted (``skipped_empty``); a dataset whose
  instructions are all empty is an error;
- a repeated instruction keeps its first occurrence; later ones are skipped and counted (``skipped_duplicate``);
- ``prompt_id`` comes from the data when mapped, else a stable hash of source + instruction;
- a missing source becomes ``dataset.source`` (or ``"unknown"``);
- a world-knowledge list that is empty or UltraFeedback's placeholder ``["None"]`` is left out of the extras;
- with completions given (:mod:`uf_experiments.data.given`), a response that is empty or whitespace is dropped
  (``dropped_empty_completions``); a row left with fewer than two responses cannot be judged side by side and is
  skipped and counted (``skipped_few_completions``) before the duplicate check, so it does not hide a later,
  usable copy of its instruction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from uf_experiments.config import ConfigError
from uf_experiments.core.records import GivenCompletion, Prompt
from uf_experiments.data.given import Reader, given_reader

EXTRA_COLUMNS = ("correct_answers", "incorrect_answers", "world_knowledge")


@dataclass
class LoadReport:
    rows: int = 0
    skipped_empty: int = 0
    skipped_duplicate: int = 0
    skipped_few_completions: int = 0  # rows with fewer than 2 usable responses (completions given)
    dropped_empty_completions: int = 0  # empty responses left out of the rows that were kept or skipped
    layout: str | None = None  # which layout the given completions were read in (None: prompts only)
    prompts: list[Prompt] = field(default_factory=list)


def _stable_id(source: str, instruction: str) -> str:
    return hashlib.sha256(f"{source}\n{instruction}".encode()).hexdigest()[:16]


def _id_text(value: Any) -> str | None:
    """An id cell as text: None/empty/NaN -> None; 3.0 (a pandas int column with a gap) -> "3"; 0 stays "0"."""
    if value is None or (isinstance(value, float) and value != value) or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def to_prompts(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str | None], default_source: str | None,
               limit: int | None, origin: str, completions: str = "none",
               reference: Mapping[str, str | None] | None = None) -> LoadReport:
    """Map raw rows to Prompts with the rules in the module docstring. ``origin`` names the data in errors;
    ``completions`` is ``dataset.completions`` (``none``: prompts only), ``reference`` ``dataset.reference``."""
    report = LoadReport()
    seen: set[str] = set()
    cols = {k: v for k, v in columns.items() if v}  # a null mapping means "not mapped": our own name

    def col(name: str) -> str:
        return cols.get(name, name)

    instr_col = col("instruction")
    read: Reader | None = None
    for row in rows:
        if report.rows == 0:
            if instr_col not in row:
                raise ConfigError(
                    f"{origin} has no column '{instr_col}' for the instruction (columns: {', '.join(map(str, row))}); "
                    "map yours with dataset.columns.instruction=NAME"
                )
            if completions != "none":
                report.layout, read = given_reader(completions, list(row), cols, reference or {}, origin)
        report.rows += 1
        instruction = row.get(instr_col)
        if not isinstance(instruction, str) or not instruction.strip():
            report.skipped_empty += 1
            continue
        instruction = instruction.strip()
        given: tuple[GivenCompletion, ...] = ()
        if read is not None:
            held = read(row, report.rows)
            given = tuple(g for g in held if g.text.strip())
            report.dropped_empty_completions += len(held) - len(given)
            if len(given) < 2:
                report.skipped_few_completions += 1
                continue
        if instruction in seen:
            report.skipped_duplicate += 1
            continue
        seen.add(instruction)
        source = row.get(col("source")) or default_source or "unknown"
        pid = _id_text(row.get(col("prompt_id"))) or _stable_id(str(source), instruction)
        extras = {name: row[col(name)] for name in EXTRA_COLUMNS if _knowledge(row.get(col(name)))}
        report.prompts.append(Prompt(pid, str(source), instruction, extras, index=len(report.prompts), given=given))
        if limit is not None and len(report.prompts) >= limit:
            break
    if report.rows == 0:
        raise ConfigError(f"{origin} has no rows: check the path, split or filter")
    if not report.prompts and report.skipped_empty == report.rows:
        raise ConfigError(f"{origin}: all {report.rows} rows have an empty '{instr_col}', nothing to run: "
                          "check the data, or map another column with dataset.columns.instruction=NAME")
    if not report.prompts:
        raise ConfigError(f"{origin}: none of its {report.rows} rows is usable ({report.skipped_empty} with an empty "
                          f"'{instr_col}', {report.skipped_few_completions} with fewer than 2 completions), nothing "
                          "to run: check the data and dataset.columns")
    return report


def _knowledge(value: Any) -> bool:
    """A world-knowledge cell worth showing the judge: not None, not an empty list, and not UltraFeedback's
    placeholder ``["None"]`` (its rows without reference answers), which would read as "Correct answers: None"."""
    if value is None:
        return False
    if isinstance(value, Sequence) and not isinstance(value, str):
        return bool(value) and list(value) != ["None"]
    return True
