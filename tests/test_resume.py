"""Resuming a run: an interrupted run ends exactly like an uninterrupted one; refusals change nothing."""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import shared_dir

from jaxnn import data, front_end, runner
from jaxnn.config import default_config
from jaxnn.core import train
from jaxnn.core.program import build
from jaxnn.data import device
from jaxnn.errors import ConfigError
from jaxnn.io import checkpoint, export
from jaxnn.reporting import metrics_log


class Interrupted(Exception):
    """Stands for the process being killed."""


def _config(data_dir: str, **overrides):
    config = default_config()
    config.dataset.data_dir = data_dir
    config.model.hidden = (16, 16)
    config.model.dropout = 0.1
    config.training.batch_size = 100
    config.training.steps = 60
    config.training.eval_every = 10
    config.restarts.num = 3
    config.checkpoint.every_steps = 20
    config.checkpoint.keep = 2
    for field, value in overrides.items():
        section, leaf = field.split(".")
        config[section][leaf] = value
    return config


def _interrupt_at(step: int) -> Callable:
    original = metrics_log.Progress.__call__

    def progress_then_stop(self, evaluation):
        original(self, evaluation)  # metrics.jsonl rows of this evaluation are written ...
        if evaluation.step == step:
            raise Interrupted  # ... but its checkpoint is not.

    return progress_then_stop


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data_dir) -> Path:
    """A run that was never interrupted."""
    return (
        shared_dir(
            tmp_path_factory,
            "resume_reference",
            lambda d: runner.run(_config(data_dir), d / "run", progress=False, out=io.StringIO()),
        )
        / "run"
    )


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory, data_dir) -> Path:
    """The same run killed after writing the metrics of step 50 (checkpoints at 20 and 40)."""

    def build(directory: Path) -> None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(metrics_log.Progress, "__call__", _interrupt_at(50))
            with pytest.raises(Interrupted):
                runner.run(_config(data_dir), directory / "run", progress=False, out=io.StringIO())

    return shared_dir(tmp_path_factory, "resume_interrupted", build) / "run"


def _final_state(workdir: Path) -> dict:
    checkpoints = checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True)
    step = checkpoints.steps()[-1]
    fields = {name: checkpoints.shapes(step, name) for name in checkpoint.state_fields()}
    tree = checkpoints.restore_fields(step, fields)
    checkpoints.close()
    return {"step": step, **tree}


def _assert_trees_equal(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def _summary_without_timing(workdir: Path) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    summary.pop("timing")
    return summary


def _rows(workdir: Path) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
    }


def _copy(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "run"
    shutil.copytree(source, target)
    return target


def test_interrupted_run_resumes_to_exactly_the_uninterrupted_result(
    reference, interrupted, tmp_path, data_dir
):
    workdir = _copy(interrupted, tmp_path)
    assert checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True).steps() == [20, 40]
    assert max(row["step"] for row in _rows(workdir)) == 50
    # A save killed half-way leaves an Orbax temporary directory: it must be ignored.
    (workdir / "checkpoints" / "60.orbax-checkpoint-tmp-1234567").mkdir()
    out = io.StringIO()
    runner.run(_config(data_dir), workdir, progress=False, out=out)
    assert "resuming from checkpoint" in out.getvalue() and "(step 40)" in out.getvalue()
    # No duplicated or missing evaluations: the same rows, in the same order, as never stopping.
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert _summary_without_timing(workdir) == _summary_without_timing(reference)
    _assert_trees_equal(_final_state(workdir), _final_state(reference))
    resumed, uninterrupted = export.load_model(workdir), export.load_model(reference)
    _assert_trees_equal(
        (resumed.params, resumed.hparams), (uninterrupted.params, uninterrupted.hparams)
    )
    assert not list((workdir / "checkpoints").glob("*tmp*"))


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(
    reference, interrupted, tmp_path, data_dir
):
    workdir = _copy(interrupted, tmp_path)
    (workdir / "checkpoints" / "40" / "state" / "manifest.ocdbt").unlink()
    out = io.StringIO()
    runner.run(_config(data_dir), workdir, progress=False, out=out)
    said = out.getvalue()
    assert f"checkpoint {workdir / 'checkpoints' / '40'} is corrupt or incomplete" in said
    assert "falling back to the previous checkpoint" in said and "(step 20)" in said
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    _assert_trees_equal(_final_state(workdir), _final_state(reference))


