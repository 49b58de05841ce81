"""The dataset card of a run: ``dataset_card.md`` in the run dir, pushed as the dataset's README with
``output.push_to_hub``.

``write_card(run_dir, config, summary)`` writes it from the composed config and ``summary.json``: a Hugging Face
card YAML header (tags, size, the ``rated`` and ``preferences`` configs as ``Dataset.push_to_hub`` lays them out),
then how the data was made (the command and its overrides, models and judge, aspects, binarization), what came
out (counts, costs, metrics) and the columns of both files. When the models were the tiny random-weight ones,
the card says so first. ``outputs.hub.push_to_hub`` pushes both datasets, then the card as ``README.md``.

``python -m uf_experiments.outputs.card RUN_DIR`` (re)writes the card of an existing run dir from its files.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from uf_experiments.config.schema import enum_value
from uf_experiments.core.rundir import dig, hydra_overrides
from uf_experiments.metrics.cell import costs, summary_metrics
from uf_experiments.outputs.hub import SPLIT, card_header
from uf_experiments.tracking.secrets import scrub_overrides

CARD = "dataset_card.md"

RATED_COLUMNS = {
    "prompt_id": "the prompt's id: the dataset's id column, or a hash of source and instruction",
    "prompt_index": "the prompt's position in the input dataset",
    "source": "where the prompt comes from (ultrachat, flan, ...; `unknown` when the dataset has no source column)",
    "instruction": "the prompt, as sent to every generation model",
    "principles": "per completion, the principle its system prompt was drawn from (null: no system prompt)",
    "system_prompts": "per completion, the system prompt sent with it (null: none)",
    "generations": "the completions (list)",
    "generation_models": "the model that wrote each completion (same order as `generations`)",
    "judge_model": "the judge",
    "ratings": "per aspect (keys: the aspects), one rating per completion; null for N/A or a reply that did not "
               "parse, never 0",
    "rationales": "per aspect, the judge's rationale for each completion",
    "types": "per aspect, the types the judge listed for each completion (truthfulness, helpfulness)",
    "judge_order": "per aspect, the order the judge saw the completions in: `judge_order[a][j]` is the completion "
                   "shown as text j+1",
    "parse_status": "per aspect, `ok` or why the judge's reply did not parse",
    "judge_raw": "per aspect, the judge's last reply to each request (one; two with judge.swap; n for critique)",
}
PREFERENCE_COLUMNS = {
    "prompt_id": "the prompt's id (as in `rated`)",
    "prompt": "the user message: `[{role: user, content}]`",
    "chosen": "the preferred completion as an assistant message: `[{role: assistant, content}]`",
    "rejected": "the other completion, same layout",
    "score_chosen": "the chosen completion's score (the binarization score, see above)",
    "score_rejected": "the rejected completion's score",
    "chosen_model": "the model that wrote the chosen completion",
    "rejected_model": "the model that wrote the rejected completion",
}
RECIPES = {
    "h4": "chosen = the best-scored completion, rejected = a seeded random other one "
          "(HuggingFaceH4/ultrafeedback_binarized)",
    "mean_aspects": "score = the mean of the aspect ratings; chosen = the best, rejected = a seeded random "
                    "completion with a strictly lower mean (Argilla); rows where all tie give no pair",
    "best_worst": "chosen = the best-scored completion, rejected = the worst",
}
COUNTS = ("rows_read", "skipped_empty", "skipped_duplicate", "prompts", "generation_requests", "completions",
          "generation_failures", "prompts_too_few_completions", "rated_rows", "judge_items", "judged",
          "parse_failures", "not_judged", "pairs", "ties", "ties_dropped", "skipped_unscored", "not_sent",
          "engine_calls", "cache_hits")  # the summary.json counts the card lists, in this order, when present


# --------------------------------------------------------------------------------------------------- reading


def plain(config: Any) -> dict[str, Any]:
    """A composed config (DictConfig or mapping) as plain, resolved Python values."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(config, DictConfig):
        return OmegaConf.to_container(config, resolve=True, enum_to_str=True)  # type: ignore[return-value]
    return dict(config)


