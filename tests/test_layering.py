"""The package's layering, read from its source: no import cycle, and a core that loads no shell.

The import graph is built with ``ast`` from every module under ``augnes_jax/``, counting imports
at module level and inside functions alike (a function-level import still closes a cycle at run
time), and leaving out ``if TYPE_CHECKING:`` blocks, which never run.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "augnes_jax"

# The jittable core: pure functions of arrays, no I/O. It may import only itself.
CORE = {
    "augnes_jax.buffer",
    "augnes_jax.epoch",
    "augnes_jax.planner",
    "augnes_jax.regret",
    "augnes_jax.rollout",
    "augnes_jax.statistics",
    "augnes_jax.variants",
    "augnes_jax.world_model",
    "augnes_jax.world_model_eval",
    "augnes_jax.world_model_net",
    "augnes_jax.world_model_normalizer",
    "augnes_jax.world_model_train",
} | {  # every environment module; the command line (python -m augnes_jax.envs) is shell
    "augnes_jax.envs" + ("" if p.stem == "__init__" else f".{p.stem}")
    for p in (PACKAGE / "envs").glob("*.py") if p.stem != "__main__"
}

# Libraries only the shell may load.
SHELL_LIBRARIES = ("orbax", "tensorboard", "tensorboardX", "omegaconf", "matplotlib", "rich", "polars",
                   "prometheus_client")


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST):
    """Yields every node except those under ``if TYPE_CHECKING:``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports_of(path: Path, modules: set[str], package_dir: Path = PACKAGE) -> set[str]:
    """Returns the package modules that the module at `path` imports, resolved against `modules`."""
    name = module_name(path, package_dir)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)  # `from pkg import submodule`
    return {m for m in found if m in modules and m != name}


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    paths = sorted(package.rglob("*.py"))
    modules = {module_name(p, package) for p in paths}
    return {module_name(p, package): imports_of(p, modules, package) for p in paths}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Returns the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle_and_a_function_level_import(tmp_path):
    pkg = tmp_path / "augnes_jax"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from augnes_jax import b\n")
    (pkg / "b.py").write_text("def f():\n    from augnes_jax.c import g\n")
    (pkg / "c.py").write_text("import augnes_jax.a\nfrom typing import TYPE_CHECKING\n"
                              "if TYPE_CHECKING:\n    from augnes_jax import d\n")
    (pkg / "d.py").write_text("from . import c\n")
    graph = import_graph(pkg)
    assert graph["augnes_jax.c"] == {"augnes_jax.a"}  # the TYPE_CHECKING import does not count
    assert graph["augnes_jax.d"] == {"augnes_jax", "augnes_jax.c"}
    assert cycles(graph) == [["augnes_jax.a", "augnes_jax.b", "augnes_jax.c"]]


def test_the_package_has_no_import_cycle():
    graph = import_graph()
    assert len(graph) > 30
    assert cycles(graph) == []


def test_the_core_imports_only_the_core():
    graph = import_graph()
    assert CORE <= set(graph), sorted(CORE - set(graph))
    leaks = {m: sorted(graph[m] - CORE - {"augnes_jax"}) for m in sorted(CORE) if graph[m] - CORE - {"augnes_jax"}}
    assert leaks == {}


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.timeout(240)
def test_importing_the_core_loads_none_of_the_shells_libraries():
    """Each core module in a fresh interpreter, against what jax, flax and optax load on their own."""
    baseline = _loaded_after("import jax, jax.numpy, flax.linen, flax.struct, optax, chex, numpy")
    core = _loaded_after("\n".join(f"import {m}" for m in sorted(CORE)))

    def roots(mods: set[str]) -> set[str]:
        return {m.split(".")[0] for m in mods}

    added = roots(core - baseline)
    assert added <= {"augnes_jax"}, sorted(added - {"augnes_jax"})
    # and the libraries the shell needs stay unloaded, except where flax itself loads one
    assert {lib for lib in SHELL_LIBRARIES if lib in roots(core) and lib not in roots(baseline)} == set()
    assert not any(m.startswith("augnes_jax.") and m not in CORE for m in core), sorted(
        m for m in core if m.startswith("augnes_jax.") and m not in CORE)


def test_the_package_import_is_lazy_and_every_public_name_resolves():
    loaded = _loaded_after("import augnes_jax")
    assert not {m for m in loaded if m.startswith("augnes_jax.")}
    code = ("import augnes_jax, json\n"
            "print(json.dumps([n for n in augnes_jax.__all__ if getattr(augnes_jax, n, None) is None]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []
