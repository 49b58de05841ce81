"""Tracking runs: W&B (one run per job, a ``compare`` run per sweep), the null tracker of ``tracking=none``, and
the scrubbing that keeps secrets out of every record. ``wandb`` is imported only when a W&B run starts."""

from uf_experiments.tracking.null import NullTracker, tracking_enabled
from uf_experiments.tracking.secrets import SECRET_KEY, is_secret, scrub, scrub_overrides
from uf_experiments.tracking.wandb import WandbTracker, cell_metrics, log_comparison, logged_in, start_tracker

__all__ = [
    "SECRET_KEY",
    "NullTracker",
    "WandbTracker",
    "cell_metrics",
    "is_secret",
    "log_comparison",
    "logged_in",
    "scrub",
    "scrub_overrides",
    "start_tracker",
    "tracking_enabled",
]
