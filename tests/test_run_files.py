"""Every file a run writes (`jaxnn.io.run_files.RUN_FILES`) goes through --overwrite and through
kill-and-resume of a structural run with diagnostics, and ends as in a run that was neither.

The checks iterate over the table, so a file added to it is covered here without a new test.
"""

from __future__ import annotations

import hashlib
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import shared_dir, tensorboard_events, tiered

from jaxnn import runner
from jaxnn.config import default_config
from jaxnn.errors import JaxnnError
from jaxnn.io import checkpoint, export, run_files
from jaxnn.reporting import metrics_log

REPO = Path(__file__).resolve().parent.parent

CONFIG_TEXT = """
from jaxnn.config import default_config
from jaxnn.errors import JaxnnError


def get_config(arg=None):
    config = default_config()
    config.seed = int(arg or 0)
    config.model.hidden = (16,)
    config.training.batch_size = 100
    config.training.steps = 60
    config.training.eval_every = 10
    config.restarts.num = 2
    config.restarts.sweep = "model.activation=[relu, tanh]; optimizer.learning_rate=[0.05, 0.1]"
    config.restarts.schedule = "successive_halving"  # schedule.jsonl: 4 -> 2 at step 20
    config.restarts.first_rung_steps = 20
    config.checkpoint.every_steps = 20
    config.diagnostics.enabled = True
    return config
"""


class Interrupted(Exception):
    """Stands for the process being killed."""


def _config(data_dir: str, seed: int = 0):
    namespace: dict = {}
    exec(CONFIG_TEXT, namespace)
    config = namespace["get_config"](str(seed))
    config.dataset.data_dir = data_dir
    return config


def _launch(config, workdir: Path, **kwargs) -> str:
    out = io.StringIO()
    runner.run(config, workdir, progress=False, out=out, **kwargs)
    return out.getvalue()


def _without_timing(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("Compile "))


def _fingerprint(workdir: Path) -> dict[str, object]:
    """What each run file holds, timing aside: text, JSON, the names of a directory's files, or
    the (run, tag, step, value) of every TensorBoard scalar with each HParams session's values."""
    seen: dict[str, object] = {}
    for entry in run_files.RUN_FILES:
        path = workdir / entry.name
        assert path.exists(), f"{entry.name} ({entry.description}) is missing"
        if entry.name == run_files.BEST:
            seen[entry.name] = {
                item: _hashes(export.read_best(workdir, item)) for item in export.BEST_TREES
            }
            seen["best/metadata"] = export.best_metadata(workdir)
        elif entry.name == run_files.CHECKPOINTS_DIR:
            # The latest checkpoint of each variant, array by array (the keep policy may hold
            # older ones: Orbax does not persist the metrics that rank them across launches).
            seen[entry.name] = {
                str(d.relative_to(path)): _latest_checkpoint(d)
                for d in sorted(path.glob("variant_*"))
            }
        elif entry.name == run_files.TENSORBOARD:
            # Sorted, not a set: a (tag, step) written twice makes the list longer.
            events = tensorboard_events(path)
            seen[entry.name] = {**events, "scalars": sorted(events["scalars"])}
        elif entry.directory:
            # Orbax names its array files by content hashes: compare the layout to depth 2.
            seen[entry.name] = sorted(
                str(p.relative_to(path))
                for p in path.rglob("*")
                if len(p.relative_to(path).parts) <= 2
                and p.suffix != ".ocdbt"
                and not p.name.startswith(("_", "ocdbt", "d", "commit_success"))
            )
        elif entry.name == run_files.SUMMARY:
            summary = json.loads(path.read_text())
            summary.pop("timing")
            for variant in summary["variants"]:
                variant.pop("timing", None)
            seen[entry.name] = summary
        else:
            seen[entry.name] = _without_timing(path.read_text())
    return seen


def _hashes(tree) -> dict[str, str]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path): hashlib.sha256(np.asarray(leaf).tobytes()).hexdigest()
        for path, leaf in leaves
    }


def _latest_checkpoint(directory: Path) -> tuple[int, dict[str, str]]:
    reader = checkpoint.RunCheckpoints(directory, read_only=True)
    try:
        step = reader.steps()[-1]
        shapes = {name: reader.shapes(step, name) for name in checkpoint.state_fields()}
        return step, _hashes(reader.restore_fields(step, shapes))
    finally:
        reader.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> Path:
    """The structural run (2 activations x 2 rates x 2 starts) never interrupted."""
    return (
        shared_dir(
            tmp_path_factory, "run_files_reference", lambda d: _launch(_config(data_dir), d / "run")
        )
        / "run"
    )


