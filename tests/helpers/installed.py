"""A built wheel installed (not editable) into a fresh virtualenv that has no vLLM, torch or transformers.

The venv gets the running environment's other packages through a ``.pth`` line naming a mirror of its
site-packages (symlinks) without the heavy ones and without this repo's editable install, so the wheel's own copy
of ``uf_experiments`` is the one imported, as after ``pip install uf-experiments`` with no extra.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Top-level names left out of the venv: what only the vLLM and Ray extras bring (an API-only install has none of
# them), and this repo's own (editable) install.
HEAVY = ("torch", "torchgen", "functorch", "transformers", "tokenizers", "vllm", "triton", "ray")
LEFT_OUT = (*HEAVY, "uf_experiments", "__editable__")
TOP_LEVEL_IGNORE = shutil.ignore_patterns(".git", ".venv*", "outputs", "build", "dist", "wandb")  # the clone's own
ANYWHERE_IGNORE = shutil.ignore_patterns("*.egg-info", "__pycache__", ".pytest_cache")


def source_ignore(directory: str, names: list[str]) -> set[str]:
    """What the wheel's source copy leaves out: run outputs, venvs and builds at the clone's top (not the package's
    own ``uf_experiments/outputs/``), caches anywhere."""
    ignored = set(ANYWHERE_IGNORE(directory, names))
    if Path(directory).resolve() == REPO:
        ignored |= set(TOP_LEVEL_IGNORE(directory, names))
    return ignored


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.venv / "bin" / "uf-experiments"

    def env(self, **extra: str) -> dict[str, str]:
        """The test environment without PYTHONPATH (which would put a source tree before the installed wheel)."""
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
        return {**env, **extra}


def run(cmd: list[str | Path], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kwargs)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


def build_wheel(out: Path) -> Path:
    """``pip wheel . --no-deps`` on a copy of the source tree (an in-tree build would write build/ into the repo).
    When this environment's setuptools meets pyproject's build requirement it builds the wheel (no index needed);
    else pip builds in isolation, fetching setuptools from the package index."""
    from importlib.metadata import PackageNotFoundError, version

    src = out / "src"
    shutil.copytree(REPO, src, ignore=source_ignore, symlinks=True)
    try:
        local = int(version("setuptools").split(".")[0]) >= 68  # pyproject.toml: requires = ["setuptools>=68"]
    except PackageNotFoundError:
        local = False
    run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", *(["--no-build-isolation"] if local else []),
         "-w", out / "dist"], cwd=out)
    (wheel,) = (out / "dist").glob("uf_experiments-*.whl")
    return wheel


def api_only_venv(wheel: Path, venv: Path) -> Installed:
    """A fresh venv with ``wheel`` installed (no -e) and this environment's packages minus :data:`LEFT_OUT`."""
    run([sys.executable, "-m", "venv", "--without-pip", venv])
    purelib = Path(run([venv / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
                   .stdout.strip())
    mirror = venv / "host-packages"
    mirror.mkdir()
    for lib in {Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["platlib"])}:
        for entry in lib.iterdir():
            if not entry.name.lower().startswith(LEFT_OUT) and not (mirror / entry.name).exists():
                (mirror / entry.name).symlink_to(entry)
    (purelib / "host-packages.pth").write_text(f"{mirror}\n")  # a plain path: nested .pth files stay unread
    run([sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", wheel])
    return Installed(wheel, venv)
