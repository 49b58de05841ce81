"""Shared test setup: offline environment, a session-wide cache for tiny models, and config composition.

The environment is set at import time, before any test module imports datasets / transformers / wandb, so no
test ever waits on the Hugging Face hub (a hub call retries for ~23 s on a machine with no network).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
CONF_DIR = REPO / "conf"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["WANDB_MODE"] = "offline"
# Tiny models are built once and reused across test runs (outputs/ is git-ignored).
os.environ.setdefault("UF_EXPERIMENTS_CACHE", str(REPO / "outputs" / ".test-cache"))

from hydra import compose as _hydra_compose  # noqa: E402  (after the environment is set)
from hydra import initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from uf_experiments.config import register_configs  # noqa: E402

Compose = Callable[..., DictConfig]
pytest_plugins = [
    "tests.helpers.postgres",  # pg_server, pg_url: a real PostgreSQL the tests start
    "tests.helpers.xdist_groups",  # --dist loadgroup keeps a file (or an xdist_group) on one worker
    "tests.helpers.tiny_demo",  # tiny_demo_run: the CLI demo on tiny vLLM models, once per worker
]


def compose_config(overrides: Sequence[str] = (), *, return_hydra_config: bool = False) -> DictConfig:
    """Compose ``conf/config.yaml`` with ``overrides``, as the command line would (without running anything).

    ``return_hydra_config=True`` adds the ``hydra`` node (``hydra.runtime.choices`` etc.).
    """
    register_configs()  # the schema `config_schema` in ConfigStore; idempotent
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return _hydra_compose("config", overrides=list(overrides), return_hydra_config=return_hydra_config)


# Test files whose many cases share no module-scoped fixture: pytest-xdist spreads their cases over the workers
# (``--dist loadgroup``); every other file runs whole on one worker, so its module fixtures (a real run, a loaded
# vLLM engine) are built once.
SPREAD = {"test_conf_comments.py", "test_docs.py", "test_config.py", "test_judge_parse.py", "test_data.py"}


# pytest-xdist hands the groups out in collection order, so the heaviest go first and the two workers end together
# (longest first). Seconds of one worker at idle, measured with `--durations=0`; a group not listed is light. A
# stale figure only costs balance, never a result.
WEIGHT_S = {"ray": 240, "tests/e2e/test_sweeps.py": 96,
            "tests/e2e/test_served_vllm.py": 55, "tests/e2e/test_attribution.py": 22, "tests/e2e/test_slurm.py": 48,
            "tests/e2e/test_failures.py": 48, "tests/e2e/test_bad_input.py": 45, "tests/e2e/test_rejudge.py": 22,
            "tests/e2e/test_pg_cache.py": 44, "tests/e2e/test_sweep_wandb.py": 41, "tests/e2e/test_resume.py": 40,
            "tests/unit/models/test_smollm2.py": 40, "tests/unit/metrics/test_pricing.py": 38,
            "tests/unit/engines/test_openai_batch_vllm.py": 37, "tests/e2e/test_shards.py": 32,
            "tests/unit/engines/test_vllm_engine.py": 25, "tests/e2e/test_openai_batch_run.py": 23,
            "tests/unit/cli/test_console_logs.py": 23, "tests/unit/engines/test_openai_batch.py": 21}


def group_of(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("xdist_group")
    return (marker.args[0] if marker.args else marker.kwargs.get("name")) if marker else None


@pytest.hookimpl(tryfirst=True)  # before `-m` selects: a test marked vllm is deselected by -m "not slow" too
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("vllm") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)
        if item.path.name not in SPREAD and not item.get_closest_marker("xdist_group"):
            item.add_marker(pytest.mark.xdist_group(str(item.path.relative_to(REPO))))
    items.sort(key=lambda item: -WEIGHT_S.get(group_of(item) or "", 0))  # stable: a file keeps its own order


def starts_a_cli(argv: list[str]) -> bool:
    """``python -m uf_experiments[.x]``, an ``uf-experiments*`` console script, or a vLLM server."""
    modules = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a == "-m"]
    return (any(m.startswith(("uf_experiments", "vllm.entrypoints")) for m in modules)
            or any(Path(a).name.startswith("uf-experiments") for a in argv[:1]))


@pytest.fixture(autouse=True)
def _quick_tests_start_no_cli(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test not marked ``slow`` that starts the CLI or a vLLM server in a subprocess fails, so ``-m "not slow"``
    stays quick."""
    if request.node.get_closest_marker("slow"):
        return
    import subprocess

    real_init = subprocess.Popen.__init__

    def guarded(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        argv = [str(a) for a in args] if isinstance(args, (list, tuple)) else [str(args)]
        if starts_a_cli(argv):
            raise RuntimeError(f"{request.node.nodeid} starts {argv[:4]}...: mark it @pytest.mark.slow")
        real_init(self, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", guarded)


@pytest.fixture
def compose() -> Compose:
    """``compose(["pool.size=2", ...]) -> DictConfig``: the composed run config."""
    return compose_config


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory):
    """The built wheel installed without -e into a fresh venv that has no vLLM, torch or transformers
    (tests/helpers/installed.py): ``installed.cli``, ``installed.python``, ``installed.env()``."""
    from filelock import FileLock

    from tests.helpers.installed import Installed, api_only_venv, build_wheel

    # Under pytest-xdist every worker has its own base temp dir; their parent is shared, so the first worker that
    # needs the venv builds it there and the others wait for it and reuse it.
    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else None
    root = shared / "installed-wheel" if shared else tmp_path_factory.mktemp("wheel")
    with FileLock(str(root) + ".lock"):
        done = root / "venv" / "installed.ok"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            api_only_venv(build_wheel(root), root / "venv")
            done.write_text("ok")
    (wheel,) = (root / "dist").glob("uf_experiments-*.whl")
    return Installed(wheel, root / "venv")
