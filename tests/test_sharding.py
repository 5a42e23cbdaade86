"""Members sharded over 4 virtual CPU devices: same results as one device, really spread out,
checkpoints that restore on another device count; bad mesh and host flags exit 2.

The sharded cases run in child processes (tests/sharding_cases.py) because the device count
is fixed when JAX starts, and this process's JAX may already have started with one device.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxnn import front_end
from jaxnn.errors import ConfigError
from jaxnn.parallel import hosts, sharding

REPO = Path(__file__).resolve().parent.parent
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def child_env(num_devices: int) -> dict[str, str]:
    """The environment of a child JAX with `num_devices` CPU devices and the shared cache."""
    flags = os.environ.get("XLA_FLAGS", "")
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": f"{flags} --xla_force_host_platform_device_count={num_devices}".strip(),
        "JAX_COMPILATION_CACHE_DIR": str(REPO / ".data" / "jax_cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }


def run_case(case: str, out: Path, num_devices: int) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tests.sharding_cases", case, str(out)],
        cwd=REPO,
        env=child_env(num_devices),
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory) -> Path:
    """case_equal's outputs: one-device K=8, 4-device K=6 (padded) and K=8 (data by batch)."""
    out = tmp_path_factory.mktemp("sharded")
    run_case("equal", out, 4)
    return out


def first_members(arrays, name: str, count: int) -> np.ndarray:
    """The first `count` members of a saved array (params [K, ...], history [evals, K])."""
    values = arrays[name]
    if name == "history_step":
        return values
    return values[:, :count] if name.startswith("history_") else values[:count]


def test_sharded_runs_equal_the_single_device_run(four_devices):
    single = np.load(four_devices / "single.npz")
    padded = np.load(four_devices / "padded.npz")
    batch = np.load(four_devices / "batch.npz")
    grouped = np.load(four_devices / "grouped.npz")
    assert set(single.files) == set(padded.files) == set(batch.files) == set(grouped.files)
    assert any(name.startswith("param") for name in single.files)
    for name in single.files:
        # Member i of K=6 is member i of K=8: the same key and hyperparameters.
        np.testing.assert_allclose(
            padded[name], first_members(single, name, 6), **TOLERANCE, err_msg=name
        )
        np.testing.assert_allclose(batch[name], single[name], **TOLERANCE, err_msg=name)
        # Groups live inside each device's shard: every member is still itself.
        np.testing.assert_allclose(grouped[name], single[name], **TOLERANCE, err_msg=name)
    # The runs trained: the members moved apart from each other and learned something.
    assert np.ptp(single["history_val_loss"][-1]) > 0
    assert np.all(single["history_val_loss"][-1] < single["history_val_loss"][0])


def test_padding_members_are_stopped_and_absent_from_every_result(four_devices):
    facts = json.loads((four_devices / "facts.json").read_text())
    assert facts["device_count"] == 4
    assert facts["grouped_member_group"] == 1
    assert facts["padded_stopped"] == [False] * 6 + [True] * 2
    padded = np.load(four_devices / "padded.npz")
    assert padded["param0"].shape[0] == 6
    assert padded["history_val_loss"].shape[1] == 6


def test_members_and_batch_data_are_spread_over_the_four_devices(four_devices):
    facts = json.loads((four_devices / "facts.json").read_text())
    two_each = {"0": [0, 2], "1": [2, 4], "2": [4, 6], "3": [6, 8]}
    # K=6 padded to 8 slots; K=8 during training (every evaluation) and at the end.
    assert facts["padded_spread"] == two_each
    assert facts["batch_spread"] == [two_each] * 3
    assert facts["batch_result_spread"] == two_each
    # 108 training examples in quarters.
    assert facts["data_spread"] == {"0": [0, 27], "1": [27, 54], "2": [54, 81], "3": [81, 108]}


def test_a_placement_holds_the_devices_its_members_run_on(four_devices):
    # The memory check sums the limits of these devices: never one that holds no member.
    facts = json.loads((four_devices / "facts.json").read_text())
    assert facts["devices_of"] == {"1": [0], "3": [0, 1, 2], "6": [0, 1, 2, 3]}


def test_batch_data_that_the_devices_do_not_divide_is_refused(four_devices):
    facts = json.loads((four_devices / "facts.json").read_text())
    assert "mesh.data=batch splits the data over 4 devices" in facts["indivisible"]
    assert "117 and 13 examples" in facts["indivisible"]


