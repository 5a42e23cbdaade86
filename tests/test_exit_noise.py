"""Nothing prints after a failed launch's own line: a resume whose every checkpoint is torn.

Orbax reads a checkpoint's arrays in parallel (TensorStore threads under an asyncio loop);
when one read fails, the others may complete after the loop has closed, and each such
completion used to print asyncio's "Event loop is closed" traceback beside jaxnn's one line.
Whether they do is a race, so the trial is repeated.
"""

from __future__ import annotations

import subprocess

import pytest

from tests.test_faults import REPO, child_env, command, write_config

pytestmark = pytest.mark.slow

TRIALS = 4


def test_a_resume_from_torn_checkpoints_prints_its_lines_and_nothing_else(tmp_path, data_dir):
    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir)
    first = subprocess.run(args, cwd=REPO, env=child_env(), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    arrays = [
        p for p in (workdir / "checkpoints").rglob("*") if p.is_file() and p.parent.name == "d"
    ]
    assert arrays
    for path in arrays:
        path.write_bytes(path.read_bytes()[:5])
    for _ in range(TRIALS):
        resumed = subprocess.run(
            [*args, "--config.training.steps=120"],
            cwd=REPO, env=child_env(), capture_output=True, text=True,
        )  # fmt: skip
        assert resumed.returncode == 2
        lines = resumed.stderr.strip().splitlines()
        assert lines[-1].startswith("jaxnn: error: no readable checkpoint in")
        assert all(line.startswith(("checkpoint ", "jaxnn: error:")) for line in lines), lines