def test_resume_into_a_workdir_of_another_config_is_refused_and_changes_nothing(
    reference, data_dir
):
    before = _snapshot(reference)
    with pytest.raises(ConfigError, match=r"model\.hidden is \[16, 16\] there but \[16, 8\] now"):
        runner.run(_config(data_dir, **{"model.hidden": (16, 8)}), reference, progress=False)
    # --overwrite deletes nothing when the run fails its data-dependent checks.
    with pytest.raises(ConfigError, match="batch_size"):
        runner.run(
            _config(data_dir, **{"training.batch_size": 100_000}),
            reference,
            overwrite=True,
            progress=False,
        )
    assert _snapshot(reference) == before


def test_a_finished_run_relaunched_reports_it_is_complete_and_changes_nothing(reference, data_dir):
    before = _snapshot(reference)
    for steps in (60, 40):  # the same config, or fewer steps: nothing to do
        out = io.StringIO()
        summary = runner.run(
            _config(data_dir, **{"training.steps": steps}), reference, progress=False, out=out
        )
        said = out.getvalue()
        assert f"workdir {reference} already holds this run, complete at 60 steps" in said
        assert f"selected member {summary['best_member']} by val_loss" in said
        assert summary == json.loads((reference / "summary.json").read_text())
    assert _snapshot(reference) == before


def test_a_finished_run_asked_for_more_steps_continues(reference, tmp_path, data_dir):
    workdir = _copy(reference, tmp_path)
    out = io.StringIO()
    summary = runner.run(
        _config(data_dir, **{"training.steps": 80}), workdir, progress=False, out=out
    )
    assert "(step 60)" in out.getvalue()
    assert {m["final_step"] for m in summary["members"]} == {80}
    keys = [(row["step"], row["member"], row["split"]) for row in _rows(workdir)]
    assert len(keys) == len(set(keys)) == 8 * 3 * 2
    assert json.loads((workdir / "config.json").read_text())["training"]["steps"] == 80


def test_the_exported_best_member_reproduces_its_test_metric(reference):
    summary = json.loads((reference / "summary.json").read_text())
    loaded = export.load_model(reference / "best")
    params, hparams, config = loaded.params, loaded.hparams, loaded.config
    dataset = data.load(config.dataset)
    program, apply_fn, make_tx = build(front_end.resolve(config), dataset)
    state = train.init_state(
        program, hparams, jax.random.PRNGKey(0), apply_fn=apply_fn, make_tx=make_tx
    )
    split = device.SplitData(jax.numpy.asarray(dataset.x_test), jax.numpy.asarray(dataset.y_test))
    metrics = train.evaluate(state, params, split, program)
    assert float(metrics["accuracy"]) == pytest.approx(summary["best"]["test_accuracy"], abs=1e-6)
    assert float(metrics["loss"]) == pytest.approx(summary["best"]["test_loss"], rel=1e-5)
    best = summary["best_member"]
    _assert_trees_equal(params, export.restore_member(reference, best))


def test_a_resume_with_another_member_group_is_refused_and_changes_nothing(reference, data_dir):
    # Groups of another size change the float order of the evaluations (jaxnn.core.groups), so
    # a continued run would not be bit-identical to an uninterrupted one: it is refused.
    before = _snapshot(reference)
    with pytest.raises(ConfigError, match=r"mesh\.member_group is 0 there but 2 now"):
        runner.run(
            _config(data_dir, **{"mesh.member_group": 2, "training.steps": 80}),
            reference,
            progress=False,
        )
    assert _snapshot(reference) == before
