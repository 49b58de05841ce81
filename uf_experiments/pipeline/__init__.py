"""The pipeline: one job from its composed config to its files. :func:`run` validates the config, types it once
(:func:`uf_experiments.config.typed`) and runs the steps in order:

- ``run``: the order of a job (plan, or load -> preflight -> stream), its W&B tracker and request cache;
- ``plan`` and ``pilot``: ``plan=true`` (every request, what the cache holds, estimated tokens and $), after a
  pilot run of the first K prompts with ``planning.pilot=K``;
- ``preflight``: every API endpoint probed once before anything is spent;
- ``stream``: the streaming part of a job (``Run``): the requests, the scheduler under signal handlers, the files,
  ``summary.json``, the dataset card, W&B and the Hub;
- ``context``: what the stream's parts share (``RunContext``: typed config, run dir, cache, tracker, stop state,
  meter, progress, stats);
- ``scheduler``: every engine busy at once, the judge right behind the generators; a prompt finishes when judged;
- ``worker``: one model's engine behind the request cache (claims, batches, the device slot);
- ``budget``: the money spent and ``budget_usd`` reservations;
- ``rows`` and ``tally``: a finished prompt's row and W&B table rows; the counts, metrics and ``summary.json``;
- ``progress``: the live display.
"""

from uf_experiments.pipeline.run import run

__all__ = ["run"]
