"""Two launcher processes (2 CPU devices each) share one workdir: process 0 alone writes files
and prints; both are killed mid-run and relaunched, and end exactly like an uninterrupted pair.

Behind the `slow` and `faults` markers (`make test-slow`, `make faults`): each pair of launches takes tens of seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path

import jax
import pytest

from tests.test_faults import Launch, assert_same_run, saved, write_config

pytestmark = [
    pytest.mark.slow,
    pytest.mark.faults,
    pytest.mark.skipif(
        "jax_cpu_collectives_implementation" not in jax.config.values,
        reason="this JAX has no cross-process CPU collectives",
    ),
]

RUN_FILES = [
    "best",
    "checkpoints",
    "config.json",
    "data.json",
    "metrics.jsonl",
    "plots",
    "report.md",
    "summary.json",
    "tensorboard",
]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_COMPILATION_CACHE_DIR": str(
            Path(__file__).parent.parent / ".data" / "jax_cache_faults"
        ),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def _start_pair(config_path: Path, workdir: Path, data_dir: str, log: Path) -> list[Launch]:
    port = _free_port()
    return [
        Launch.start(
            [
                sys.executable,
                "launch.py",
                f"--config={config_path}",
                f"--workdir={workdir}",
                f"--config.dataset.data_dir={data_dir}",
                "--config.restarts.num=6",  # 6 members over 4 devices: 2 padding members
                "--noprogress",
                f"--coordinator_address=127.0.0.1:{port}",
                "--num_processes=2",
                f"--process_id={process_id}",
                "--distributed_timeout_s=120",
            ],
            log.with_name(f"{log.name}{process_id}"),
            env=_env(),
        )
        for process_id in (0, 1)
    ]


def _finish(pair: list[Launch]) -> None:
    for child in pair:
        assert child.wait() == 0, child.stderr()[-3000:]
        assert "Traceback" not in child.stderr()


def test_a_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path, data_dir):
    config_path = write_config(tmp_path)
    reference = tmp_path / "reference"
    _finish(_start_pair(config_path, reference, data_dir, tmp_path / "reference"))
    workdir = tmp_path / "run"
    pair = _start_pair(config_path, workdir, data_dir, tmp_path / "killed")
    assert pair[0].kill_when(lambda: saved(40)(workdir)), pair[0].stderr()[-3000:]
    pair[1].process.send_signal(signal.SIGKILL)
    pair[1].wait()
    relaunch = _start_pair(config_path, workdir, data_dir, tmp_path / "relaunch")
    _finish(relaunch)
    assert "resuming from checkpoint" in relaunch[0].stdout()
    assert "took over the lock" in relaunch[0].stdout()
    # Process 1 writes no file of its own and prints nothing of jaxnn's.
    assert "selected member" not in relaunch[1].stdout() + relaunch[1].stderr()
    assert sorted(p.name for p in workdir.iterdir()) == RUN_FILES
    assert_same_run(workdir, reference)
