"""uf-experiments: UltraFeedback-style preference-data experiments driven by Hydra."""

__version__ = "0.1.0"
