"""Orbax checkpoints: exact round trips, the keep policy, one member alone, the exported model,
and files that are not this jaxnn's checkpoints (another format, another run) rejected whole."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn import front_end
from jaxnn.core import ensemble, loop, train
from jaxnn.core.program import build
from jaxnn.data import device
from jaxnn.errors import CheckpointError
from jaxnn.io import checkpoint, export
from jaxnn.nn import family
from jaxnn.nn.metrics import accuracy
from tests.helpers import blobs, small_config


@pytest.fixture(scope="module")
def trained():
    """A 3-member run whose body is frozen: its optimiser state holds masked and empty nodes."""
    data = blobs()
    config = small_config(**{"restarts.num": 3, "model.dropout": 0.1})
    key = jax.random.PRNGKey(0)
    options = {"param_labels": family.body_head_labels, "frozen_labels": ("body",)}
    result = ensemble.fit_ensemble(config, data, key, transfer=options)
    spec = front_end.resolve(config)
    trainer = ensemble.make_trainer(spec, data, key, **options)
    abstract = jax.eval_shape(
        trainer.init_fn,
        ensemble.stacked_hparams(spec, trainer.members),
        ensemble.member_keys(key, trainer.members),
        None,
    )
    return config, data, result.state, abstract, result.program


def _assert_trees_equal(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_save_then_restore_gives_the_identical_state(trained, tmp_path):
    _, _, state, abstract, _ = trained
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints")
    checkpoints.save(30, state, val_loss=0.5)
    restored = checkpoints.restore(30, abstract)
    checkpoints.close()
    _assert_trees_equal(checkpoint.state_tree(restored), checkpoint.state_tree(state))
    assert restored.apply_fn is abstract.apply_fn
    assert checkpoints.meta(30) == {
        "format_version": 1,
        "jaxnn_version": jaxnn.__version__,
        "step": 30,
        "num_members": 3,
    }


def test_keep_policy_keeps_the_latest_n_and_the_best(trained, tmp_path):
    _, _, state, _, _ = trained
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints", keep=2)
    for step, val_loss in [(10, 0.9), (20, 0.2), (30, 0.5), (40, 0.6), (50, 0.7)]:
        checkpoints.save(step, state, val_loss=val_loss)
    assert checkpoints.steps() == [20, 40, 50]
    checkpoints.close()


def test_saver_saves_every_n_steps_at_evaluations_and_at_the_end(trained, tmp_path):
    _, _, state, _, _ = trained
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints", keep=10)
    saver = checkpoint.Saver(checkpoints, every_steps=25, start_step=0)
    for step in (10, 20, 30, 40, 50, 60, 65):
        saver(
            loop.Evaluation(step=step, metrics={"val_loss": np.array([1.0, np.nan])}, state=state)
        )
    saver.finish(state, 65)
    assert checkpoints.steps() == [30, 50, 65]


def test_restore_member_reads_one_member_of_the_stacked_state(trained, tmp_path):
    _, _, state, _, _ = trained
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints")
    checkpoints.save(30, state, val_loss=0.5)
    checkpoints.close()
    for index in range(3):
        member = ensemble.member_state(state, index)
        _assert_trees_equal(export.restore_member(tmp_path, index), member.best_params)
        _assert_trees_equal(export.restore_member(tmp_path, index, which="params"), member.params)
    body = export.restore_member(tmp_path, 1, layers=["hidden_0"])
    assert list(body) == ["hidden_0"]
    with pytest.raises(CheckpointError, match=r"member index 3 is out of range: .* 0\.\.2$"):
        export.restore_member(tmp_path, 3)
    with pytest.raises(CheckpointError, match="holds no checkpoints"):
        export.restore_member(tmp_path / "nowhere", 0)


def test_unreadable_checkpoints_are_named_and_skipped(trained, tmp_path):
    _, _, state, abstract, _ = trained
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints", keep=5)
    for step in (10, 20):
        checkpoints.save(step, state, val_loss=1.0)
    checkpoints.close()
    (tmp_path / "checkpoints" / "20" / "state" / "manifest.ocdbt").write_bytes(b"torn")
    reader = checkpoint.RunCheckpoints(tmp_path / "checkpoints", read_only=True)
    said = []
    step, restored, unreadable = reader.restore_latest(abstract, report=said.append)
    assert (step, unreadable) == (10, [20])
    assert len(said) == 1 and "checkpoints/20 is corrupt or incomplete" in said[0]
    assert "\n" not in said[0]
    _assert_trees_equal(checkpoint.state_tree(restored), checkpoint.state_tree(state))
    (tmp_path / "checkpoints" / "10" / "meta" / "metadata").write_text("{not json")
    with pytest.raises(CheckpointError, match="no readable checkpoint in"):
        reader.restore_latest(abstract, report=said.append)
    reader.close()


def test_exported_member_loads_as_a_single_model(trained, tmp_path):
    config, data, state, _, run_program = trained
    export.export_member(tmp_path / "best", state, 2, config, step=30, program=run_program)
    loaded = export.load_model(tmp_path)
    params, hparams, loaded_config = loaded.params, loaded.hparams, loaded.config
    member = ensemble.member_state(state, 2)
    _assert_trees_equal(params, member.best_params)
    assert set(hparams) == set(member.hparams)
    assert loaded_config.model.hidden == config.model.hidden
    assert export.best_metadata(tmp_path / "best")["member"] == 2
    # The single-model path reproduces the member's test metrics from the exported files.
    program, apply_fn, make_tx = build(front_end.resolve(loaded_config), data)
    single = train.init_state(
        program, hparams, jax.random.PRNGKey(0), apply_fn=apply_fn, make_tx=make_tx
    )
    split = device.SplitData(jax.numpy.asarray(data.x_test), jax.numpy.asarray(data.y_test))
    metrics = train.evaluate(single, params, split, program)
    expected, _ = ensemble.evaluate_members(state, program, data.x_test, data.y_test)
    assert float(metrics["accuracy"]) == pytest.approx(expected["accuracy"][2], abs=1e-6)
    assert float(metrics["loss"]) == pytest.approx(expected["loss"][2], rel=1e-5)
    # So does the loaded model's own apply, on standardised inputs and on raw ones alike.
    outputs = loaded.apply_standardized(data.x_test)
    assert float(accuracy(outputs, data.y_test)) == pytest.approx(expected["accuracy"][2], abs=1e-6)
    prep = loaded.preprocessing
    raw = np.asarray(data.x_test, np.float64) * prep.feature_std + prep.feature_mean
    np.testing.assert_allclose(loaded.apply(raw), outputs, atol=1e-4)
    assert not np.allclose(loaded.apply(raw), loaded.apply_standardized(raw), atol=1e-2)
    with pytest.raises(CheckpointError, match="holds no exported model"):
        export.load_model(tmp_path / "elsewhere")


def test_dropped_checkpoints_leave_nothing_half_deleted(trained, tmp_path):
    _, _, state, _, _ = trained
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints", keep=1)
    for step, val_loss in [(10, 0.1), (20, 0.5), (30, 0.6)]:
        checkpoints.save(step, state, val_loss=val_loss)
    checkpoints.close()
    # The keep policy renames a dropped checkpoint into .deleted before deleting it.
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["10", "30"]


def _rewrite_meta(directory, **fields) -> None:
    path = directory / "meta" / "metadata"
    path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))


def test_a_checkpoint_of_another_jaxnn_format_is_rejected_naming_the_writer(trained, tmp_path):
    config, _, state, abstract, program = trained
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints")
    checkpoints.save(30, state, val_loss=0.5)
    _rewrite_meta(tmp_path / "checkpoints" / "30", format_version=7, jaxnn_version="9.0.0")
    with pytest.raises(CheckpointError, match=r"format version 7 \(written by jaxnn 9\.0\.0\)"):
        checkpoints.restore(30, abstract)
    with pytest.raises(CheckpointError, match="format version 7"):
        export.restore_member(tmp_path, 0)
    checkpoints.close()
    export.export_member(tmp_path / "best", state, 0, config, step=30, program=program)
    path = tmp_path / "best" / "metadata" / "metadata"
    path.write_text(json.dumps({**json.loads(path.read_text()), "format_version": 0}))
    with pytest.raises(CheckpointError, match="has format version 0"):
        export.load_model(tmp_path)


def test_a_checkpoint_of_another_run_is_rejected_before_any_array_is_read(trained, tmp_path):
    _, data, _, abstract, _ = trained
    other = ensemble.fit_ensemble(
        small_config(**{"restarts.num": 2}), data, jax.random.PRNGKey(1)
    ).state
    checkpoints = checkpoint.RunCheckpoints(tmp_path / "checkpoints")
    checkpoints.save(30, other, val_loss=0.5)
    with pytest.raises(
        CheckpointError,
        match=r"is not of this run: \S+ has shape \[2(, \d+)*\] there but \[3(, \d+)*\] here",
    ):
        checkpoints.restore(30, abstract)
    # An Orbax checkpoint that jaxnn did not write: no jaxnn metadata at all.
    _rewrite_meta(tmp_path / "checkpoints" / "30", format_version=None)
    (tmp_path / "checkpoints" / "30" / "meta" / "metadata").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match="is not a jaxnn checkpoint"):
        checkpoints.restore(30, abstract)
    checkpoints.close()
