"""Benchmarks of issue 9: see docs/benchmarks.md. Run from the checkout root: ``python -m benchmarks.span ...``."""
