"""What a run's ratings and requests add up to: binarization into pairs (:mod:`~uf_experiments.metrics.binarize`),
the experiment metrics accumulated row by row (:mod:`~uf_experiments.metrics.experiment`), a judge's agreement
with reference ratings (:mod:`~uf_experiments.metrics.agreement`), per-stage request and token stats
(:mod:`~uf_experiments.metrics.summary`), prices and plan estimates (:mod:`~uf_experiments.metrics.pricing`), and
the numbers a run is compared on (:mod:`~uf_experiments.metrics.cell`)."""

from uf_experiments.metrics.binarize import BinarizeReport, binarize
from uf_experiments.metrics.experiment import Metrics, judge_metrics

__all__ = ["BinarizeReport", "Metrics", "binarize", "judge_metrics"]
