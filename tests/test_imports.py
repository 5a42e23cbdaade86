"""The package's layering: no import cycles, imports only point down the layers, and the
modules that must load before JAX starts do not load it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "jaxnn"

# layer -> the layers (module name prefixes) it may import at module level
ALLOWED = {
    "jaxnn.errors": (),
    "jaxnn.config": ("jaxnn.config", "jaxnn.errors"),
    "jaxnn.nn": ("jaxnn.nn", "jaxnn.config", "jaxnn.errors"),
    "jaxnn.data": ("jaxnn.data", "jaxnn.config", "jaxnn.errors"),
    "jaxnn.parallel": ("jaxnn.parallel", "jaxnn.data", "jaxnn.config", "jaxnn.errors"),
    # the resolved run's value, the checks, then the front end that resolves a run with them
    "jaxnn.run_spec": ("jaxnn.nn", "jaxnn.data", "jaxnn.config", "jaxnn.errors"),
    "jaxnn.validation": (
        "jaxnn.run_spec",
        "jaxnn.nn",
        "jaxnn.data",
        "jaxnn.config",
        "jaxnn.errors",
    ),
    "jaxnn.front_end": (
        "jaxnn.validation",
        "jaxnn.run_spec",
        "jaxnn.nn",
        "jaxnn.data",
        "jaxnn.config",
        "jaxnn.errors",
    ),
}
NEVER_FROM_CORE = ("jaxnn.io", "jaxnn.reporting", "jaxnn.analysis", "jaxnn.runner")


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """The jaxnn modules a module imports at module level, type-only ones (under `if
    TYPE_CHECKING:`) included: a type names a module as surely as a call does. Imports inside
    functions are left out (they run late, on purpose)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body:
        for inner in ast.walk(node) if not isinstance(node, ast.FunctionDef | ast.ClassDef) else []:
            if isinstance(inner, ast.ImportFrom) and inner.module and inner.level == 0:
                for alias in inner.names:
                    candidate = f"{inner.module}.{alias.name}"
                    found.add(candidate if candidate in MODULES else inner.module)
            elif isinstance(inner, ast.Import):
                found.update(alias.name for alias in inner.names)
    return {name for name in found if name == "jaxnn" or name.startswith("jaxnn.")}


GRAPH = {name: _imports(path) - {name} for name, path in MODULES.items()}


def test_no_module_imports_itself_through_a_cycle():
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = [*chain[chain.index(name) :], name]
            pytest.fail(f"import cycle: {' -> '.join(cycle)}")
        state[name] = 1
        for dependency in sorted(GRAPH.get(name, ())):
            if dependency in MODULES:
                visit(dependency, [*chain, name])
        state[name] = 2

    for name in sorted(GRAPH):
        visit(name, [])


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n != "jaxnn"))
def test_imports_point_down_the_layers(name):
    imported = GRAPH[name] - {"jaxnn"}
    for layer, allowed in ALLOWED.items():
        if name == layer or name.startswith(f"{layer}."):
            wrong = sorted(m for m in imported if not m.startswith(allowed or ("\0",)))
            assert not wrong, f"{name} ({layer}) imports {wrong}"
    if name.startswith("jaxnn.core"):
        wrong = sorted(m for m in imported if m.startswith(NEVER_FROM_CORE))
        assert not wrong, f"{name} imports {wrong}: core never imports io or reporting"


def test_type_only_imports_are_counted(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from jaxnn.core import loop\n"
    )
    assert _imports(path) == {"jaxnn.core.loop"}


def test_the_config_schema_is_a_leaf():
    assert GRAPH["jaxnn.config.schema"] == set()


def _fresh_import(statement: str) -> str:
    code = f"import sys; {statement}; print('jax' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_modules_that_run_before_jax_starts_do_not_import_it():
    assert _fresh_import("import jaxnn") == "False"
    assert _fresh_import("from jaxnn.parallel import cpu_devices") == "False"
    assert _fresh_import("import jaxnn.config.schema") == "False"


def test_every_module_imports_in_a_fresh_process():
    # The cycle check above reads the imports; this one runs them (deepest names first).
    names = sorted(MODULES, reverse=True)
    code = "import importlib\n" + "\n".join(f"importlib.import_module({name!r})" for name in names)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_public_api_resolves_every_name():
    import jaxnn

    for name in jaxnn.__all__:
        assert getattr(jaxnn, name) is not None, name
