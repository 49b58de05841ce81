"""Load prompts: the built-in demo set, any Hugging Face dataset, or a local file.

Every loader maps the dataset's columns onto ours (``dataset.columns``: our name -> theirs), then
:func:`to_prompts` applies the same rules to all of them:

- a missing instruction column is an error that names the columns the dataset does have;
- empty or whitespace-only instructions are skipped and counted (``skipped_empty``); a dataset whose
  instructions are all empty is an error;
- a repeated instruction keeps its first occurrence; later ones are skipped and counted (``skipped_duplicate``);
- ``prompt_id`` comes from the data when mapped, else a stable hash of source + instruction;
- a missing source becomes ``dataset.source`` (or ``"unknown"``);
- a world-knowledge list that is empty or UltraFeedback's placeholder ``["None"]`` is left out of the extras.

Completions the dataset already holds (``dataset.completions``, ``experiment=rejudge``) become
``Prompt.given``: judged as they are, never generated. ``auto`` reads the layout from the first row:

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

A reference rating that is missing, ``"N/A"`` or not a number is None (no reference for that completion). A
response that is empty or whitespace is dropped (``dropped_empty_completions``); a row left with fewer than two
responses cannot be judged side by side and is skipped and counted (``skipped_few_completions``) before the
duplicate check, so it does not hide a later, usable copy of its instruction.

``dataset.shard.count=k dataset.shard.index=i`` keeps prompts i, i+k, i+2k, ... (after ``dataset.limit``): the k
shards are disjoint and cover the dataset, and since every random choice is seeded by the prompt id, a prompt gets
the same models, seeds and order in its shard as in an unsharded run.

A dataset that cannot be read (a bad path, a file that does not parse, a Hub dataset that cannot be reached or
does not exist, a wrong split) is a :class:`ConfigError` with one line naming it and the fix, never a traceback:
:func:`check_inputs` runs these checks (and the cache path's) before any model is loaded or called.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from uf_experiments.config import ConfigError, DatasetConfig, DatasetKind, RunConfig, enum_value
from uf_experiments.core.records import GivenCompletion, Prompt

EXTRA_COLUMNS = ("correct_answers", "incorrect_answers", "world_knowledge")
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
RUN_FILE = "rated.parquet"  # dataset.path=RUN_DIR reads the run's rated rows
UF_ASPECTS = ("instruction_following", "honesty", "truthfulness", "helpfulness")  # keys of UF's `annotations`
UF_CRITIQUE = "critique"  # our aspect whose reference is UF's per-completion `overall_score` (1-10)
LIST_COLUMNS = ("models", "principles", "system_prompts")  # columns layout: list columns beside `responses`


@dataclass
class LoadReport:
    rows: int = 0
    skipped_empty: int = 0
    skipped_duplicate: int = 0
    skipped_few_completions: int = 0  # rows with fewer than 2 usable responses (completions given)
    dropped_empty_completions: int = 0  # empty responses left out of the rows that were kept or skipped
    layout: str | None = None  # which layout the given completions were read in (None: prompts only)
    prompts: list[Prompt] = field(default_factory=list)


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


# ---------------------------------------------------------------- completions a dataset holds


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


def _demo_rows() -> list[dict[str, Any]]:
    text = resources.files("uf_experiments.resources").joinpath("demo_prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _local_rows(path: str) -> Iterable[Mapping[str, Any]]:
    file = Path(path).expanduser()
    if not file.exists():
        raise ConfigError(f"dataset.path={path} does not exist: pass an existing .jsonl/.json/.parquet/.csv file")
    if file.is_dir():
        if not (file / RUN_FILE).is_file():
            raise ConfigError(f"dataset.path={path} is a directory without {RUN_FILE}: pass a run dir or a data file")
        file = file / RUN_FILE
    fmt = LOCAL_FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise ConfigError(f"dataset.path={path}: unsupported file type '{file.suffix}'; "
                          f"use one of {', '.join(LOCAL_FORMATS)}")
    def unreadable(exc: Exception) -> ConfigError:
        return ConfigError(f"dataset.path={path} cannot be read as {file.suffix.lower()[1:]} ({_reason(exc)}): "
                           "fix the file or pass another")

    if file.suffix.lower() in (".jsonl", ".parquet"):
        # read directly (pyarrow / json): nothing is written outside the run dir, and no `datasets` import here
        return _file_rows(file, unreadable)
    from datasets import load_dataset

    try:
        return load_dataset(fmt, data_files=str(file), split="train")
    except Exception as exc:  # noqa: BLE001 - whatever the reader says, as one line
        raise unreadable(exc) from exc


def _file_rows(file: Path, unreadable: Any) -> Iterable[Mapping[str, Any]]:
    """The rows of a .jsonl file (one JSON object a line) or a .parquet file (read a row group at a time)."""
    if file.suffix.lower() == ".jsonl":
        rows = []
        with file.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise unreadable(ValueError(f"line {n}: {exc.msg}")) from exc
                if not isinstance(row, dict):
                    raise unreadable(ValueError(f"line {n} is not a JSON object"))
                rows.append(row)
        return rows
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(file)
    except Exception as exc:  # noqa: BLE001 - whatever the reader says, as one line
        raise unreadable(exc) from exc

    def batches() -> Iterable[Mapping[str, Any]]:
        try:
            for batch in reader.iter_batches(batch_size=1024):
                yield from batch.to_pylist()
        except Exception as exc:  # noqa: BLE001
            raise unreadable(exc) from exc

    return batches()


def _hub_rows(repo_id: str, subset: str | None, split: str) -> Iterable[Mapping[str, Any]]:
    from datasets import load_dataset

    try:
        return load_dataset(repo_id, subset, split=split)
    except Exception as exc:  # noqa: BLE001 - turned into one line naming the repo id and the fix
        raise ConfigError(hub_error(repo_id, subset, split, exc)) from exc


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(out) < 10:
        out.append(e)
        e = e.__cause__ or e.__context__
    return out


GENERIC = ("An error occurred while generating the dataset",)  # datasets' wrapper: the cause says what went wrong


def _reason(exc: BaseException) -> str:
    """The first specific message in the exception's chain, on one line."""
    for e in _chain(exc):
        text = " ".join(str(e).split())
        if text and not text.startswith(GENERIC):
            return text[:300]
    return type(exc).__name__


