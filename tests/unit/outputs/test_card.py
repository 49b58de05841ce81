"""The dataset card against a real run dir (the CLI on a served pool, judged by a real HTTP server), and its push
at the ``huggingface_hub`` / ``datasets`` API boundary."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from omegaconf import OmegaConf

from tests.conftest import compose_config
from tests.helpers.fake_openai import FakeJudge
from tests.unit.report.test_compare import AGREEMENT, old_summary, summary
from uf_experiments.config import resolve, validate
from uf_experiments.outputs import card, hub

REPO = Path(__file__).resolve().parents[3]
OVERRIDES = ["pool=served", "pool.models=[gen-a,gen-b,gen-c]", "pool.size=2", "sampling.n=2",
             "pool.price.input_per_1m=100", "pool.price.output_per_1m=200", "judge=served", "judge.model.path=judge-x",
             "judge.output=json", "judge.model.price.input_per_1m=300", "judge.swap=true",
             "aspect=[honesty,helpfulness]", "dataset.limit=4", "tracking=none"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("card")
    with FakeJudge() as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.base_url, "OPENAI_API_KEY": "sk-test"}
        proc = subprocess.run([sys.executable, "-m", "uf_experiments", *OVERRIDES, f"cache.path={out / 'c.sqlite'}",
                               f"hydra.run.dir={out / 'run'}"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "run"


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """What validate() asks of a served pool and of output.push_to_hub (nothing is sent anywhere)."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("HF_TOKEN", "hf_test")


def run_config(overrides: list[str]) -> dict[str, Any]:
    """The config as the runner holds it when the run ends: composed, validated (served pool expanded), plain."""
    cfg = compose_config(overrides)
    validate(resolve(cfg))
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def split_card(text: str) -> tuple[dict[str, Any], str]:
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def section(body: str, title: str) -> list[str]:
    lines = body.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0].strip().splitlines()
    return lines


def test_card_of_a_real_run(run_dir: Path):
    summary_json = json.loads((run_dir / "summary.json").read_text())
    path = card.write_card(run_dir, run_config(OVERRIDES + [f"cache.path={run_dir.parent / 'c.sqlite'}"]),
                           summary_json)
    assert path == run_dir / "dataset_card.md"
    text = path.read_text()
    head, body = split_card(text)

    # the header the hub reads: tags, size, and the two configs where Dataset.push_to_hub puts their files
    from huggingface_hub import DatasetCard

    data = DatasetCard(text).data
    assert {"ultrafeedback", "preference", "dpo"} <= set(data.tags)
    assert data.size_categories == ["n<1K"] and "license" not in head
    assert data.configs == [
        {"config_name": "preferences", "default": True,
         "data_files": [{"split": "train", "path": "preferences/train-*"}]},
        {"config_name": "rated", "data_files": [{"split": "train", "path": "rated/train-*"}]}]
    assert "tiny random-weight" not in body  # served models: no tiny statement

    # the command: Hydra's record of the overrides, as one shell line that reruns the job
    overrides = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    command = next(ln for ln in section(body, "How it was made") if ln.startswith("uf-experiments "))
    assert shlex.split(command) == ["uf-experiments", *overrides]
    assert "One cell of the `-m` sweep" not in body

    models = section(body, "Models")
    assert models[2].startswith("| gen-a | generation | `gen-a` | OpenAIEngine | $100 in / $200 out per 1M tokens |")
    assert models[3].startswith("| gen-b | generation |") and not any("gen-c" in ln for ln in models)  # pool.size=2
    assert models[4] == ("| judge-x | judge | `judge-x` | OpenAIEngine | $300 in / $0 out per 1M tokens | "
                         f"{summary_json['judge']['requests']} |")
    assert "judged a second time in the reversed order" in models[-1]  # judge.swap=true
    assert section(body, "Aspects")[2:] == ["| honesty | 1-5 | yes | all completions side by side |",
                                            "| helpfulness | 1-5 | no | all completions side by side, with types |"]
    assert section(body, "Binarization")[0].startswith("- Recipe `h4`: chosen = the best-scored completion")
    counts = dict(ln.strip("|").replace(" ", "").split("|") for ln in section(body, "Counts")[2:])
    want = {k: summary_json["counts"][k] for k in card.COUNTS if k in summary_json["counts"]}
    assert {k: int(v) for k, v in counts.items()} == want and len(want) >= 16
    metrics = section(body, "Metrics")
    assert f"- pairs: {summary_json['counts']['pairs']}" in metrics
    assert any(ln.startswith("- flip rate per aspect: honesty ") for ln in metrics)

    # every column of both files, each with its description
    columns = section(body, "Columns")
    for name in ("rated", "preferences"):
        names = pq.read_schema(run_dir / f"{name}.parquet").names
        start = columns.index(f"`{name}` ({name}.parquet in the run dir):")
        listed = [ln for ln in columns[start + 2:start + 2 + len(names)]]
        assert [ln.split("`")[1] for ln in listed] == names
        assert not any("(not described)" in ln for ln in listed), listed
    assert "- `ratings`: per aspect" in text and "Keys: `honesty`, `helpfulness`" in text


