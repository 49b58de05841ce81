"""Hydra plugin package of uf-experiments: the sweeper that runs only the sweep cells that can run."""
