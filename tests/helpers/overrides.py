"""Did an override land? The value check shared by the tests of the commands in the docs and in conf/ comments.

An override is parsed with Hydra's own override grammar (quoting, lists, dicts, ``null``, numbers), then looked up
in a config composed with ``return_hydra_config=True``:

- ``key=value`` / ``+key=value`` / ``++key=value``: the composed value at ``key`` equals the parsed value (nodes
  compared as plain containers, enums by name or value, ``5`` equal to ``5.0``);
- ``group=option`` (``pool=served``, ``hydra/launcher=joblib_local``, ``model@judge.model=gpt_4o``): the choice
  Hydra recorded in ``hydra.runtime.choices``; a group given a list of options (``aspect=[honesty,truthfulness]``)
  is checked by the keys of the node the options fill, in order;
- ``~key``: the key is gone.

``sweep_cells`` splits a ``-m`` command line's comma-separated sweep values into one override list per cell.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from enum import Enum
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override, OverrideType
from omegaconf import DictConfig, OmegaConf

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
ABSENT = object()


def parse(override: str) -> Override:
    return OverridesParser.create().parse_overrides([override])[0]


def sweep_cells(overrides: Sequence[str]) -> list[list[str]]:
    """``["a=1,2", "b=x"]`` -> ``[["a=1", "b=x"], ["a=2", "b=x"]]``: every cell of a ``-m`` grid (a list value
    such as ``[x,y]`` is one value, not a sweep)."""
    choices = []
    for o in overrides:
        parsed = parse(o)
        if parsed.is_sweep_override():
            choices.append([f"{_prefix(parsed)}={v}" for v in parsed.sweep_string_iterator()])
        else:
            choices.append([o])
    return [list(cell) for cell in itertools.product(*choices)]


def _prefix(o: Override) -> str:
    """The override's left-hand side as written: ``+key``, ``group@package``, ``~key``..."""
    sign = {OverrideType.ADD: "+", OverrideType.FORCE_ADD: "++", OverrideType.DEL: "~"}.get(o.type, "")
    return f"{sign}{o.key_or_group}" + (f"@{o.package}" if o.package is not None else "")


def _key(o: Override) -> str:
    return o.key_or_group + (f"@{o.package}" if o.package is not None else "")


def is_group(key: str, config_dirs: Sequence[Path] = ()) -> bool:
    """A config group (a folder of options in conf/ or a user config dir), or one of Hydra's own groups."""
    return key.startswith("hydra/") or any((d / key).is_dir() for d in (CONF_DIR, *config_dirs))


def not_landed(cfg: DictConfig, override: str, config_dirs: Sequence[Path] = ()) -> str | None:
    """Why ``override`` did not land in ``cfg`` (composed with ``return_hydra_config=True``); None when it did."""
    o = parse(override)
    if o.is_sweep_override():
        raise ValueError(f"{override} is a sweep: check each value of sweep_cells([...])")
    if o.type is OverrideType.DEL:
        got = _select(cfg, o.key_or_group)
        return None if got is ABSENT else f"{override}: {o.key_or_group} is still there ({got!r})"
    want = _plain(o.value())
    if is_group(o.key_or_group, config_dirs):
        name = o.key_or_group + (f"@{o.package}" if o.package is not None else "")
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
        if name in choices:
            got = choices[name]
        else:  # a list of options fills one node, keyed by option (aspect=[a,b] -> cfg.aspect.a, cfg.aspect.b)
            node = _select(cfg, o.package or o.key_or_group.replace("/", "."))
            got = list(node) if isinstance(node, dict) else node
        return None if _same(got, want) else f"{override}: the choice of {name} is {got!r}, not {want!r}"
    got = _select(cfg, o.key_or_group)
    if got is ABSENT:
        return f"{override}: {o.key_or_group} is not in the composed config"
    return None if _same(got, want) else f"{override}: {o.key_or_group} is {got!r}, not {want!r}"


def assert_landed(cfg: DictConfig, overrides: Sequence[str], where: str = "", config_dirs: Sequence[Path] = ()) -> None:
    """Every override landed; of several for one key, the last (the one that wins) is checked."""
    last = {_key(parse(o)): o for o in overrides}
    problems = [p for o in last.values() if (p := not_landed(cfg, o, config_dirs))]
    assert not problems, f"{where}: " + "; ".join(problems)


def _select(cfg: DictConfig, key: str) -> Any:
    value = OmegaConf.select(cfg, key, default=ABSENT, throw_on_missing=False)
    return _plain(value)


def _plain(value: Any) -> Any:
    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=False, enum_to_str=True)
    if isinstance(value, Enum):
        return value.name
    return value


def _same(got: Any, want: Any) -> bool:
    if isinstance(got, dict) and isinstance(want, dict):
        return got.keys() == want.keys() and all(_same(got[k], want[k]) for k in got)
    if isinstance(got, (list, tuple)) and isinstance(want, (list, tuple)):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, bool) or isinstance(want, bool):
        return got is want or (isinstance(got, str) and got.lower() == str(want).lower())
    if isinstance(got, (int, float)) and isinstance(want, (int, float)):
        return float(got) == float(want)
    if isinstance(got, str) and not isinstance(want, str) and want is not None:
        return got == str(want)  # a string field given a value the grammar reads as a number (a version, an id)
    return got == want
