"""The run's data files, written as rows finish (flat memory at any size), always in dataset order.

- ``rated.parquet``: one row per prompt (README, "The run dir"), with a fixed Arrow schema from the selected
  aspects, so every sweep cell's file has the same column types whatever its first rows held.
- ``preferences.parquet`` and ``preferences/`` (a HF dataset, ``datasets.load_from_disk``): the pairs in TRL's
  conversational preference layout.

Rows finish in any order (the scheduler judges a prompt as soon as its completions are in); a reorder buffer
writes them in prompt order, in row groups, so the files equal a run that did one prompt after another.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from uf_experiments.core.records import Pair
from uf_experiments.metrics.binarize import pair_to_record

log = logging.getLogger(__name__)
ROW_GROUP = 1000
PAIR_COLUMNS = ("prompt_id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected", "chosen_model",
                "rejected_model")


def rated_schema(aspects: Mapping[str, Any], float_ratings: bool, extra: Sequence[Any] = ()) -> Any:
    """The Arrow schema of ``rated.parquet``: per-aspect columns are structs keyed by aspect name. Ratings are
    integers, or floats where ``judge.swap_combine=mean`` averages two orders (side-by-side aspects)."""
    import pyarrow as pa

    def per_aspect(typ: Any) -> Any:
        return pa.struct([(a, typ) for a in aspects])

    rating = pa.struct([(a, pa.list_(pa.float64() if float_ratings and not cfg.per_completion else pa.int64()))
                        for a, cfg in aspects.items()])
    strings = pa.list_(pa.string())
    return pa.schema([
        ("prompt_id", pa.string()), ("prompt_index", pa.int64()), ("source", pa.string()),
        ("instruction", pa.string()), ("principles", strings), ("system_prompts", strings),
        ("generations", strings), ("generation_models", strings), ("judge_model", pa.string()),
        ("ratings", rating), ("rationales", per_aspect(strings)), ("types", per_aspect(pa.list_(pa.list_(pa.int64())))),
        ("judge_order", per_aspect(pa.list_(pa.int64()))), ("parse_status", per_aspect(pa.string())),
        ("judge_raw", per_aspect(strings)), *extra,
    ])


def preferences_schema() -> Any:
    import pyarrow as pa

    messages = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    return pa.schema([("prompt_id", pa.string()), ("prompt", messages), ("chosen", messages), ("rejected", messages),
                      ("score_chosen", pa.float64()), ("score_rejected", pa.float64()),
                      ("chosen_model", pa.string()), ("rejected_model", pa.string())])


class _Stream:
    """Rows appended to one parquet file in row groups."""

    def __init__(self, path: Path, schema: Any) -> None:
        self.path, self.schema = path, schema
        self.buffer: list[dict[str, Any]] = []
        self.writer: Any = None
        self.rows = 0

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        self.buffer.extend(rows)
        if len(self.buffer) >= ROW_GROUP:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            self.writer = pq.ParquetWriter(self.path, self.schema)
        if self.buffer:
            self.writer.write_table(pa.Table.from_pylist(self.buffer, schema=self.schema))
            self.rows += len(self.buffer)
            self.buffer = []

    def close(self) -> None:
        self.flush()  # an empty file still gets its schema
        self.writer.close()


class OutputWriter:
    """``add(position, row, pairs)`` in any order; the files get them in position order."""

    def __init__(self, run_dir: Path, schema: Any, saver: DatasetSaver | None = None) -> None:
        self.run_dir = run_dir
        self.saver = saver
        self.rated = _Stream(run_dir / "rated.parquet", schema)
        self.prefs = _Stream(run_dir / "preferences.parquet", preferences_schema())
        self.pending: dict[int, tuple[dict[str, Any] | None, list[Pair]]] = {}
        self.next = 0

    def add(self, position: int, row: dict[str, Any] | None, pairs: Sequence[Pair] = ()) -> None:
        self.pending[position] = (row, list(pairs))
        while self.next in self.pending:
            self._write(*self.pending.pop(self.next))
            self.next += 1

    def skip(self, position: int) -> None:
        """A prompt with no row (no completion)."""
        self.add(position, None)

    def _write(self, row: dict[str, Any] | None, pairs: list[Pair]) -> None:
        if row is not None:
            self.rated.add([row])
        if pairs:
            self.prefs.add([pair_to_record(p) for p in pairs])

    def close(self) -> tuple[int, int]:
        """Write what is still buffered (a stopped run leaves gaps: the rows it has, in order), close the files
        and save the pairs as a HF dataset. Returns (rows, pairs) written."""
        for position in sorted(self.pending):
            self._write(*self.pending.pop(position))
        self.rated.close()
        self.prefs.close()
        if self.saver is not None:
            self.saver.save(self.prefs.path, self.run_dir / "preferences")
        else:
            save_hf_dataset(self.prefs.path, self.run_dir / "preferences")
        return self.rated.rows, self.prefs.rows


def save_hf_dataset(parquet: Path, out: Path) -> None:
    """``parquet`` as a HF dataset directory (``datasets.load_from_disk``), memory-mapped, nothing written
    outside ``out``."""
    import pyarrow.parquet as pq
    from datasets import Dataset
    from datasets.table import InMemoryTable

    if out.exists():
        shutil.rmtree(out)
    Dataset(InMemoryTable(pq.read_table(parquet))).save_to_disk(str(out))


SAVER_SCRIPT = """
import signal, sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.SIG_IGN)  # the run handles Ctrl-C / SIGTERM and then asks for the save
signal.signal(signal.SIGTERM, signal.SIG_IGN)
from uf_experiments.outputs.writer import save_hf_dataset  # imports pyarrow; `datasets` below, while the run streams
import datasets  # noqa: F401
line = sys.stdin.readline().rstrip("\\n")
if line:
    parquet, out = line.split("\\t")
    save_hf_dataset(Path(parquet), Path(out))
    print("saved", flush=True)
"""


class DatasetSaver:
    """Writes ``preferences/`` (a HF dataset directory) from ``preferences.parquet`` in a child process started
    at the beginning of the run: importing ``datasets`` takes about a second of CPU, which the child spends on
    the other core while the run streams, instead of the run spending it at the end. If the child is gone or
    fails, the directory is written in this process instead."""

    def __init__(self) -> None:
        import subprocess
        import sys

        try:
            self.proc: Any = subprocess.Popen([sys.executable, "-c", SAVER_SCRIPT], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        except OSError:
            self.proc = None

    def save(self, parquet: Path, out: Path) -> None:
        if self.proc is not None:
            try:
                stdout, stderr = self.proc.communicate(f"{parquet}\t{out}\n", timeout=600)
                if self.proc.returncode == 0 and stdout.strip() == "saved":
                    return
                log.warning("writing %s in a child process failed (%s); writing it here", out,
                            (stderr or "").strip().splitlines()[-1:] or self.proc.returncode)
            except Exception:  # noqa: BLE001 - any trouble with the child: do it here
                log.warning("writing %s in a child process failed; writing it here", out, exc_info=True)
                self.close()
        save_hf_dataset(parquet, out)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def write_outputs(run_dir: Path, schema: Any, rows: Sequence[dict[str, Any]], pairs: Sequence[Pair]) -> None:
    """All rows and pairs at once (``merge``)."""
    writer = OutputWriter(run_dir, schema)
    writer.rated.add(list(rows))
    writer.prefs.add([pair_to_record(p) for p in pairs])
    writer.close()
