"""Read an offline W&B run file (``run-*.wandb``) back: the LevelDB-style log of protobuf ``Record``s.

File = a 7-byte header (``:W&B``, magic 0xBEE1, version) then 32 KiB blocks of records, each with a 7-byte
header (crc32 4, length 2, type 1: FULL=1, FIRST=2, MIDDLE=3, LAST=4); a block's tail shorter than a header is
zero padding.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

BLOCK = 32 * 1024
HEADER = 7


def records(path: Path) -> list[Any]:
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", "not a W&B run file"
    pos, out, pending = HEADER, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if kind == 0 and length == 0:
            pos += left  # padding up to the next block
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:
            pending = chunk
        elif kind == 2:
            pending = chunk
            continue
        elif kind == 3:
            pending += chunk
            continue
        else:
            pending += chunk
        rec = pb.Record()
        rec.ParseFromString(pending)
        out.append(rec)
        pending = b""
    return out


def read_run(path: Path) -> dict[str, Any]:
    """{'group', 'job_type', 'name', 'config', 'summary', 'artifacts': {name: {path: staged file}},
    'history': [{key: value} per logged step], 'metrics': {name: {'step_metric', 'summary', 'hidden'}}}
    (``metrics``: the ``define_metric`` declarations; ``summary`` lists the aggregations asked for)."""
    out: dict[str, Any] = {"config": {}, "summary": {}, "artifacts": {}, "history": [], "metrics": {}}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(group=rec.run.run_group, job_type=rec.run.job_type, name=rec.run.display_name)
            for item in rec.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "artifact":
            out["artifacts"][rec.artifact.name] = {m.path: m.local_path for m in rec.artifact.manifest.contents}
        elif kind == "history":
            out["history"].append({"/".join(i.nested_key) if i.nested_key else i.key: json.loads(i.value_json)
                                   for i in rec.history.item})
        elif kind == "metric":
            m = rec.metric
            ops = [op for op in ("min", "max", "mean", "last", "first", "none") if getattr(m.summary, op)]
            out["metrics"][m.name or m.glob_name] = {"step_metric": m.step_metric or None, "summary": ops,
                                                     "hidden": m.options.hidden}
        elif kind == "summary":
            for item in rec.summary.update:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                out["summary"][key] = json.loads(item.value_json)
    return out
