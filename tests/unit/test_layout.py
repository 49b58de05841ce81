"""The package's import graph, read from its source (function-level imports count): no circles, and dependencies
point one way (docs/architecture.md, "Layers"): cli -> pipeline -> the stages and services -> core, config.

The graph is built with ``ast`` from every module under ``uf_experiments/``, nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "uf_experiments"

# Each subpackage may import only these others (besides itself). A stage never imports the pipeline that runs
# it; engines import no pipeline, metrics or report code; core and config are the bottom.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "config": {"core"},
    "tiny": set(),
    "models": set(),
    "resources": set(),
    "generation": {"core", "config"},
    "data": {"core", "config"},
    "judge": {"core", "config"},
    "engines": {"core", "config", "tiny", "models"},
    "execution": {"core", "config", "engines"},
    "metrics": {"core", "config", "engines"},
    "outputs": {"core", "config", "metrics", "tracking"},
    "tracking": {"core", "config", "metrics"},
    "report": {"core", "config", "metrics", "outputs", "tracking"},
    "pipeline": {"core", "config", "data", "generation", "judge", "engines", "execution", "metrics", "outputs",
                 "tracking", "tiny"},
    "cli": {"core", "config", "pipeline", "report", "tracking", "metrics", "outputs", "engines"},
}


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package's modules it imports (``from a.b import c`` counts ``a.b`` and, if a module, ``a.b.c``)."""
    files = {module_name(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        deps: set[str] = set()
        is_init = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = name.split(".") if is_init else name.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join([*pkg, *([node.module] if node.module else [])])
                targets = [base, *(f"{base}.{a.name}" for a in node.names)]
            else:
                continue
            deps.update(t for t in targets if t in files and t != name and not name.startswith(t + "."))
        graph[name] = deps
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer(module: str) -> str | None:
    """The subpackage a module belongs to (None for the package's own ``__init__`` and ``__main__``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and not parts[1].startswith("__") else None


def test_the_import_graph_has_no_circles() -> None:
    assert circles(import_graph()) == []


def test_dependencies_point_one_way() -> None:
    wrong = sorted(f"{m} imports {d}" for m, deps in import_graph().items() for d in deps
                   if layer(m) and layer(d) and layer(d) != layer(m) and layer(d) not in ALLOWED[layer(m)])
    assert wrong == []


def test_every_subpackage_is_placed_in_a_layer() -> None:
    subpackages = {p.parent.name for p in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(ALLOWED)
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]  # no loose modules


def test_no_module_is_over_400_lines() -> None:
    long = {module_name(p): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


@pytest.mark.parametrize("graph, expected", [
    ({"a": {"b"}, "b": {"a"}, "c": set()}, [["a", "b"]]),
    ({"a": {"b"}, "b": {"c"}, "c": set()}, []),
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
])
def test_circles_finds_what_it_should(graph: dict[str, set[str]], expected: list[list[str]]) -> None:
    assert circles(graph) == expected


def test_the_graph_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "uf_experiments"
    (pkg / "engines").mkdir(parents=True)
    (pkg / "pipeline").mkdir()
    for init in (pkg, pkg / "engines", pkg / "pipeline"):
        (init / "__init__.py").write_text("")
    (pkg / "engines" / "x.py").write_text("def f():\n    from uf_experiments.pipeline import run\n")
    (pkg / "pipeline" / "run.py").write_text("from ..engines import x\n")
    graph = import_graph(pkg)
    assert graph["uf_experiments.engines.x"] == {"uf_experiments.pipeline", "uf_experiments.pipeline.run"}
    assert graph["uf_experiments.pipeline.run"] == {"uf_experiments.engines", "uf_experiments.engines.x"}
    assert circles(graph) == [["uf_experiments.engines.x", "uf_experiments.pipeline.run"]]
