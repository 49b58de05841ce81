"""Every override a YAML comment in conf/ shows actually works: it composes, in the context of its file, and its
value lands in the composed config (tests/helpers/overrides.py: ``key=value`` holds the value, ``group=option`` is
the choice in ``hydra.runtime.choices``, ``+key=v`` is added, lists and dicts compared after parsing).

A comment's ``key=value`` tokens (``+key=v``, ``hydra/launcher=x`` too) are composed together, as one command
line, over the file's own selection (``pool=served`` for conf/pool/served.yaml, ...). Alternatives written
``key=a | b`` or ``key=a|b`` are composed one at a time; a ``-m`` value ``a,b`` is composed cell by cell.
Environment variables (``OPENAI_API_KEY=...``, upper case) are not overrides and are skipped.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from tests.conftest import CONF_DIR, compose_config
from tests.helpers.overrides import assert_landed

# An override token: [+~]key=value, key lower case (dotted, or a group path like hydra/launcher).
TOKEN = re.compile(
    r"(?<![\w.$/-])([+~]{0,2}[a-z_][\w.@/-]*="  # the key
    r"(?:\[[^\]]*\]|[^\s()`]+)"  # a list, or a plain value (up to a space, a parenthesis or a backquote)
    r"(?:\s*\|\s*[\w./-]+(?=[:;,.]?(?:\s|$|\))))*)"  # `| other | values`
)
# The selection that makes a file's comments meaningful (default: the file's own group option).
CONTEXT = {
    "config.yaml": [],
    "model/base/tiny.yaml": ["pool=tiny"],
    "execution/ray.yaml": ["execution=ray", "pool=tiny"],  # its examples name the tiny pool's models
    "model/base/smollm2.yaml": [],  # the default demo's pool
    "model/base/vllm_gpu.yaml": ["pool=seed"],
    "model/base/openai_api.yaml": ["judge=served", "judge.model.path=some-model"],
}


def context(path: Path) -> list[str]:
    rel = path.relative_to(CONF_DIR).as_posix()
    if rel in CONTEXT:
        return CONTEXT[rel]
    group, option = path.parent.relative_to(CONF_DIR).as_posix(), path.stem
    if group == "aspect":
        return [f"aspect=[{option}]"]
    if group == "model":
        return ["pool=seed"] if "base/vllm_gpu@_here_" in path.read_text() else [f"model@judge.model={option}"]
    return [f"{group}={option}"]


def alternatives(token: str) -> list[str]:
    """``key=a | b`` / ``key=a|b`` -> [``key=a``, ``key=b``]; ``key=a,b`` (a sweep) -> [``key=a``, ``key=b``]."""
    key, value = token.split("=", 1)
    value = re.sub(r"(?<=[\w\]])[:;,.]$", "", value)  # closing punctuation of the sentence, not a "..." value
    if value.startswith("["):
        return [f"{key}={value}"]
    return [f"{key}={v.strip()}" for v in re.split(r"\s*[|,]\s*", value) if v.strip()]


def comment_cases() -> list[tuple[str, list[str]]]:
    """(where, overrides) for every combination of the alternatives of every comment with an override."""
    cases = []
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if "#" not in line:
                continue
            comment = line.split("#", 1)[1]
            tokens = [alternatives(t) for t in TOKEN.findall(comment)]
            for combo in itertools.product(*tokens) if tokens else ():
                where = f"{path.relative_to(CONF_DIR)}:{lineno}"
                cases.append((where, [*context(path), *combo]))
    return cases


CASES = comment_cases()


def test_the_comments_show_overrides():
    # guards the extraction: if the regex stopped matching, the test below would check nothing
    assert len({where for where, _ in CASES}) >= 60
    flat = {o for _, overrides in CASES for o in overrides}
    assert {"pool.size=2", "judge.output=text", "tracking.mode=online", "hydra.launcher.n_jobs=4"} <= flat


@pytest.mark.parametrize(("where", "overrides"), CASES, ids=[f"{w} {' '.join(o)}" for w, o in CASES])
def test_every_override_in_a_comment_lands(where, overrides):
    cfg = compose_config(overrides, return_hydra_config=True)
    assert_landed(cfg, overrides, where)