def roster(config: Mapping[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The pool's first ``pool.size`` models as ``(name, model config)``; a served pool's names (a list) get the
    pool's engine and price."""
    pool = config.get("pool") or {}
    models = pool.get("models") or {}
    if isinstance(models, Mapping):
        items = [(str(k), dict(v or {})) for k, v in models.items()]
    else:
        items = [(str(n), {"name": n, "path": n, "engine": pool.get("engine") or {}, "price": pool.get("price") or {},
                           "gpu_hour_usd": pool.get("gpu_hour_usd") or 0.0}) for n in models]
    size = pool.get("size")
    return items[:size] if isinstance(size, int) else items


def _sweep_of(run_dir: Path) -> str | None:
    """The sweep dir's name (the run dir's parent) when Hydra's ``.hydra/hydra.yaml`` says the run was one cell of
    a ``-m`` sweep."""
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return None
    hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra") or {}
    return run_dir.resolve().parent.name if hydra.get("mode") == "MULTIRUN" else None


def parquet_columns(path: Path) -> list[tuple[str, list[str]]]:
    """``(column, struct keys)`` of a parquet file's schema (struct keys: the aspects of a per-aspect column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if not path.is_file():
        return []
    schema = pq.read_schema(path)
    return [(f.name, [c.name for c in f.type] if pa.types.is_struct(f.type) else []) for f in schema]


# --------------------------------------------------------------------------------------------------- the card


def _usd(value: Any) -> str:
    return "—" if value is None else f"${value:,.6f}".rstrip("0").rstrip(".") if value else "$0"


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return format(value, ".4f").rstrip("0").rstrip(".") or "0"
    return str(value)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(cell(v) for v in r) + " |" for r in rows)]


def _is_tiny(model: Mapping[str, Any]) -> bool:
    return bool(model.get("tiny"))


def _what(model: Mapping[str, Any]) -> str:
    tiny = model.get("tiny")
    if tiny:
        return (f"tiny random-weight Llama (seed {tiny.get('seed')}, hidden size {tiny.get('hidden_size')}, "
                f"{tiny.get('num_layers')} layers), built offline")
    packaged = model.get("packaged")
    what = (f"`{packaged.get('gguf_file')}` from the PyPI wheel `{packaged.get('package')}=={packaged.get('version')}`"
            if packaged else f"`{model.get('path')}`")
    own = [f"{k} {model.get(k)}" for k in ("temperature", "top_p", "max_new_tokens") if model.get(k) is not None]
    return what + (f" ({', '.join(own)})" if own else "")


def _engine(model: Mapping[str, Any]) -> str:
    target = str(dig(model, "engine", "_target_", default=""))
    return target.rsplit(".", 1)[-1] or "—"


def _price(model: Mapping[str, Any]) -> str:
    price = model.get("price") or {}
    parts = []
    if price.get("input_per_1m") or price.get("output_per_1m"):
        parts.append(f"${_num(price.get('input_per_1m'))} in / ${_num(price.get('output_per_1m'))} out per 1M tokens"
                     + (f" (read on {price['read_on']})" if price.get("read_on") else ""))
    if model.get("gpu_hour_usd"):
        parts.append(f"${_num(model['gpu_hour_usd'])} per GPU hour of engine time")
    return "; ".join(parts) or "free"


def card_text(config: Any, summary: Mapping[str, Any], overrides: Sequence[str] = (),
              columns: Mapping[str, Sequence[tuple[str, Sequence[str]]]] | None = None, *,
              sweep: str | None = None, license: str | None = None) -> str:
    """The whole card. ``columns``: per file (``rated``, ``preferences``) its ``(column, struct keys)``, as read
    from the parquet files (default: the documented columns)."""
    config = plain(config)
    license = license or dig(config, "output", "license")
    counts = summary.get("counts") or {}
    metrics = summary.get("metrics") or {}
    judge = config.get("judge") or {}
    judge_model = judge.get("model") or {}
    models = roster(config)
    repo = dig(config, "output", "push_to_hub")
    aspects = config.get("aspect") or {}
    experiment = config.get("experiment", "run")
    out = ["---", yaml.safe_dump(card_header(config, summary, license), sort_keys=False).rstrip(), "---", "",
           f"# {repo or 'uf-experiments ' + experiment}", "",
           "Preference data in the style of UltraFeedback (Cui et al. 2023), made with uf-experiments: a pool of "
           "models wrote completions for each prompt, a judge model "
           "rated them side by side, and the ratings were binarized into chosen/rejected pairs. Two configs: "
           "`preferences` (the pairs, in TRL's conversational preference layout) and `rated` (every prompt with "
           "all its completions, ratings and rationales).", ""]

    tiny = [name for name, m in models if _is_tiny(m)] + ([f"{judge_model.get('name')} (judge)"]
                                                          if _is_tiny(judge_model) else [])
    if tiny:
        everyone = len(tiny) == len(models) + 1
        who = ("Every model here, the judge included, is a tiny Llama" if everyone else
               f"{', '.join(tiny[:-1]) + ' and ' if len(tiny) > 1 else ''}{tiny[-1]} "
               + ("are tiny Llamas" if len(tiny) > 1 else "is a tiny Llama"))
        out += [f"> **Made with tiny random-weight models.** {who} with random weights, built offline by "
                "`uf_experiments/tiny`. What they write is gibberish and the ratings mean nothing: this dataset "
                "shows the pipeline's files and formats. Do not train on it.", ""]
    if summary.get("stopped"):
        out += [f"> **The run stopped before finishing its work:** {summary['stopped']}. The files hold what it "
                "had done.", ""]

    # how it was made
    out += ["## How it was made", "", "```bash",
            " ".join(["uf-experiments", *(shlex.quote(o) for o in scrub_overrides(overrides))]), "```", ""]
    if sweep:
        out += [f"One cell of the `-m` sweep `{sweep}`; the command above reruns this cell alone.", ""]
    shown = ", ".join(f"`{o}`" for o in scrub_overrides(overrides)) or "none"
    out += [f"Overrides of the defaults: {shown}.", ""]
    ds = config.get("dataset") or {}
    where = {"hub": f"`{ds.get('repo_id')}`" + (f" (config `{ds['subset']}`)" if ds.get("subset") else "")
             + f", split `{ds.get('split')}`", "local": f"the file `{Path(str(ds.get('path'))).name}`",
             "demo": "the built-in demo prompts (12 from each UltraFeedback source)"}.get(enum_value(ds.get("kind")),
                                                                                          str(ds.get("kind")))
    shard = ds.get("shard") or {}
    sampling = config.get("sampling") or {}
    out += [f"- Prompts: {where}" + (f", the first {ds['limit']}" if ds.get("limit") else "")
            + (f", shard {shard.get('index')} of {shard.get('count')}" if (shard.get("count") or 1) > 1 else "")
            + f" (`experiment={experiment}`, `seed={config.get('seed')}`).",
            f"- Generation: {sampling.get('n')} completions per prompt, each by a distinct model of the first "
            f"{dig(config, 'pool', 'size')} of pool `{dig(config, 'pool', 'name')}`; temperature "
            f"{sampling.get('temperature')}, top_p {sampling.get('top_p')}, at most {sampling.get('max_new_tokens')} "
            f"new tokens; system-prompt principles: `{dig(config, 'principles', 'name', default='none')}`.", ""]

    out += ["## Models", ""]
    by_model = dig(summary, "generation", "by_model", default={})
    rows = [[name, "generation", _what(m), _engine(m), _price(m), dig(by_model, name, "requests", default=0)]
            for name, m in models]
    rows.append([judge_model.get("name"), "judge", _what(judge_model), _engine(judge_model), _price(judge_model),
                 dig(summary, "judge", "requests", default=0)])
    out += _md_table(["model", "role", "what", "engine", "price", "requests"], rows) + [""]
    swap = (f"each side-by-side aspect judged a second time in the reversed order (`{judge.get('swap_combine')}` "
            "order's ratings kept)" if judge.get("swap") else "one order per (prompt, aspect)")
    out += [f"Judge settings: `{judge.get('output')}` output "
            f"({'JSON-schema structured output' if judge.get('output') == 'json' else 'the paper text format'}), "
            f"temperature {judge.get('temperature')}, top_p {judge.get('top_p')}, at most "
            f"{judge.get('max_new_tokens')} new tokens, a reply that does not parse re-asked up to "
            f"{judge.get('max_parse_retries')} times then stored unrated; {swap}.", ""]

    out += ["## Aspects", ""]
    out += _md_table(["aspect", "scale", "N/A allowed", "how"], [
        [name, f"{a.get('min_rating')}-{a.get('max_rating')}", "yes" if a.get("allow_na") else "no",
         "one request per completion" if a.get("per_completion") else "all completions side by side"
         + (", with types" if a.get("has_types") else "")] for name, a in aspects.items()]) + [""]

    b = config.get("binarize") or {}
    recipe = enum_value(b.get("recipe"))
    score = b.get("score")
    side = [n for n, a in aspects.items() if not a.get("per_completion")] or list(aspects)
    out += ["## Binarization", "",
            f"- Recipe `{recipe}`: {RECIPES.get(recipe, 'see the uf-experiments README')}.",
            "- Score: " + (f"the `{score}` rating." if score else
                            f"the mean of the aspects that rated the completion ({', '.join(side)}).")
            + " A completion without a score (N/A, a failed parse) never takes part.",
            f"- Ties (equal scores): `{b.get('ties')}` ("
            + ("kept as pairs" if b.get("ties") == "keep" else "dropped") + ").", ""]

    out += ["## Counts", ""]
    out += _md_table(["count", "value"], [[k, counts[k]] for k in COUNTS if k in counts]) + [""]

    cost = costs(dict(summary))
    cost_usd = summary.get("cost_usd") or {}
    out += ["## Costs", ""]
    if cost.total is not None and isinstance(cost_usd.get("judge"), Mapping):
        out += ["`total` is what the run's work costs, every request at its attributed price (API: tokens × the "
                "price when it was paid; self-hosted: its share of engine time × `gpu_hour_usd`), whether paid by "
                "this run or read from the request cache; `paid` is what this run spent.", ""]
        stage_rows = [[st, _usd(dig(cost_usd, st, "total")), _usd(dig(cost_usd, st, "paid")),
                       _usd(dig(cost_usd, st, "saved_by_cache"))] for st in ("generation", "judge")]
        stage_rows.append(["**all**", _usd(cost.total), _usd(cost.paid), _usd(cost_usd.get("saved_by_cache"))])
        out += _md_table(["stage", "total", "paid", "saved by cache"], stage_rows) + [""]
        out += [f"Note: {n}." for n in cost_usd.get("notes") or []] + ([""] if cost_usd.get("notes") else [])
    else:
        out += [f"Paid by this run: {_usd(cost.paid)} (generation {_usd(cost_usd.get('generation'))}, judge "
                f"{_usd(cost_usd.get('judge'))}); requests read from the cache are not included "
                "(this summary predates attributed costs).", ""]
    model_rows = []
    attributed = any("paid_usd" in m for st in ("generation", "judge")
                     for m in (dig(summary, st, "by_model", default={}) or {}).values())
    for stage in ("generation", "judge"):
        for name, m in (dig(summary, stage, "by_model", default={}) or {}).items():
            usd = [_usd(m.get("cost_usd")), _usd(m.get("paid_usd"))] if attributed else [_usd(m.get("cost_usd"))]
            model_rows.append([name, stage, m.get("requests"), m.get("cache_hits"), m.get("prompt_tokens"),
                               m.get("completion_tokens"), *usd])
    if model_rows:
        out += _md_table(["model", "stage", "requests", "cache hits", "prompt tokens paid", "completion tokens paid",
                          *(["$ total", "$ paid"] if attributed else ["$ paid (cache hits at $0)"])],
                         model_rows) + [""]

    values = summary_metrics(dict(summary))
    out += ["## Metrics", ""]
    lines = [("pairs", counts.get("pairs")), ("tie rate (ties / candidate pairs)", metrics.get("tie_rate")),
             ("mean margin (score_chosen - score_rejected)", metrics.get("mean_margin")),
             ("parse-failure rate", metrics.get("parse_failure_rate")),
             ("rating-length correlation", metrics.get("rating_length_correlation")),
             ("$ per pair", values["usd_per_pair"]), ("pairs per $", values["pairs_per_usd"]),
             ("$ per 1000 judged items", values["usd_per_1k_judged"])]
    out += [f"- {k}: {_usd(v) if k.startswith('$') else _num(v)}" for k, v in lines]
    for key, label in (("parse_failure_rate_by_aspect", "parse-failure rate"), ("flip_rate_by_aspect", "flip rate")):
        if metrics.get(key):
            out.append(f"- {label} per aspect: " + ", ".join(f"{a} {_num(v)}" for a, v in metrics[key].items()))
    if metrics.get("mean_rating_by_model"):
        out.append("- mean score per model: " + ", ".join(f"{m} {_num(v)}"
                                                         for m, v in metrics["mean_rating_by_model"].items()))
    if metrics.get("chosen_by_model") or metrics.get("rejected_by_model"):
        names = sorted(set(metrics.get("chosen_by_model") or {}) | set(metrics.get("rejected_by_model") or {}))
        out.append("- chosen / rejected per model: " + ", ".join(
            f"{m} {dig(metrics, 'chosen_by_model', m, default=0)}/{dig(metrics, 'rejected_by_model', m, default=0)}"
            for m in names))
    out.append("")
    if metrics.get("agreement"):
        out += ["Agreement with the reference ratings:", ""]
        out += _md_table(["aspect", "n", "exact", "within 1", "Spearman", "quadratic kappa", "pairwise accuracy"],
                         [[a, v.get("n"), *(_num(v.get(k)) for k in ("exact", "within_1", "spearman",
                                                                    "kappa_quadratic", "pairwise_accuracy"))]
                          for a, v in metrics["agreement"].items()]) + [""]

    out += ["## Columns", ""]
    described = {"rated": RATED_COLUMNS, "preferences": PREFERENCE_COLUMNS}
    for name in ("preferences", "rated"):
        cols = (columns or {}).get(name) or [(c, []) for c in described[name]]
        out += [f"`{name}` ({name}.parquet in the run dir):", ""]
        for col, keys in cols:
            note = described[name].get(col, "(not described)")
            out.append(f"- `{col}`: {note}" + (f". Keys: {', '.join(f'`{k}`' for k in keys)}" if keys else ""))
        out.append("")

    out += ["## Loading", "", "```python"]
    if repo:
        out += ["from datasets import load_dataset", "",
                f'pairs = load_dataset("{repo}", "preferences", split="{SPLIT}")',
                f'rated = load_dataset("{repo}", "rated", split="{SPLIT}")']
    else:
        out += ["from datasets import load_from_disk", "import pandas as pd", "",
                'pairs = load_from_disk("preferences")  # in the run dir; or pd.read_parquet("preferences.parquet")',
                'rated = pd.read_parquet("rated.parquet")']
    out += ["```", ""]
    if not license:
        out += ["## License", "",
                "Not set by uf-experiments. The completions are outputs of the models above and the prompts come "
                "from the dataset above: their licenses and terms of use apply.", ""]
    return "\n".join(out)


def write_card(run_dir: Path, config: Any, summary: Mapping[str, Any], overrides: Sequence[str] | None = None,
               license: str | None = None) -> Path:
    """Write ``run_dir/dataset_card.md`` from the composed config and the run's summary; the overrides default
    to Hydra's ``.hydra/overrides.yaml``, the columns are read from the parquet files. Returns its path."""
    run_dir = Path(run_dir)
    columns = {name: parquet_columns(run_dir / f"{name}.parquet") for name in ("rated", "preferences")}
    text = card_text(config, summary, hydra_overrides(run_dir) if overrides is None else overrides, columns,
                     sweep=_sweep_of(run_dir), license=license)
    path = run_dir / CARD
    path.write_text(text)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m uf_experiments.outputs.card",
                                     description="(Re)write a run dir's dataset_card.md from its files.")
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args(argv)
    config_file, summary_file = args.run_dir / ".hydra" / "config.yaml", args.run_dir / "summary.json"
    for f in (config_file, summary_file):
        if not f.is_file():
            print(f"{parser.prog}: error: {f}: missing (is {args.run_dir} a run dir?)", file=sys.stderr)
            return 2
    from omegaconf import OmegaConf

    config = OmegaConf.load(config_file)
    try:
        config = OmegaConf.to_container(config, resolve=True)  # e.g. a served model's `name: ${.path}`
    except Exception:  # noqa: BLE001 - an interpolation this process cannot resolve: keep the text
        config = OmegaConf.to_container(config, resolve=False)
    path = write_card(args.run_dir, config, json.loads(summary_file.read_text()))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
