"""Shared pytest fixtures: a prepared-data cache shared by all workers, dataset configs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import ml_collections
import pytest

# Tests run on CPU; set before any test module imports jax (none of the imports above do).
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Launches in child processes compile without jaxnn's cache (never into the user's own): a
# child killed while it writes an entry would tear it. Forked launches, never killed, share the
# tests' cache (tests/forked_launch.py); a test of the cache, or a child given
# JAX_COMPILATION_CACHE_DIR, sets its own. A child script that calls jaxnn.run is given
# JAX_COMPILATION_CACHE_DIR (jaxnn keeps a cache set through JAX).
os.environ["JAXNN_COMPILATION_CACHE"] = "off"
# `import jaxnn` would split a worker into one CPU device per core; the suite's workers already
# share the cores (tests/test_cpu_split.py checks the split in fresh processes).
os.environ["JAXNN_SPLIT_CPU"] = "0"

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> str:
    """`<repo>/.data/tfds` with every local data set prepared in it before the first test that
    asks for it (under the preparation lock, once for all xdist workers): a launch in a test then
    prints what it would print on a user's second run, not the one-time `preparing` line."""
    from jaxnn.data.builders.source import BUILDERS, prepare

    root = str(REPO / ".data" / "tfds")
    for name in BUILDERS:
        prepare(name, root)
    return root


@pytest.fixture
def dataset_config(data_dir: str) -> Callable[..., ml_collections.ConfigDict]:
    """Factory: dataset_config(name, **overrides) -> a config.dataset ConfigDict."""

    def make(name: str, **overrides: object) -> ml_collections.ConfigDict:
        from jaxnn.config.schema import default_config

        fields = {**default_config().dataset.to_dict(), "name": name, "data_dir": data_dir}
        unknown = set(overrides) - set(fields)
        if unknown:
            raise TypeError(f"unknown dataset fields {sorted(unknown)}")
        fields.update(overrides)
        return ml_collections.ConfigDict(fields)

    return make


@pytest.fixture(scope="session", autouse=True)
def compilation_cache() -> None:
    """Share compiled programs between tests (and test runs) through JAX's persistent cache.

    Many tests train the same tiny programs; the cache turns their repeated compiles into reads.
    """
    import jax

    jax.config.update("jax_compilation_cache_dir", str(REPO / ".data" / "jax_cache"))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A fault trial (`faults`) is always in the slow tier: `make test-slow` (`-m slow`) runs
    every test `make faults` runs."""
    for item in items:
        if item.get_closest_marker("faults") and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def empty_program_store(tmp_path, monkeypatch):
    """An empty store of compiled programs (`jaxnn.core.program_store`) in tmp_path, whose keys
    this test alone makes: JAX's cache, kept between test runs, has compiled none of them (a
    hit there would compile a program once more). Returns the directory."""
    from jaxnn.core import compile_cache, program_store

    monkeypatch.setattr(compile_cache, "configured_directory", lambda: tmp_path)
    process = program_store._process()
    monkeypatch.setattr(program_store, "_process", lambda: f"{process}|{tmp_path}")
    return tmp_path