def test_checkpoint_written_sharded_restores_on_three_devices(four_devices):
    """The 4-device run's step-20 checkpoint, continued on 3 devices (8 members in 9 slots)."""
    run_case("resume", four_devices, 3)
    facts = json.loads((four_devices / "resume_facts.json").read_text())
    assert facts == {"device_count": 3, "num_slots": 9}
    single = np.load(four_devices / "single.npz")
    resumed = np.load(four_devices / "resumed.npz")
    for name in single.files:
        if name.startswith("param"):
            np.testing.assert_allclose(resumed[name], single[name], **TOLERANCE, err_msg=name)
        else:
            last = single[name][-1:]
            np.testing.assert_allclose(resumed[name], last, **TOLERANCE, err_msg=name)


@pytest.mark.parametrize(
    ("arguments", "fragments"),
    [
        (
            ["--num_processes=2", "--process_id=2", "--coordinator_address=127.0.0.1:{port}"],
            ["--process_id=2 is out of range", "0..1"],
        ),
        (
            [
                "--num_processes=2",
                "--process_id=1",
                "--coordinator_address=127.0.0.1:{port}",
                "--distributed_timeout_s=2",
            ],
            ["cannot reach the coordinator at 127.0.0.1:", "within 2 s"],
        ),
        (
            [
                "--num_processes=2",
                "--process_id=0",
                "--coordinator_address=127.0.0.1:{port}",
                "--distributed_timeout_s=2",
            ],
            ["waited 2 s for the other 1 process(es)"],
        ),
        (["--config.mesh.num_devices=5"], ["mesh.num_devices=5", "sees 4"]),
    ],
    ids=["process-id-out-of-range", "unreachable-coordinator", "missing-peer", "too-many-devices"],
)
def test_bad_mesh_and_host_flags_exit_2_with_one_line(arguments, fragments, tmp_path):
    port = free_port()
    result = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "--config=experiments/mnist1d_mlp.py:smoke",
            f"--workdir={tmp_path / 'run'}",
            "--noprogress",
            *(argument.format(port=port) for argument in arguments),
        ],
        cwd=REPO,
        env=child_env(4),
        capture_output=True,
        text=True,
        # Bounded: a wait that ignored --distributed_timeout_s (default 300 s) fails here.
        timeout=90,
    )
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("jaxnn: error: ")
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("address", "num_processes", "process_id", "fragment"),
    [
        ("", 2, 0, "--num_processes=2 needs --coordinator_address"),
        ("", 1, 1, "--process_id needs --coordinator_address"),
        ("10.0.0.1", 2, 1, "must be HOST:PORT"),
        ("10.0.0.1:70000", 2, 1, "must be HOST:PORT"),
        ("10.0.0.1:1234", 0, 0, "--num_processes must be >= 1"),
        ("10.0.0.1:1234", 2, -1, "--process_id=-1 is out of range"),
        ("auto", 2, 0, "leave --num_processes and --process_id unset"),
    ],
)
def test_inconsistent_host_flags_are_refused(address, num_processes, process_id, fragment):
    with pytest.raises(ConfigError) as error:
        hosts.check_distributed_args(address, num_processes, process_id, 60)
    assert fragment in str(error.value)


def test_host_flags_of_single_and_multi_process_runs_are_accepted():
    assert hosts.check_distributed_args("", 1, 0, 60) is False
    assert hosts.check_distributed_args("10.0.0.1:1234", 4, 3, 60) is True
    assert hosts.check_distributed_args("[::1]:1234", 2, 0, 60) is True
    assert hosts.check_distributed_args("auto", 1, 0, 60) is True


def test_one_device_places_nothing():
    from tests.helpers import small_config

    placed = sharding.placement(small_config(**{"mesh.num_devices": 1}), 6)
    assert placed.mesh is None
    assert (placed.num_slots, placed.num_padding) == (6, 0)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("num_devices", -1, "mesh.num_devices must be an integer in [0, "),
        ("data", "rows", "mesh.data"),
    ],
)
def test_bad_mesh_fields_are_refused(field, value, fragment):
    from tests.helpers import small_config

    config = small_config(**{f"mesh.{field}": value})
    with pytest.raises(ConfigError) as error:
        front_end.resolve(config)
    assert fragment in str(error.value)
