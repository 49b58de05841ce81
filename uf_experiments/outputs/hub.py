"""The Hugging Face Hub side of a run's outputs (``output.push_to_hub=OWNER/NAME``): the dataset card's YAML
header, which lays out the two configs (``preferences``, the default, and ``rated``) as ``Dataset.push_to_hub``
writes them, and the push itself. ``huggingface_hub`` is imported only when pushing."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CONFIGS = ("preferences", "rated")  # the dataset's configs on the hub, the first is the default
SPLIT = "train"  # the split Dataset.push_to_hub gives a dataset without one


def _size_category(n: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if n < bound:
            return label
    return "1M<n<10M"


def card_header(config: Mapping[str, Any], summary: Mapping[str, Any], license: str | None = None) -> dict[str, Any]:
    """The card's YAML metadata: what the hub shows and how ``load_dataset`` finds the two configs."""
    counts = summary.get("counts") or {}
    meta: dict[str, Any] = {}
    if license:
        meta["license"] = license
    meta.update({
        "pretty_name": f"uf-experiments {config.get('experiment', 'run')}: UltraFeedback-style preference data",
        "tags": ["ultrafeedback", "preference", "dpo", "synthetic", "uf-experiments"],
        "task_categories": ["text-generation"],
        "size_categories": [_size_category(int(counts.get("rated_rows") or counts.get("prompts") or 0))],
        "configs": [{"config_name": name, **({"default": True} if i == 0 else {}),
                     "data_files": [{"split": SPLIT, "path": f"{name}/{SPLIT}-*"}]} for i, name in enumerate(CONFIGS)],
    })
    return meta


def push_to_hub(repo_id: str, datasets: Mapping[str, Any], card: Path, private: bool = True) -> None:
    """Push each dataset as its config (``{"rated": Dataset, "preferences": Dataset}``), then ``card`` as the
    repo's ``README.md``: after the datasets, so it replaces the README ``Dataset.push_to_hub`` wrote (its YAML
    header names the same configs and files). Needs a Hugging Face token (``HF_TOKEN``)."""
    from huggingface_hub import HfApi

    for name, ds in datasets.items():
        ds.push_to_hub(repo_id, config_name=name, private=private)
    HfApi().upload_file(path_or_fileobj=str(card), path_in_repo="README.md", repo_id=repo_id, repo_type="dataset",
                        commit_message="Dataset card from uf-experiments")
    log.info("pushed %s and the dataset card to %s (private=%s)", ", ".join(datasets), repo_id, private)
