"""Load prompts: the built-in demo set, any Hugging Face dataset, or a local file.

Every loader maps the dataset's columns onto ours (``dataset.columns``: our name -> theirs), then
:func:`to_prompts` applies the same rules to all of them:

- a missing instruction column is an error that names the columns the dataset does have;
- empty or whitespace-only instructions are skipped and counted (``skipped_empty``); a dataset whose
  instructions are all empty is an error;
- a repeated instruction keeps its first occurrence; later ones are skipped and counted (``skipped_duplicate``);
- ``prompt_id`` comes from the data when mapped, else a stable hash of source + instruction;
- a missing source becomes ``dataset.source`` (or ``"unknown"``).

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from uf_experiments.config import ConfigError, DatasetKind
from uf_experiments.records import Prompt

EXTRA_COLUMNS = ("correct_answers", "incorrect_answers", "world_knowledge")
LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}


@dataclass
class LoadReport:
    rows: int = 0
    skipped_empty: int = 0
    skipped_duplicate: int = 0
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


def to_prompts(rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str], default_source: str | None,
               limit: int | None, origin: str) -> LoadReport:
    """Map raw rows to Prompts with the rules in the module docstring. ``origin`` names the data in errors."""
    report = LoadReport()
    seen: set[str] = set()
    instr_col = columns.get("instruction", "instruction")
    for row in rows:
        if report.rows == 0 and instr_col not in row:
            raise ConfigError(
                f"{origin} has no column '{instr_col}' for the instruction (columns: {', '.join(map(str, row))}); "
                "map yours with dataset.columns.instruction=NAME"
            )
        report.rows += 1
        instruction = row.get(instr_col)
        if not isinstance(instruction, str) or not instruction.strip():
            report.skipped_empty += 1
            continue
        instruction = instruction.strip()
        if instruction in seen:
            report.skipped_duplicate += 1
            continue
        seen.add(instruction)
        source = row.get(columns.get("source", "source")) or default_source or "unknown"
        pid = _id_text(row.get(columns.get("prompt_id", "prompt_id"))) or _stable_id(str(source), instruction)
        extras = {name: row[columns.get(name, name)] for name in EXTRA_COLUMNS
                  if row.get(columns.get(name, name)) is not None}
        report.prompts.append(Prompt(pid, str(source), instruction, extras, index=len(report.prompts)))
        if limit is not None and len(report.prompts) >= limit:
            break
    if report.rows == 0:
        raise ConfigError(f"{origin} has no rows: check the path, split or filter")
    if not report.prompts:
        raise ConfigError(f"{origin}: all {report.rows} rows have an empty '{instr_col}', nothing to run: "
                          "check the data, or map another column with dataset.columns.instruction=NAME")
    return report


def _demo_rows() -> list[dict[str, Any]]:
    text = resources.files("uf_experiments.resources").joinpath("demo_prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _local_rows(path: str) -> Iterable[Mapping[str, Any]]:
    file = Path(path).expanduser()
    if not file.exists():
        raise ConfigError(f"dataset.path={path} does not exist: pass an existing .jsonl/.json/.parquet/.csv file")
    if not file.is_file():
        raise ConfigError(f"dataset.path={path} is not a file: pass a .jsonl/.json/.parquet/.csv file")
    fmt = LOCAL_FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise ConfigError(f"dataset.path={path}: unsupported file type '{file.suffix}'; "
                          f"use one of {', '.join(LOCAL_FORMATS)}")
    from datasets import load_dataset

    try:
        return load_dataset(fmt, data_files=str(file), split="train")
    except Exception as exc:  # noqa: BLE001 - whatever the reader says, as one line
        raise ConfigError(f"dataset.path={path} cannot be read as {file.suffix.lower()[1:]} ({_reason(exc)}): "
                          "fix the file or pass another") from exc


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


def check_inputs(cfg: Any) -> LoadReport:
    """Everything a run reads or writes besides the models, checked before any model is loaded or called: the
    cache file can be written (:func:`~uf_experiments.config.check_cache_path`), and the dataset loads into at
    least one prompt. Raises :class:`ConfigError` with one line; returns the loaded prompts (reuse them)."""
    from uf_experiments.config import check_cache_path

    if cfg.cache.enabled and not cfg.get("plan", False):
        check_cache_path(cfg.cache.path)
    return load_prompts(cfg.dataset)


def load_prompts(cfg: Any) -> LoadReport:
    """Load ``cfg`` (a DatasetConfig) into Prompts."""
    kind = DatasetKind(cfg.kind.value if isinstance(cfg.kind, DatasetKind) else cfg.kind)
    columns = dict(cfg.columns or {})
    if kind is DatasetKind.demo:
        rows, origin = _demo_rows(), "the demo dataset"
    elif kind is DatasetKind.local:
        rows, origin = _local_rows(cfg.path), f"dataset.path={cfg.path}"
    else:
        rows, origin = _hub_rows(cfg.repo_id, cfg.subset, cfg.split), f"dataset {cfg.repo_id} (split {cfg.split})"
    report = to_prompts(rows, columns, cfg.source, cfg.limit, origin)
    shard = getattr(cfg, "shard", None)
    if shard is not None and shard.count > 1:
        # after the limit, so the shards of a limited run cover exactly the unsharded run's prompts
        report.prompts = [p for i, p in enumerate(report.prompts) if i % shard.count == shard.index]
    return report
