"""Only what pyproject.toml cannot say: the Hydra config root stays at the repo's top level (``conf/``, where
contributors expect it) and ships inside the package as ``uf_experiments.conf``, so an installed wheel finds its
configs next to its code (``uf_experiments.cli.app.conf_dir()``). Every directory is listed, so no file is left out.
``hydra_plugins/uf_experiments_sweeper`` is the sweeper plugin (Hydra loads plugins only from ``hydra_plugins``)."""

from setuptools import find_namespace_packages, setup

code = find_namespace_packages(include=["uf_experiments", "uf_experiments.*"], exclude=["*.__pycache__"])
conf = ["uf_experiments.conf", *(f"uf_experiments.conf.{p}" for p in find_namespace_packages(where="conf"))]
plugins = find_namespace_packages(include=["hydra_plugins.*"], exclude=["*.__pycache__"])  # our Hydra sweeper
setup(packages=[*code, *conf, *plugins], package_dir={"uf_experiments.conf": "conf"})
