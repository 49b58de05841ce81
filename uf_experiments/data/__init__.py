"""The data a run starts from: prompt sources (the demo set, local files, the Hugging Face hub) in
:mod:`~uf_experiments.data.sources`, the rules that turn rows into prompts in :mod:`~uf_experiments.data.prompts`,
and the layouts of completions a dataset already holds in :mod:`~uf_experiments.data.given`. ``datasets`` is
imported only when a Hub dataset is read."""

from uf_experiments.data.given import given_row_fields
from uf_experiments.data.prompts import LoadReport, to_prompts
from uf_experiments.data.sources import check_inputs, hub_error, load_prompts

__all__ = ["LoadReport", "check_inputs", "given_row_fields", "hub_error", "load_prompts", "to_prompts"]