def test_a_structural_run_writes_every_run_file_with_variant_checkpoints(reference):
    fingerprint = _fingerprint(reference)
    checkpoints = fingerprint[run_files.CHECKPOINTS_DIR]
    assert [(name, step) for name, (step, _) in checkpoints.items()] == [
        ("variant_0", 60),
        ("variant_1", 60),
    ]
    rows = [
        json.loads(line)
        for line in (reference / run_files.DIAGNOSTICS).read_text().split("\n")
        if line
    ]
    assert sorted({row["member"] for row in rows}) == list(range(8))
    assert len(rows) == 8 * 6  # one row per member and evaluation, never repeated


def test_overwrite_replaces_every_run_file(reference, tmp_path, data_dir):
    workdir = tmp_path / "run"
    _launch(_config(data_dir, seed=1), workdir)
    (workdir / "notes.txt").write_text("mine")
    _launch(_config(data_dir), workdir, overwrite=True)
    assert _fingerprint(workdir) == _fingerprint(reference)
    assert (workdir / "notes.txt").read_text() == "mine"  # not a run file: left alone


def _interrupt_after(member: int, step: int) -> Callable:
    original = metrics_log.Progress.__call__

    def progress_then_stop(self, evaluation):
        original(self, evaluation)  # the rows of this evaluation are written ...
        if evaluation.step == step and member in self._indices:
            raise Interrupted  # ... but its checkpoint is not

    return progress_then_stop


@pytest.mark.parametrize(
    ("member", "step"),
    tiered([(0, 50), (4, 30)], {(4, 30)}),  # the fast tier: a kill after a variant has ended
    ids=["in the first variant", "in the second variant"],
)
def test_kill_and_resume_ends_every_run_file_as_uninterrupted(
    member, step, reference, tmp_path, data_dir
):
    workdir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics_log.Progress, "__call__", _interrupt_after(member, step))
        with pytest.raises(Interrupted):
            _launch(_config(data_dir), workdir)
    said = _launch(_config(data_dir), workdir)
    assert f"(step {step - 10})" in said
    assert _fingerprint(workdir) == _fingerprint(reference)


@pytest.mark.slow
def test_a_structural_launch_killed_with_sigkill_resumes_to_the_same_files(tmp_path, data_dir):
    config_path = tmp_path / "structural_config.py"
    config_path.write_text(CONFIG_TEXT)

    def command(workdir: Path) -> list[str]:
        return [
            sys.executable,
            "launch.py",
            f"--config={config_path}",
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
            "--noprogress",
        ]

    # The launcher splits the host into CPU devices: its reference is a launch too.
    reference = tmp_path / "reference"
    assert subprocess.run(command(reference), cwd=REPO, capture_output=True).returncode == 0
    workdir = tmp_path / "run"
    args = command(workdir)
    child = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    target = workdir / "checkpoints" / "variant_1" / "20"
    deadline = time.monotonic() + 300
    while child.poll() is None and not target.is_dir() and time.monotonic() < deadline:
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL, child.stderr.read().decode()[-2000:]
    relaunch = subprocess.run(args, cwd=REPO, capture_output=True, text=True)
    assert relaunch.returncode == 0, relaunch.stderr[-2000:]
    assert "resuming from checkpoint" in relaunch.stdout
    assert _fingerprint(workdir) == _fingerprint(reference)


def test_a_config_of_the_default_schema_names_every_run_file_once():
    names = [entry.name for entry in run_files.RUN_FILES]
    assert len(names) == len(set(names))
    assert names[0] == run_files.SUMMARY and names[-1] == run_files.CONFIG
    assert default_config().diagnostics.enabled is False


def test_a_member_of_a_structural_run_is_read_from_its_variants_checkpoints(reference):
    # Global member 5 is member 1 of variant 1 (tanh): transfer's init_from.member=5 reads it.
    weights = export.restore_member(reference, 5)
    step, _ = _latest_checkpoint(reference / "checkpoints" / "variant_1")
    reader = checkpoint.RunCheckpoints(reference / "checkpoints" / "variant_1", read_only=True)
    try:
        shapes = reader.shapes(step, "best_params")
        stacked = reader.restore_fields(step, {"best_params": shapes})["best_params"]
    finally:
        reader.close()
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(a, b[1]), weights, stacked)
    with pytest.raises(JaxnnError, match=r"out of range: .* holds 8 member\(s\), 0..7"):
        export.restore_member(reference, 8)
