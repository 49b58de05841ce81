"""Command line: ``uf-experiments [overrides]`` / ``python -m uf_experiments``. Thin on purpose."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from uf_experiments.cli.once import plain_overrides, run_once
from uf_experiments.config import ConfigError, register_configs
from uf_experiments.core.status import EXIT_CONFIG, EXIT_OK, EXIT_SIGINT, INTERRUPTED

log = logging.getLogger("uf_experiments")

register_configs()


def share_config_store() -> None:
    """Let Hydra's config repositories share the ConfigStore instead of deep-copying it. Hydra builds a repository
    (and deep-copies the store, ~16 ms here) for every composition and, for ``--help``, once per config group
    (~100 here: two thirds of ``--help``'s CPU). The store is a process-wide singleton that composing only reads
    (its ``load`` hands out copies; a repository re-initialized from its search path takes
    ``ConfigStore.instance()`` anyway), so sharing it changes nothing but the time."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.__deepcopy__ = lambda self, memo: self  # type: ignore[attr-defined]


share_config_store()


def short_dirname(name: str, limit: int = 120) -> str:
    """A run dir name from the overrides, shortened with a hash when many overrides would pass the file-name
    limit (255 bytes)."""
    import hashlib

    if len(name) <= limit:
        return name
    return f"{name[: limit - 10]}~{hashlib.sha256(name.encode()).hexdigest()[:8]}"


OmegaConf.register_new_resolver("uf_short", short_dirname, replace=True)


def conf_dir() -> str:
    """The Hydra config root: ``uf_experiments/conf`` inside an installed package (the wheel ships ``conf/`` there),
    else ``conf/`` at the top of a clone (an editable install or ``PYTHONPATH``)."""
    here = Path(__file__).resolve().parent.parent  # the uf_experiments package
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    return str(here / "conf")  # Hydra names the missing config root


CONF_DIR = conf_dir()


SWEEP_EXIT = {"code": EXIT_OK}  # a -m sweep's worst job exit code (set by ExitCodeCallback)
MAIN_PID = {"pid": None}  # the process that runs the command line (main()); a launcher's job may run elsewhere


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def _app(cfg: DictConfig) -> None:
    """One job. A single run exits with its code (README, "Exit codes"); in a -m sweep a job that could not
    finish is recorded in its summary.json and the sweep goes on, except after Ctrl-C / SIGTERM, which stop it."""
    from hydra.core.hydra_config import HydraConfig

    from uf_experiments.pipeline.run import run

    multirun = str(getattr(HydraConfig.get().mode, "name", HydraConfig.get().mode)) == "MULTIRUN"
    try:
        code = run(cfg).get("exit_code", EXIT_OK)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = EXIT_CONFIG
        record_failure(Path(HydraConfig.get().runtime.output_dir), cfg, str(exc), code)
    in_main = MAIN_PID["pid"] == os.getpid()  # the basic launcher runs every cell here, one after another
    if code and (not multirun or (code in INTERRUPTED and in_main)):
        raise SystemExit(code)  # a signal stops the whole sweep; a cell in its own job (SLURM, joblib) just ends
        # and the sweep's exit code comes from its summary.json (ExitCodeCallback)


def record_failure(run_dir: Path, cfg: DictConfig, reason: str, code: int) -> None:
    """A job stopped by bad input before it ran: its summary.json says so (and compare lists it as failed)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps({"experiment": cfg.experiment, "stopped": reason,
                                                      "exit_code": code, "run_dir": str(run_dir)}, indent=2))


class ExitCodeCallback(Callback):
    """After a ``-m`` sweep: the worst exit code of its jobs (from their summary.json) becomes the command's."""

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        codes = []
        for path in Path(config.hydra.sweep.dir).glob("*/summary.json"):
            try:
                codes.append(int(json.loads(path.read_text()).get("exit_code") or 0))
            except (ValueError, OSError):
                continue
        failed = [c for c in codes if c]
        SWEEP_EXIT["code"] = max(failed) if failed else EXIT_OK
        if failed:
            print(f"sweep: {len(failed)} of {len(codes)} jobs did not finish (see their summary.json 'stopped')",
                  file=sys.stderr)


class PlanTotalCallback(Callback):
    """After a ``-m ... plan=true`` sweep: print and save (``plan_total.json``) the grid total of the jobs' plans."""

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        from uf_experiments.metrics.pricing import sweep_total

        sweep = Path(config.hydra.sweep.dir)
        plans = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/plan.json"))]
        if not plans:
            return
        grid = sweep_total(plans)
        (sweep / "plan_total.json").write_text(json.dumps(grid, indent=2))
        t = grid["total"]
        print(f"plan: sweep total over {grid['jobs']} jobs: {t['requests']} requests ({t['cached']} cached, "
              f"{t['to_send']} to send), ~{t['est_prompt_tokens']:,} prompt + {t['est_output_tokens']:,} output "
              f"tokens, est ${t['est_usd']:.4f}  -> {sweep / 'plan_total.json'}")


class CompareCallback(Callback):
    """After a ``-m`` sweep that ran (not ``plan=true``): ``uf-experiments-compare`` on the sweep dir (files in
    ``<sweep dir>/compare/``) and, unless ``tracking=none``, one more W&B run in the sweep's group (job_type
    ``compare``, files in ``<sweep dir>/compare/wandb``) with the compare table, the plots and the grid's totals."""

    def on_multirun_end(self, config: DictConfig, **kwargs: object) -> None:
        if config.get("plan"):
            return
        from uf_experiments.report.sweep import describe_totals, sweep_end
        from uf_experiments.tracking.null import tracking_enabled

        sweep = Path(config.hydra.sweep.dir)
        tracking = config.tracking if tracking_enabled(config.tracking) else None
        try:
            done = sweep_end(sweep, tracking, config.tracking.get("group") or sweep.name)
        except Exception as exc:  # noqa: BLE001 - the cells are done; the report is retried by hand
            print(f"compare: failed ({type(exc).__name__}: {exc}); retry with `uf-experiments-compare {sweep}`",
                  file=sys.stderr)
            return
        if done is None:
            return
        result, run = done
        print(f"compare: {describe_totals(result.totals)} -> {result.out}/ (compare.md, compare.csv, plots)")
        if run is not None:
            print(f"compare: W&B run {run.id} (job_type compare, group {run.group}) in {result.out / 'wandb'}")


NOISE = ("full_key:", "reference_type", "object_type", "Set the environment variable HYDRA_FULL_ERROR")
PLAIN_FLAGS = ("-m", "--multirun")  # other flags (--cfg, --help, -c, ...) go to Hydra unchecked


def one_line(exc: BaseException) -> str:
    """Hydra's multi-line composition error (and its cause) as one line that keeps the key and the options."""
    first = exc
    lines: list[str] = []
    while exc is not None:
        for ln in str(exc).splitlines():
            ln = ln.strip()
            if ln.startswith("Config search path"):
                break
            if ln and not ln.startswith(NOISE) and ln not in lines:
                lines.append(ln)
        exc = exc.__cause__  # type: ignore[assignment]
    if any(ln.startswith("Available options in") for ln in lines):
        cut = next(i for i, ln in enumerate(lines) if ln.startswith("Available options in"))
        return f"{'; '.join(lines[:cut])} (available: {', '.join(lines[cut + 1:])})"
    return "; ".join(lines) + _missing_option_hint(first)


def _missing_option_hint(exc: BaseException) -> str:
    """`` (available: a, b)`` for a group option Hydra could not load without saying what there is
    (``aspect=[nope]``, a list of options), else ``""``."""
    missing = str(getattr(exc, "missing_cfg_file", "") or "")
    group = Path(CONF_DIR) / missing.rpartition("/")[0] if "/" in missing else None
    if group is None or not group.is_dir():
        return ""
    return f" (available: {', '.join(sorted(p.stem for p in group.glob('*.yaml')))})"


def _grid(parsed: list, base_params: dict[str, str] | None) -> list[tuple[str, list[str]]]:
    """``[(key, [override per value])]`` as Hydra's sweeper builds it: ``hydra.sweeper.params`` first, then the
    command line's overrides (a key given on both keeps the params' place and takes the command line's values)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in (base_params or {}).items()])
    grid: dict[str, list[str]] = {}
    for o in [*params, *parsed]:
        grid[o.get_key_element()] = ([f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
                                     if o.is_sweep_override() else [o.input_line])
    return list(grid.items())


def hydra_search_args(argv: list[str]) -> tuple[list[str], str] | None:
    """The overrides and the primary config name a command line composes, as Hydra will: ``--config-dir DIR``
    (``-cd``) becomes a ``hydra.searchpath`` entry (Hydra puts both after our config root), ``--config-name``
    (``-cn``) names the primary config. None when the line has a flag precheck leaves to Hydra (``--help``,
    ``--cfg``, ``--config-path``, ...)."""
    values = {"--config-dir": None, "-cd": None, "--config-name": None, "-cn": None}
    args: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        flag, eq, value = arg.partition("=")
        if flag in values:
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            values[flag] = value
        elif arg.startswith("-") and arg not in PLAIN_FLAGS:
            return None
        elif not arg.startswith("-"):
            args.append(arg)
        i += 1
    extra_dir = values["--config-dir"] or values["-cd"]
    if extra_dir is not None and not Path(extra_dir).is_dir():
        return None  # Hydra names the missing directory
    if extra_dir:
        extra = f"file://{Path(extra_dir).resolve()}"
        given = next((a for a in args if a.split("=", 1)[0] == "hydra.searchpath"), None)
        if given is None:
            args.append(f"hydra.searchpath=[{extra}]")
        else:  # one searchpath override: the --config-dir entry first, as Hydra orders them
            args[args.index(given)] = f"hydra.searchpath=[{extra},{given.split('=', 1)[1].strip().lstrip('[')}"
    return args, values["--config-name"] or values["-cn"] or "config"


def precheck(argv: list[str], max_cells: int = 256) -> str | None:
    """Compose and validate the config of every job the command line asks for, as Hydra will, before any job
    starts: the first problem as one line, or None.

    A ``-m`` grid (the command line's values and any ``hydra.sweeper.params``) is checked cell by cell (up to
    ``max_cells``; a larger grid is checked value by value): a cell that composes but cannot run is left to the
    sweeper to skip (``uf_experiments.config.cells``); a composition error, a missing key or token, or a grid with
    no cell that can run is the problem."""
    from itertools import product

    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from uf_experiments.config import resolve, validate
    from uf_experiments.config.cells import SkippedCell, cell_problem, no_valid_cell, swept_keys

    composed = hydra_search_args(argv)
    if composed is None:
        return None
    args, config_name = composed
    multirun = any(a in PLAIN_FLAGS for a in argv)
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception as exc:  # noqa: BLE001 - Hydra's own parse error, shown as one line
        return one_line(exc)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        grid = _grid(parsed, None)
        if multirun:  # a grid a config carries (experiment=pool_sweep) is swept too
            try:
                base = compose(config_name, overrides=[c[0] for _, c in grid], return_hydra_config=True)
            except Exception as exc:  # noqa: BLE001 - any composition error is the user's to fix
                return one_line(exc)
            params = base.hydra.sweeper.get("params")
            grid = _grid(parsed, {str(k): str(v) for k, v in params.items()} if params else None)
        choices = [c for _, c in grid]
        cells = 1
        for c in choices:
            cells *= len(c)
        whole = cells <= max_cells
        if whole:
            candidates = [list(cell) for cell in product(*choices)]
        else:
            firsts = [c[0] for c in choices]
            candidates = [firsts] + [firsts[:i] + [v] + firsts[i + 1 :] for i, c in enumerate(choices) for v in c[1:]]
        swept = swept_keys(candidates)
        skipped: list[SkippedCell] = []
        for overrides in candidates:
            try:
                cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
            except Exception as exc:  # noqa: BLE001 - any composition error is the user's to fix
                return one_line(exc)
            try:
                if not multirun:
                    validate(resolve(cfg))
                    continue
                problem = cell_problem(cfg)
            except ConfigError as exc:  # a single run's problem, or a SetupError (the same in every cell)
                return str(exc)
            if problem:
                skipped.append(SkippedCell(overrides, problem))
        if multirun and whole and len(skipped) == len(candidates):
            return no_valid_cell(skipped, swept)
    return None


def ensure_plugins_importable() -> None:
    """Hydra finds plugins by scanning the directories of the ``hydra_plugins`` namespace package: make ours
    (``hydra_plugins/uf_experiments_sweeper``, beside the ``uf_experiments`` package) be in one of them. A wheel
    installs it there; an editable install serves it through an import hook that Hydra's scan does not see, so
    the clone's top directory is added to ``sys.path`` (the namespace package's directories follow it)."""
    root = Path(__file__).resolve().parents[2]  # a clone's top, or site-packages
    try:
        import hydra_plugins

        scanned = [Path(p) for p in hydra_plugins.__path__]
    except ImportError:
        scanned = []
    if not any((p / "uf_experiments_sweeper").is_dir() for p in scanned) and str(root) not in sys.path:
        sys.path.append(str(root))


def print_version(argv: list[str]) -> bool:
    """``uf-experiments --version``: print the package version (before Hydra, which has no such flag)."""
    if "--version" not in argv:
        return False
    from uf_experiments import package_version

    print(f"uf-experiments {package_version()}")
    return True


def main() -> None:
    MAIN_PID["pid"] = os.getpid()
    if print_version(sys.argv[1:]):
        return
    ensure_plugins_importable()
    argv = sys.argv[1:]
    try:
        problem = None
        if plain_overrides(argv):  # a single run: composed once, checked, run (cli/once.py)
            problem = run_once(argv, _app.__wrapped__, CONF_DIR, "config", one_line)
        if problem is None:  # anything else: checked, then Hydra's own path
            problem = precheck(argv)
            if not problem:
                _app()
    except KeyboardInterrupt:  # before the run's own handler was in place (loading, building models)
        print("interrupted", file=sys.stderr)
        sys.exit(EXIT_SIGINT)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    if SWEEP_EXIT["code"]:
        sys.exit(SWEEP_EXIT["code"])


if __name__ == "__main__":
    main()
