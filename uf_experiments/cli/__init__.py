"""Thin entry points: the Hydra app (``uf-experiments``), ``uf-experiments-compare`` and ``uf-experiments-merge``."""
