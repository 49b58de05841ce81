"""Where prompts come from: the built-in demo set, any Hugging Face dataset, or a local file (.jsonl, .json,
.parquet, .csv, or a run dir's rated.parquet). Rows become Prompts by :mod:`uf_experiments.data.prompts`; the
completions a dataset already holds are read by :mod:`uf_experiments.data.given`.

``dataset.shard.count=k dataset.shard.index=i`` keeps prompts i, i+k, i+2k, ... (after ``dataset.limit``): the k
shards are disjoint and cover the dataset, and since every random choice is seeded by the prompt id, a prompt gets
the same models, seeds and order in its shard as in an unsharded run.

A dataset that cannot be read (a bad path, a file that does not parse, a Hub dataset that cannot be reached or
does not exist, a wrong split) is a :class:`ConfigError` with one line naming it and the fix, never a traceback:
:func:`check_inputs` runs these checks (and the cache path's) before any model is loaded or called.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from uf_experiments.config import ConfigError, DatasetConfig, DatasetKind, RunConfig, enum_value
from uf_experiments.data.prompts import LoadReport, to_prompts

LOCAL_FORMATS = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}
RUN_FILE = "rated.parquet"  # dataset.path=RUN_DIR reads the run's rated rows


# ---------------------------------------------------------------- completions a dataset holds


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

    if cfg.cache.enabled and not cfg.cache.url and not getattr(cfg, "plan", False):
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


