"""`make demo`'s command, launched for real at smoke size: a new process as a user starts it, which
must exit 0 with nothing on stderr, learn above chance, and train on one CPU device per core (the
launcher splits the host before JAX starts; every speed figure depends on it)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _demo_command() -> list[str]:
    """The arguments of the Makefile's `demo` recipe after `launch.py`."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n\t(.*)$", makefile, re.MULTILINE)
    assert recipe, "the Makefile has no demo target"
    words = shlex.split(recipe.group(1).replace("$(BIN)/python", "python"))
    assert words[:2] == ["python", "launch.py"], words
    return words[2:]


def _mesh_devices(workdir: Path) -> set[int]:
    """The device ids of the mesh the members were sharded over, as Orbax recorded them."""
    step = sorted((workdir / "checkpoints").iterdir(), key=lambda p: int(p.name))[-1]
    shardings = json.loads((step / "state" / "_sharding").read_text())
    ids = set()
    for value in shardings.values():
        sharding = json.loads(value)
        # On a single device the arrays are not sharded over a mesh at all.
        assert sharding.get("axis_names") == ["members"], f"no mesh of members: {sharding}"
        ids |= {device["id"] for device in sharding["device_mesh"]["mesh"]}
    return ids


def test_make_demo_launches_learns_and_uses_one_cpu_device_per_core(tmp_path, data_dir):
    args = _demo_command()
    assert "--config=experiments/random_restarts.py:demo" in args
    workdir = tmp_path / "demo"
    args = [
        "--config=experiments/random_restarts.py:demo,smoke" if a.startswith("--config=") else a
        for a in args
        if not a.startswith("--workdir=")
    ]
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("XLA_FLAGS", "JAX_COMPILATION_CACHE_DIR", "PYTEST_XDIST_WORKER")
    }
    env |= {"JAX_PLATFORMS": "cpu", "JAXNN_COMPILATION_CACHE": str(REPO / ".data" / "jax_cache")}
    done = subprocess.run(
        [
            sys.executable,
            "launch.py",
            *args,
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
            "--noprogress",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr == "", done.stderr[-3000:]  # no warning, traceback or noise at exit
    summary = json.loads((workdir / "summary.json").read_text())
    assert len(summary["members"]) == 4 and summary["selected_by"] == "val_loss"
    # MNIST-1D has 10 balanced classes: chance is 0.1; 40 steps of the demo's net reach 0.2-0.3.
    assert summary["best"]["test_accuracy"] > 0.18
    assert summary["ensemble"]["test_accuracy"] > 0.18
    assert f"files: {workdir}" in done.stdout
    # One CPU device per core this process may use, every one of them holding members.
    assert _mesh_devices(workdir) == set(range(len(os.sched_getaffinity(0))))