@pytest.mark.slow  # a subprocess CLI
def test_the_card_command_line_rewrites_it_from_the_run_dir(run_dir: Path):
    proc = subprocess.run([sys.executable, "-m", "uf_experiments.outputs.card", str(run_dir)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(run_dir / "dataset_card.md")
    body = split_card((run_dir / "dataset_card.md").read_text())[1]
    assert "| judge-x | judge |" in body  # the served judge's `name: ${.path}` resolved from .hydra/config.yaml
    bad = subprocess.run([sys.executable, "-m", "uf_experiments.outputs.card", str(run_dir.parent)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "config.yaml: missing" in bad.stderr


@pytest.mark.parametrize(("overrides", "statement"), [
    (["pool=tiny"], "Every model here, the judge included, is a tiny Llama with random weights"),
    (["pool=tiny", "judge=served", "judge.model.path=judge-x", "pool.size=3"],
     "tiny_a, tiny_b and tiny_c are tiny Llamas with random weights"),
    (["pool=served", "pool.models=[a,b]"], "tiny_judge (judge) is a tiny Llama with random weights"),
])
def test_tiny_random_models_are_stated_first(overrides: list[str], statement: str):
    text = card.card_text(run_config(overrides), summary(2, 0.0, 1.0, 0.0, 0.0, 0.0))
    body = split_card(text)[1]
    first = body.split("\n\n")[2]  # after the title and the one-paragraph description
    assert first.startswith("> **Made with tiny random-weight models.**") and statement in first
    assert "Do not train on it." in first
    assert ("| tiny_a | generation | tiny random-weight Llama (seed 1, hidden size 64, 2 layers), built offline |"
            in body) == ("pool=served" not in overrides)


def test_attributed_costs_agreement_and_a_stop_are_in_the_card():
    s = summary(4, 0.25, 1.5, 0.0, 0.012, 0.003, paid=0.002, judge_usd=0.004, judged=8, agreement=AGREEMENT,
                stopped="budget_usd=0.002 reached: 3 requests not sent")
    body = split_card(card.card_text(run_config(["pool.size=2"]), s))[1]
    assert "> **The run stopped before finishing its work:** budget_usd=0.002 reached: 3 requests not sent." in body
    costs = section(body, "Costs")
    assert costs[2:] == ["| stage | total | paid | saved by cache |", "|---|---|---|---|",
                         "| generation | $0.008 | $0.002 | $0 |", "| judge | $0.004 | $0 | $0 |",
                         "| **all** | $0.012 | $0.002 | $0.01 |"]
    metrics = section(body, "Metrics")
    assert "- $ per pair: $0.003" in metrics and "- pairs per $: 333.3333" in metrics
    assert "- $ per 1000 judged items: $0.5" in metrics
    assert "| honesty | 8 | 0.25 | 0.875 | 0.41 | 0.5 | 0.75 |" in metrics


def test_an_older_summary_says_what_its_dollars_are():
    body = split_card(card.card_text(run_config(["pool.size=2"]), old_summary(2, 0.01, cache_hits=3)))[1]
    assert "Paid by this run: $0.01 (generation $0.01, judge $0); requests read from the cache are not included" in body


def test_secrets_in_overrides_are_hidden_and_a_license_is_written():
    text = card.card_text(run_config([]), summary(1, 0.0, 1.0, 0.0, 0.0, 0.0),
                          ["pool.size=2", "+pool.engine.api_key=test-only-secret-123"], license="cc-by-4.0")
    assert "test-only-secret-123" not in text and "+pool.engine.api_key=***" in text
    assert split_card(text)[0]["license"] == "cc-by-4.0" and "## License" not in text


def test_push_sends_both_configs_then_the_card_as_readme(run_dir: Path, monkeypatch: pytest.MonkeyPatch):
    import huggingface_hub
    from datasets import Dataset

    calls: list[tuple[str, dict[str, Any]]] = []

    def fake_push(self: Dataset, repo_id: str, **kwargs: Any) -> None:
        calls.append(("push_to_hub", {"repo_id": repo_id, "rows": self.num_rows, **kwargs}))

    def fake_upload(self: huggingface_hub.HfApi, **kwargs: Any) -> None:
        calls.append(("upload_file", {**kwargs, "text": Path(kwargs["path_or_fileobj"]).read_text()}))

    monkeypatch.setattr(Dataset, "push_to_hub", fake_push)
    monkeypatch.setattr(huggingface_hub.HfApi, "upload_file", fake_upload)
    config = run_config(OVERRIDES + ["output.push_to_hub=someone/uf-pairs"])
    path = card.write_card(run_dir, config, json.loads((run_dir / "summary.json").read_text()))
    rated = Dataset.from_parquet(str(run_dir / "rated.parquet"))
    prefs = Dataset.from_parquet(str(run_dir / "preferences.parquet"))
    hub.push_to_hub("someone/uf-pairs", {"rated": rated, "preferences": prefs}, path, private=True)

    assert [c[0] for c in calls] == ["push_to_hub", "push_to_hub", "upload_file"]  # the card last: it wins
    assert calls[0][1] == {"repo_id": "someone/uf-pairs", "rows": rated.num_rows, "config_name": "rated",
                           "private": True}
    assert calls[1][1] == {"repo_id": "someone/uf-pairs", "rows": prefs.num_rows, "config_name": "preferences",
                           "private": True}
    upload = calls[2][1]
    assert {k: upload[k] for k in ("path_or_fileobj", "path_in_repo", "repo_id", "repo_type")} == {
        "path_or_fileobj": str(path), "path_in_repo": "README.md", "repo_id": "someone/uf-pairs",
        "repo_type": "dataset"}
    head, body = split_card(upload["text"])
    assert {c["config_name"] for c in head["configs"]} == {calls[0][1]["config_name"], calls[1][1]["config_name"]}
    assert body.startswith("\n# someone/uf-pairs\n")
    assert 'load_dataset("someone/uf-pairs", "preferences", split="train")' in body
