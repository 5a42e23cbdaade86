"""`import jaxnn` splits the host into one CPU device per core, as the launcher does.

Each case is a fresh Python process (the split must happen before JAX starts its backends);
the suite itself runs with `JAXNN_SPLIT_CPU=0` (tests/conftest.py), which these cases remove.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORES = len(os.sched_getaffinity(0))
needs_cores = pytest.mark.skipif(CORES < 2, reason="one core: nothing to split")


def _python(code: str, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAXNN_SPLIT_CPU")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(environ)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )


@needs_cores
@pytest.mark.parametrize(
    "code",
    [
        "import jaxnn, jax; print(jax.device_count())",
        # JAX imported first but not started: the split still applies.
        "import jax; import jaxnn; print(jax.device_count())",
    ],
    ids=["jaxnn-first", "jax-imported-first"],
)
def test_import_splits_the_host_into_one_cpu_device_per_core(code):
    assert _python(code).stdout.split() == [str(CORES)]


def test_the_switch_keeps_one_device():
    result = _python("import jaxnn, jax; print(jax.device_count())", JAXNN_SPLIT_CPU="0")
    assert result.stdout.split() == ["1"]


@needs_cores
def test_a_run_after_jax_started_says_once_how_to_get_every_core():
    code = """
        import jax
        jax.devices()  # JAX starts before jaxnn is imported: one CPU device
        import numpy as np
        import jaxnn
        from jaxnn.config import default_config

        rng = np.random.default_rng(0)
        x, y = rng.normal(size=(40, 4)).astype(np.float32), rng.integers(0, 2, 40)
        data = jaxnn.from_arrays(x[:30], y[:30], x[30:], y[30:], task="classification")
        config = default_config()
        config.model.hidden = (4,)
        config.training.steps = 4
        config.training.eval_every = 2
        config.training.batch_size = 10
        for name in ("first", "second"):
            jaxnn.run(config, f"{WORKDIR}/{name}", data=data, progress=False)
    """
    import tempfile

    with tempfile.TemporaryDirectory() as workdir:
        # The tests' compilation cache (jaxnn.run keeps a cache set through JAX): the second run
        # reads the program the first compiled.
        cache = str(REPO / ".data" / "jax_cache")
        result = _python(code.replace("{WORKDIR}", workdir), JAX_COMPILATION_CACHE_DIR=cache)
    hints = [line for line in result.stderr.splitlines() if "train on every core" in line]
    assert len(hints) == 1, result.stderr
    assert hints[0].startswith("jaxnn: JAX started before jaxnn was imported")
    assert f"XLA_FLAGS=--xla_force_host_platform_device_count={CORES}" in hints[0]
