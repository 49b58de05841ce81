"""The seed's distilabel 1.5.3 pipeline, against an OpenAI-compatible endpoint: benchmark (b)'s baseline.

Runs in distilabel's own virtualenv (never imported by our package or tests):

    V/bin/python benchmarks/distilabel_seed.py --base-url http://127.0.0.1:8000/v1 --prompts prompts.jsonl \\
        --limit 200 --input-batch-size 50 --cache-dir /tmp/distilabel-cache

The shape of the seed document: load the prompts -> 4 ``TextGeneration`` steps (one ``OpenAILLM`` each), every
batch routed to 3 of them by ``sample_n_steps(3)`` -> ``GroupColumns`` -> ``UltraFeedback(aspect="overall-rating")``
with an ``OpenAILLM`` judge. Prints one JSON line: wall time inside Python, rows out, ratings parsed.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--prompts", required=True, help="jsonl with an `instruction` column")
    ap.add_argument("--limit", type=int, default=200)
    ap.add_argument("--input-batch-size", type=int, default=50)
    ap.add_argument("--models", default="gen-a,gen-b,gen-c,gen-d")
    ap.add_argument("--judge", default="judge-x")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    args = ap.parse_args()
    t0 = time.perf_counter()

    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline, sample_n_steps
    from distilabel.steps import GroupColumns, LoadDataFromDicts
    from distilabel.steps.tasks import TextGeneration, UltraFeedback

    with open(args.prompts) as f:
        rows = [{"instruction": json.loads(line)["instruction"]} for line in f][: args.limit]
    bs = args.input_batch_size

    def llm(name: str) -> OpenAILLM:
        return OpenAILLM(model=name, base_url=args.base_url, api_key="sk-bench", max_retries=6, timeout=300,
                         generation_kwargs={"max_new_tokens": args.max_new_tokens, "temperature": 0.7})

    with Pipeline(name="seed-bench", cache_dir=args.cache_dir) as pipeline:
        load = LoadDataFromDicts(name="load", data=rows, batch_size=bs)
        generators = [TextGeneration(name=f"generate_{m.replace('-', '_')}", llm=llm(m), input_batch_size=bs)
                      for m in args.models.split(",")]
        group = GroupColumns(name="group", columns=["generation", "model_name"],
                             output_columns=["generations", "generation_models"], input_batch_size=bs)
        judge = UltraFeedback(name="ultrafeedback", aspect="overall-rating", llm=llm(args.judge), input_batch_size=bs)
        load >> sample_n_steps(3) >> generators >> group >> judge

    distiset = pipeline.run(use_cache=False)
    wall = time.perf_counter() - t0
    out = distiset["default"]["train"]
    ratings = [r for row in out["ratings"] for r in (row or []) if r is not None]
    print(json.dumps({"wall_s": round(wall, 3), "rows": len(out), "ratings": len(ratings),
                      "generations": sum(len(g or []) for g in out["generations"])}))


if __name__ == "__main__":
    main()
