"""Two processes on the loopback address (2 CPU devices each) train as one run.

They join through `jaxnn.parallel.hosts.initialize_distributed` and train K=6 members over their 4
devices (2 padding members) with cross-process CPU collectives (gloo); the result must equal
the single-process run, and only process 0 writes.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.sharding_cases import arrays, fit
from tests.test_sharding import REPO, TOLERANCE, child_env, free_port

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        "jax_cpu_collectives_implementation" not in jax.config.values,
        reason="this JAX has no cross-process CPU collectives",
    ),
]


def test_two_processes_give_the_single_process_result(tmp_path):
    port = str(free_port())
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.sharding_cases",
                "multiprocess",
                str(tmp_path),
                port,
                pid,
            ],
            cwd=REPO,
            env=child_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for pid in ("0", "1")
    ]
    try:
        outputs = [child.communicate(timeout=400) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for child, (_, stderr) in zip(children, outputs):
        assert child.returncode == 0, stderr[-3000:]

    assert sorted(p.name for p in tmp_path.iterdir()) == ["facts-0.json", "result-0.npz"]
    facts = json.loads((tmp_path / "facts-0.json").read_text())
    assert facts == {"process_count": 2, "device_count": 4, "local_device_count": 2}

    expected = arrays(fit(6, num_devices=1))
    result = np.load(tmp_path / "result-0.npz")
    assert set(result.files) == set(expected)
    for name, values in expected.items():
        np.testing.assert_allclose(result[name], values, **TOLERANCE, err_msg=name)