def hub_error(repo_id: str, subset: str | None, split: str, exc: BaseException) -> str:
    """One line for a Hugging Face dataset that ``datasets.load_dataset`` could not load."""
    import os

    from datasets.exceptions import DatasetNotFoundError

    chain = _chain(exc)
    text = " ".join(str(e) for e in chain)
    offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
               if os.environ.get(v, "").lower() in ("1", "true", "yes", "on")]
    name = f"dataset.repo_id={repo_id}"
    if "OfflineModeIsEnabled" in text or (offline and any(isinstance(e, ConnectionError) for e in chain)):
        switch = " / ".join(offline) or "offline mode"
        return (f"{name} is not in the local Hugging Face cache and the Hub is switched off ({switch} is set): "
                "unset it to download the dataset, or check the spelling of dataset.repo_id")
    if any(isinstance(e, DatasetNotFoundError) for e in chain):
        return (f"{name} was not found on the Hugging Face Hub: check the spelling (OWNER/NAME); a private or gated "
                "dataset needs HF_TOKEN with access")
    unreachable = [e for e in chain if isinstance(e, ConnectionError)]
    if unreachable:
        where = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
        return (f"{name}: the Hugging Face Hub ({where}) cannot be reached: check the network and the spelling of "
                "dataset.repo_id, or set HF_HUB_OFFLINE=1 to use a cached copy")
    if "Unknown split" in text:
        return f"dataset.split={split} of {repo_id}: {_reason(exc)} (fix dataset.split)"
    if "BuilderConfig" in text or "Config name" in text:
        return f"dataset.subset={subset} of {repo_id}: {_reason(exc)} (fix dataset.subset)"
    return (f"{name} (subset {subset}, split {split}) cannot be loaded ({_reason(exc)}): check dataset.repo_id, "
            "dataset.subset and dataset.split")


def check_inputs(cfg: RunConfig) -> LoadReport:
    """Everything a run reads or writes besides the models, checked before any model is loaded or called: the
    cache file can be written (:func:`~uf_experiments.config.schema.check_cache_path`), and the dataset loads into at
    least one prompt. Raises :class:`ConfigError` with one line; returns the loaded prompts (reuse them)."""
    from uf_experiments.config import check_cache_path

    if cfg.cache.enabled and not getattr(cfg, "plan", False):
        check_cache_path(cfg.cache.path)
    return load_prompts(cfg.dataset)


def load_prompts(cfg: DatasetConfig) -> LoadReport:
    """Load ``cfg`` (a DatasetConfig) into Prompts."""
    kind = DatasetKind(enum_value(cfg.kind))
    columns = dict(cfg.columns or {})
    if kind is DatasetKind.demo:
        rows, origin = _demo_rows(), "the demo dataset"
    elif kind is DatasetKind.local or cfg.path:  # a hub dataset's local copy: dataset.path=FILE
        rows, origin = _local_rows(cfg.path), f"dataset.path={cfg.path}"
    else:
        rows, origin = _hub_rows(cfg.repo_id, cfg.subset, cfg.split), f"dataset {cfg.repo_id} (split {cfg.split})"
    completions = enum_value(getattr(cfg, "completions", None) or "none")
    reference = dict(getattr(cfg, "reference", None) or {})
    report = to_prompts(rows, columns, cfg.source, cfg.limit, origin, completions, reference)
    shard = getattr(cfg, "shard", None)
    if shard is not None and shard.count > 1:
        # after the limit, so the shards of a limited run cover exactly the unsharded run's prompts
        report.prompts = [p for i, p in enumerate(report.prompts) if i % shard.count == shard.index]
    return report


def given_row_fields(prompt: Prompt) -> dict[str, Any]:
    """The generation fields of a rated row for a prompt whose completions the dataset holds, in the order they
    are judged: ``principles``, ``system_prompts``, ``generations``, ``generation_models``."""
    return {
        "principles": [g.principle for g in prompt.given],
        "system_prompts": [g.system_prompt for g in prompt.given],
        "generations": [g.text for g in prompt.given],
        "generation_models": [g.model for g in prompt.given],
    }
