"""A single run composed once: the check before the run and the run itself share one composition.

``@hydra.main`` composes a single run's config twice (once to read ``hydra.mode``, once for the run) and the check
before it (``app.precheck``) a third time; each composition costs ~0.5 s here. For a command line that is only
overrides (no ``-m``, no other flag), :func:`run_once` composes once with Hydra's own loader, exactly as
``Hydra.run`` would (the same search path, task name, ``hydra.mode=RUN`` recorded as Hydra records it), checks
that config (a composition error or bad input: one line, exit 2, before the run dir exists) and hands the same
config to Hydra's ``run_job``, which makes the run dir, ``.hydra/`` and the job's logging as always. Anything
else (a sweep, ``--help``, ``--cfg``, ``--config-dir``, a config that sets ``hydra.mode``) goes through
``@hydra.main`` as before.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

from uf_experiments.config import ConfigError


def plain_overrides(argv: Sequence[str]) -> bool:
    """True when the command line is only overrides (``key=value``): a single run this module can take."""
    return all(not a.startswith("-") for a in argv)


def run_once(argv: Sequence[str], task_function: Callable[[Any], Any], conf_dir: str, config_name: str,
             explain: Callable[[BaseException], str]) -> str | None:
    """Compose ``argv``'s config once, check it and run ``task_function`` on it under Hydra's ``run_job``.
    Returns the problem as one line (nothing ran), ``""`` when the job ran, or None when the config sets
    ``hydra.mode`` itself (the caller leaves the command line to ``@hydra.main``)."""
    from hydra._internal.hydra import Hydra
    from hydra._internal.utils import (
        create_automatic_config_search_path,
        detect_calling_file_or_module_from_task_function,
        detect_task_name,
        run_and_report,
    )
    from hydra.core.global_hydra import GlobalHydra
    from hydra.types import RunMode

    from uf_experiments.config import resolve, validate

    calling_file, calling_module = detect_calling_file_or_module_from_task_function(task_function)
    task_name = detect_task_name(calling_file, calling_module)
    search_path = create_automatic_config_search_path(calling_file, calling_module, conf_dir)
    hydra = run_and_report(lambda: Hydra.create_main_hydra2(task_name=task_name, config_search_path=search_path))
    try:
        overrides = list(argv)
        try:
            cfg = hydra.compose_config(config_name=config_name, overrides=overrides, run_mode=RunMode.RUN,
                                       with_log_configuration=True)
        except Exception as exc:  # noqa: BLE001 - any composition error is the user's to fix
            return explain(exc)
        if cfg.hydra.mode is not None:
            if cfg.hydra.mode != RunMode.RUN:
                return None  # a config that asks for a sweep: @hydra.main's path
        else:  # what @hydra.main does for a config that does not say: the override, recorded as Hydra records it
            cfg.hydra.mode = RunMode.RUN
            cfg.hydra.overrides.hydra.append("hydra.mode=RUN")
        try:
            validate(resolve(copy.deepcopy(cfg)))  # resolve works in place: the run gets the config as composed
        except ConfigError as exc:
            return str(exc)
        run_and_report(lambda: _run_job(hydra, cfg, config_name, task_function))
        return ""
    finally:
        GlobalHydra.instance().clear()


def _run_job(hydra: Any, cfg: Any, config_name: str, task_function: Callable[[Any], Any]) -> None:
    """``Hydra.run`` after its composition (hydra 1.3)."""
    from hydra._internal.callbacks import Callbacks
    from hydra.core.utils import run_job
    from hydra.types import HydraContext

    callbacks = Callbacks(cfg)
    callbacks.on_run_start(config=cfg, config_name=config_name)
    ret = run_job(hydra_context=HydraContext(config_loader=hydra.config_loader, callbacks=callbacks),
                  task_function=task_function, config=cfg, job_dir_key="hydra.run.dir", job_subdir_key=None,
                  configure_logging=True)
    callbacks.on_run_end(config=cfg, config_name=config_name, job_return=ret)
    _ = ret.return_value  # raises the job's exception, as Hydra.run does
