"""Tiny random-weight Llama models built offline for the demo and the tests."""

from uf_experiments.tiny.build import TinySpec, build_tiny_model, tiny_cache_dir

__all__ = ["TinySpec", "build_tiny_model", "tiny_cache_dir"]
