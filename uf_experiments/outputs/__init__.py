"""What a run writes: ``rated.parquet`` and ``preferences.parquet`` (+ the ``preferences/`` HF dataset) in
dataset order (:mod:`~uf_experiments.outputs.writer`), the dataset card (:mod:`~uf_experiments.outputs.card`), and
the Hub push (:mod:`~uf_experiments.outputs.hub`). pyarrow, datasets and huggingface_hub are imported only where
they are used."""

__all__ = ["card", "hub", "writer"]
