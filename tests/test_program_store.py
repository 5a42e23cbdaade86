"""Compiled programs stored on disk (`jaxnn.core.program_store`): read back by a later process
without tracing, lowering or compiling, and never read back for another program.

The estimators' fits are the user-level case: a second process's first fit of the same shapes
lowers nothing and trains exactly as the first process did.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxnn.core import compile_cache, program_store
from jaxnn.sklearn.network import SklearnMLP

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def store(empty_program_store):
    return empty_program_store / program_store.SUBDIRECTORY


def _counting(traces: list[str]):
    def double_plus(x, y):
        traces.append("traced")
        return 2 * x + y

    return double_plus


def test_a_stored_program_is_read_back_without_tracing(store):
    traces: list[str] = []
    x, y = np.arange(3, dtype=np.float32), np.float32(1)
    first = program_store.stored_jit(_counting(traces), "test.double_plus")
    np.testing.assert_array_equal(first(x, y), 2 * x + 1)
    assert traces == ["traced"] and len(list(store.iterdir())) == 1
    # A new program of the same name, as in another process: read from disk, not traced.
    again = program_store.stored_jit(_counting(traces), "test.double_plus")
    np.testing.assert_array_equal(again(x, y), 2 * x + 1)
    np.testing.assert_array_equal(again.lower(x, y).compile()(x, y), 2 * x + 1)
    assert traces == ["traced"]


def test_other_shapes_names_or_options_are_other_programs(store):
    traces: list[str] = []
    x = np.arange(3, dtype=np.float32)
    program_store.stored_jit(_counting(traces), "test.a")(x, np.float32(1))
    program_store.stored_jit(_counting(traces), "test.a")(np.arange(4.0, dtype=np.float32), 1.0)
    program_store.stored_jit(_counting(traces), "test.b")(x, np.float32(1))
    options = {"xla_backend_optimization_level": 0}
    program_store.stored_jit(_counting(traces), "test.a", compiler_options=options)(x, 1.0)
    with jax.enable_x64(True):
        program_store.stored_jit(_counting(traces), "test.a")(x, np.float32(1))
    assert len(traces) == 5 and len(list(store.iterdir())) == 5


def test_an_unreadable_entry_is_compiled_again_and_stored_whole(store):
    traces: list[str] = []
    x = np.arange(3, dtype=np.float32)
    program_store.stored_jit(_counting(traces), "test.c")(x, np.float32(1))
    (entry,) = store.iterdir()
    entry.write_bytes(b"not a program")
    again = program_store.stored_jit(_counting(traces), "test.c")
    np.testing.assert_array_equal(again(x, np.float32(1)), 2 * x + 1)
    compiled = len(traces)
    assert compiled > 1
    third = program_store.stored_jit(_counting(traces), "test.c")
    np.testing.assert_array_equal(third(x, np.float32(1)), 2 * x + 1)
    assert len(traces) == compiled


def test_a_program_read_from_jaxs_own_cache_is_compiled_afresh_for_the_store(store):
    # Serialised again, such an executable can lack some kernels' code (a later process then
    # fails to run it): after a hit of JAX's cache the program compiles under a new name,
    # which JAX's cache cannot hold, and that compile is the one stored.
    traces: list[str] = []

    def from_jax_cache(x):
        if not traces:
            program_store._count_cache_hit("/jax/compilation_cache/cache_hits")
        traces.append("traced")
        return x + 1

    program = program_store.stored_jit(from_jax_cache, "test.d")
    assert program(np.float32(1)) == 2
    assert len(traces) == 2 and len(list(store.iterdir())) == 1


def test_nothing_is_stored_without_jaxs_cache(monkeypatch, tmp_path):
    monkeypatch.setattr(compile_cache, "configured_directory", lambda: None)
    traces: list[str] = []
    program = program_store.stored_jit(_counting(traces), "test.e")
    np.testing.assert_array_equal(program(np.float32(1), np.float32(1)), 3)
    assert traces == ["traced"]


class UserBody(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.Dense(4)(x)


def test_only_jaxnns_own_modules_are_storable():
    # A user's module can change between processes under the same repr: never stored.
    assert program_store.storable(SklearnMLP(hidden=(8,), activation="relu", num_outputs=3))
    assert not program_store.storable(UserBody())


FIT = textwrap.dedent(
    """
    import json, sys, warnings
    import jax
    from sklearn.datasets import load_iris
    import jaxnn
    from jaxnn.sklearn import MLPClassifier, training

    assert jax.local_device_count() == 2
    jaxnn.enable_compilation_cache(sys.argv[1])
    lowered = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: lowered.append(event)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None
    )
    warnings.simplefilter("ignore")
    x, y = load_iris(return_X_y=True)
    fits = {}
    # The members on one device (the small fit's placement), then split over both.
    for split, work in (("one device", training.SPLIT_WORK), ("split", 0)):
        training.SPLIT_WORK = work
        lowered.clear()
        fit = MLPClassifier((12,), n_restarts=4, max_iter=15, random_state=0).fit(x, y)
        fits[split] = {"lowered": len(lowered), "loss_curve": fit.loss_curve_}
    print(json.dumps(fits))
    """
)


def _fit_in_a_fresh_process(cache: Path) -> dict:
    # Two CPU devices, as `import jaxnn` makes on a two-core machine (the tests have one).
    env = {**os.environ, "JAXNN_SPLIT_CPU": "1", "PYTHONPATH": str(REPO)}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    done = subprocess.run(
        [sys.executable, "-c", FIT, str(cache)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_second_process_fits_without_lowering_and_trains_the_same(tmp_path):
    first = _fit_in_a_fresh_process(tmp_path)
    second = _fit_in_a_fresh_process(tmp_path)
    for split in ("one device", "split"):
        assert first[split]["lowered"] >= 1  # the members' epoch, at least
        assert second[split]["lowered"] == 0
        assert second[split]["loss_curve"] == first[split]["loss_curve"]
