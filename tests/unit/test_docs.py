"""Every ``uf-experiments`` command in the fenced code blocks of README.md and docs/*.md composes, and every
override it gives lands in the composed config (tests/helpers/overrides.py), so the docs cannot drift from conf/.

What is taken: the lines of ``bash`` / ``sh`` / ``shell`` / ``console`` blocks (backslash continuations joined,
``#`` comments dropped, split like a shell would) whose command, after any ``VAR=value`` environment assignments,
is an ``uf-experiments`` console script (``.venv/bin/uf-experiments`` too). ``-m`` lines are composed cell by
cell (each comma-separated sweep value on its own). ``--config-dir DIR`` becomes ``hydra.searchpath=[file://DIR]``
(relative to the repo root); ``$PWD`` is the repo root.

The skip rule: a line is not composed when one of its overrides holds a placeholder the reader fills in: ``...``,
or an upper-case word of ``DIR``, ``NAME``, ``FILE``, ``COL``, ``ASPECT``, ``PATH``, ``OWNER``, ``USER``, ``DATE``,
``TIME`` (``dataset.path=RUN_DIR``, ``output.push_to_hub=USER/NAME``). ``uf-experiments-compare`` and
``uf-experiments-merge`` lines take paths, not overrides: their console script must exist in pyproject.toml and
point at a callable. Any other option (``--help``, ``--version``, an unknown flag) fails the test, so a new kind of
line gets a rule here rather than slipping through.
"""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from tests.conftest import REPO, compose_config
from tests.helpers.overrides import assert_landed, sweep_cells

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"(?ms)^```(?:bash|sh|shell|console)[ \t]*\n(.*?)^```")
ENV_ASSIGNMENT = re.compile(r"^[A-Z_][A-Z0-9_]*=")
PLACEHOLDER = re.compile(r"\.\.\.|(?<![a-z])(?:[A-Z]+_)*(?:DIR|NAME|FILE|COL|ASPECT|PATH|OWNER|USER|DATE|TIME)\b")
# pyproject.toml's [project.scripts] (read by hand: tomllib is 3.11+, the package supports 3.10)
SCRIPTS = dict(re.findall(r'(?m)^([\w-]+) = "([\w.:]+)"$',
                          (REPO / "pyproject.toml").read_text().split("[project.scripts]", 1)[1].split("\n[", 1)[0]))


def commands() -> list[tuple[str, list[str]]]:
    """(where, argv after the environment assignments) of every uf-experiments* line in a shell block."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for block in SHELL_BLOCK.finditer(text):
            first = text[: block.start(1)].count("\n") + 1
            joined, start = "", 0
            for i, line in enumerate(block.group(1).splitlines()):
                start = start if joined else i
                if line.rstrip().endswith("\\"):  # a continuation: the command goes on on the next line
                    joined += line.rstrip()[:-1] + " "
                    continue
                joined += line
                argv = shlex.split(joined, comments=True)
                joined = ""
                while argv and ENV_ASSIGNMENT.match(argv[0]):
                    argv.pop(0)
                if argv and Path(argv[0]).name.startswith("uf-experiments"):
                    found.append((f"{doc.relative_to(REPO)}:{first + start}", [Path(argv[0]).name, *argv[1:]]))
    return found


COMMANDS = commands()
RUNS = [(w, argv[1:]) for w, argv in COMMANDS if argv[0] == "uf-experiments"]
OTHERS = [(w, argv[0]) for w, argv in COMMANDS if argv[0] != "uf-experiments"]


def overrides_of(args: list[str]) -> tuple[list[str], list[Path]]:
    """The overrides of a command line, ``-m`` dropped and ``--config-dir`` turned into hydra.searchpath."""
    overrides, config_dirs, rest = [], [], list(args)
    while rest:
        arg = rest.pop(0)
        if arg in ("-m", "--multirun"):
            continue
        if arg in ("--config-dir", "-cd"):
            config_dirs.append(REPO / rest.pop(0))
            continue
        assert not arg.startswith("-"), f"{arg}: an option test_docs.py has no rule for"
        overrides.append(arg.replace("$PWD", str(REPO)))
    if config_dirs:
        overrides.insert(0, f"hydra.searchpath=[{','.join(f'file://{d}' for d in config_dirs)}]")
    for o in overrides:
        if o.startswith("hydra.searchpath="):
            config_dirs += [Path(p.removeprefix("file://")) for p in o.split("=", 1)[1].strip("[]").split(",")]
    return overrides, config_dirs


def cases() -> list[tuple[str, list[str], list[Path]]]:
    out = []
    for where, args in RUNS:
        overrides, config_dirs = overrides_of(args)
        if any(PLACEHOLDER.search(o.split("=", 1)[-1]) for o in overrides):
            continue  # the skip rule: a value the reader fills in
        out += [(where, cell, config_dirs) for cell in sweep_cells(overrides)]
    return out


CASES = cases()


def test_the_docs_show_commands():
    # guards the extraction: if it stopped matching, the tests below would check nothing
    assert len(RUNS) >= 10, RUNS
    assert len(CASES) >= 15
    where = {w.split(":")[0] for w, _, _ in CASES}
    assert {"README.md", "docs/rejudging.md", "docs/sweeps.md", "docs/your-own-configs.md"} <= where
    flat = {o for _, cell, _ in CASES for o in cell}
    assert {"judge=gpt-4o-mini", "judge.output=json", "pool.size=6", "hydra/launcher=slurm_gpu"} <= flat


@pytest.mark.parametrize(("where", "overrides", "config_dirs"), CASES,
                         ids=[f"{w} {' '.join(o)}".replace(str(REPO), "$PWD") for w, o, _ in CASES])
def test_every_command_in_the_docs_lands(where, overrides, config_dirs):
    cfg = compose_config(overrides, return_hydra_config=True)
    assert_landed(cfg, overrides, where, config_dirs)


@pytest.mark.parametrize(("where", "script"), OTHERS, ids=[f"{w} {s}" for w, s in OTHERS])
def test_other_console_scripts_in_the_docs_exist(where, script):
    assert script in SCRIPTS, f"{where}: {script} is not a console script of pyproject.toml"
    module, _, func = SCRIPTS[script].partition(":")
    assert callable(getattr(importlib.import_module(module), func)), f"{where}: {SCRIPTS[script]}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


@pytest.mark.parametrize("doc", DOCS, ids=[str(d.relative_to(REPO)) for d in DOCS])
def test_links_stay_in_the_repo_and_resolve(doc):
    """A relative link names a file of this repository (the docs travel with it); web links are left alone."""
    for target in LINK.findall(doc.read_text()):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = (doc.parent / target.split("#", 1)[0]).resolve()
        assert path.is_relative_to(REPO) and path.exists(), f"{doc.relative_to(REPO)}: {target}"
