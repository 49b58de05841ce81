"""Only what pyproject.toml cannot say: the Hydra config root stays at the repo's top level (``conf/``, where
contributors expect it) and ships inside the package as ``uf_experiments.conf``, so an installed wheel finds its
configs next to its code (``uf_experiments.cli.conf_dir()``). Every directory is listed, so no file is left out."""

from setuptools import find_namespace_packages, setup

code = find_namespace_packages(include=["uf_experiments", "uf_experiments.*"], exclude=["*.__pycache__"])
conf = ["uf_experiments.conf", *(f"uf_experiments.conf.{p}" for p in find_namespace_packages(where="conf"))]
setup(packages=[*code, *conf], package_dir={"uf_experiments.conf": "conf"})
