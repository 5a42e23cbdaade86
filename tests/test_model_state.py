"""Model state per member: a user's BatchNorm module trains, evaluates, resumes, predicts and
transfers with its running statistics as Flax's docs write it (no declaration)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import shared_dir

import jaxnn
from jaxnn import front_end, runner
from jaxnn.core import ensemble, loop, train
from jaxnn.core.program import build
from jaxnn.io import checkpoint, export
from jaxnn.reporting import metrics_log
from tests.helpers import blob_arrays, blobs, small_config

STEPS = 60
BODY_STATS = "BatchNorm_0"


class BatchNormNet(nn.Module):
    """A user's MLP with BatchNorm and Dropout, written as Flax's docs write them."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = nn.Dense(16)(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
        x = nn.relu(x)
        x = nn.Dropout(0.1, deterministic=not train)(x)
        return nn.Dense(3, name="head")(x)


class Interrupted(Exception):
    """Stands for the process being killed."""


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def _assert_trees_equal(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(_leaves(a), _leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def _stats(tree, index: int | None = None) -> dict[str, np.ndarray]:
    """The body's BatchNorm statistics {'mean', 'var'} of a model state (member `index`)."""
    stats = tree["batch_stats"][BODY_STATS]
    return {k: np.asarray(v if index is None else np.asarray(v)[index]) for k, v in stats.items()}


def _config(**overrides):
    # 120 examples in batches of 16: every epoch ends with a batch of 8 examples and 8 masked rows.
    config = small_config(
        **{
            "restarts.num": 2,
            "restarts.sweep": "optimizer.learning_rate=[0.02, 0.1]",
            "training.steps": STEPS,
            "checkpoint.every_steps": 20,
            **overrides,
        }
    )
    config.model.hidden = (100, 100)  # unused by the user's model: left at the default
    return config


def _run(workdir: Path, config=None, data=None, **kwargs):
    return runner.run(
        config or _config(),
        workdir,
        data=data or blobs(),
        model=BatchNormNet(),
        progress=False,
        out=io.StringIO(),
        **kwargs,
    )


def _final_state(workdir: Path) -> dict:
    return checkpoint.last_state_fields(workdir / "checkpoints")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """A BatchNorm run that was never interrupted."""
    return shared_dir(tmp_path_factory, "model_state_reference", lambda d: _run(d / "run")) / "run"


# --- The unit of work ---------------------------------------------------------------------


def test_member_i_of_a_batchnorm_ensemble_equals_fit_of_member_i():
    data, config, root = blobs(), _config(**{"training.steps": 30}), jax.random.PRNGKey(3)
    spec = front_end.resolve(config, jaxnn.Components.of(model=BatchNormNet()))
    result = ensemble.fit_ensemble(config, data, root, model=BatchNormNet())
    initial = BatchNormNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 6)))["batch_stats"]
    for member in result.members:
        alone = loop.fit(
            config,
            data,
            train.member_key(root, member.seed_index),
            hparams=member.hparams(spec),
            model=BatchNormNet(),
        )
        stacked = ensemble.member_state(result.state, member.index)
        for field in ("params", "model_state", "best_model_state"):
            for a, b in zip(
                _leaves(getattr(stacked, field)), _leaves(getattr(alone.state, field)), strict=True
            ):
                np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
        # The training steps moved the running statistics away from their initial values.
        moved = _stats(stacked.model_state)
        assert not np.allclose(moved["mean"], initial[BODY_STATS]["mean"], atol=1e-3)
        assert not np.allclose(moved["var"], initial[BODY_STATS]["var"], atol=1e-3)
    # Each member keeps its own statistics.
    assert not np.allclose(
        _stats(result.state.model_state, 0)["mean"], _stats(result.state.model_state, 1)["mean"]
    )


class Counting(nn.Module):
    """A Module with a collection of its own: how many training examples it has seen."""

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        seen = self.variable("counts", "seen", lambda: jnp.zeros((), jnp.float32))
        if train:
            seen.value = seen.value + x.shape[0]
        return nn.Dense(3, name="head")(x)


def test_any_collection_a_module_writes_in_training_is_state_and_groups_carry_it():
    config = _config(**{"restarts.sweep": "", "restarts.num": 3, "training.steps": 30})
    result = ensemble.fit_ensemble(config, blobs(), jax.random.PRNGKey(0), model=Counting())
    # 30 training steps of 16 rows each, per member; the evaluations counted nothing.
    np.testing.assert_array_equal(result.state.model_state["counts"]["seen"], [480.0] * 3)
    config.mesh.member_group = 2  # members run 2 at a time: a group of 2 and one of 1
    grouped = ensemble.fit_ensemble(config, blobs(), jax.random.PRNGKey(0), model=Counting())
    _assert_trees_equal(grouped.state.model_state, result.state.model_state)
    bn = _config(**{"restarts.sweep": "", "restarts.num": 3, "training.steps": 20})
    plain = ensemble.fit_ensemble(bn, blobs(), jax.random.PRNGKey(0), model=BatchNormNet())
    bn.mesh.member_group = 2
    in_groups = ensemble.fit_ensemble(bn, blobs(), jax.random.PRNGKey(0), model=BatchNormNet())
    for a, b in zip(
        _leaves(plain.state.model_state), _leaves(in_groups.state.model_state), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_the_memory_estimate_counts_the_model_state():
    spec = front_end.resolve(_config(), jaxnn.Components.of(model=BatchNormNet()))
    trainer = ensemble.make_trainer(spec, blobs(), jax.random.PRNGKey(0))
    member = trainer.memory.member
    # mean and var of 16 units, float32, for the state and for the best weights' copy.
    assert member.model_state == 2 * 2 * 16 * 4
    assert member.state == member.params + member.opt_state + member.best_params + 256 + (
        member.other_state
    )


def test_the_masked_rows_of_an_epochs_last_batch_are_its_first_examples_again():
    config = _config()
    program, _, _ = build(front_end.resolve(config), blobs())
    order = train.epoch_order(jax.random.PRNGKey(0), jnp.int32(0), program.num_train)
    last = program.steps_per_epoch - 1
    idx, mask = train.batch_indices(order, jnp.int32(last), program)
    real = program.num_train - last * program.batch_size  # 8 of 16
    assert int(mask.sum()) == real and not mask[real:].any()
    np.testing.assert_array_equal(idx[:real], order[last * program.batch_size :])
    # BatchNorm's batch statistics see 16 distinct training examples, not repeats of one.
    np.testing.assert_array_equal(idx[real:], order[: program.batch_size - real])
    assert len(set(np.asarray(idx).tolist())) == program.batch_size


def test_evaluation_reads_the_statistics_and_never_changes_them():
    data = blobs()
    config = _config(**{"restarts.sweep": "", "training.steps": 30, "training.eval_every": 30})
    once = loop.fit(config, data, jax.random.PRNGKey(0), model=BatchNormNet())
    config.training.eval_every = 10
    thrice = loop.fit(config, data, jax.random.PRNGKey(0), model=BatchNormNet())
    # Two more evaluations in between leave the weights and the statistics as they were.
    for field in ("params", "model_state"):
        for a, b in zip(
            _leaves(getattr(once.state, field)), _leaves(getattr(thrice.state, field)), strict=True
        ):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # An example's evaluation does not depend on the other examples it is evaluated with: the
    # running averages normalise it, not the batch's statistics.
    state, x = thrice.state, jnp.asarray(data.x_val)
    everything, kept = state.apply_fn(state.params, state.model_state, x, state.hparams)
    first_rows, _ = state.apply_fn(state.params, state.model_state, x[:5], state.hparams)
    np.testing.assert_allclose(everything[:5], first_rows, rtol=1e-5, atol=1e-6)
    _assert_trees_equal(kept, state.model_state)
    predictor = thrice.predictor()
    before = jax.tree_util.tree_map(np.copy, predictor.model_state)
    x_test = blob_arrays()[2]
    np.testing.assert_array_equal(predictor.predict_proba(x_test), predictor.predict_proba(x_test))
    _assert_trees_equal(predictor.model_state, before)


# --- Through run(): checkpoints, resume, export, predictors -----------------------------------


def _interrupt_at(step: int):
    original = metrics_log.Progress.__call__

    def progress_then_stop(self, evaluation):
        original(self, evaluation)  # metrics.jsonl rows of this evaluation are written ...
        if evaluation.step == step:
            raise Interrupted  # ... but its checkpoint is not.

    return progress_then_stop


def test_a_resumed_batchnorm_run_equals_an_uninterrupted_one(reference, tmp_path):
    workdir = tmp_path / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(metrics_log.Progress, "__call__", _interrupt_at(50))
        with pytest.raises(Interrupted):
            _run(workdir)
    reader = checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True)
    assert reader.steps() == [20, 40]
    reader.close()
    out = io.StringIO()
    runner.run(_config(), workdir, data=blobs(), model=BatchNormNet(), progress=False, out=out)
    assert "(step 40)" in out.getvalue()
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    resumed, uninterrupted = _final_state(workdir), _final_state(reference)
    assert _stats(resumed["model_state"], 0)  # the checkpoint holds the statistics
    _assert_trees_equal(resumed, uninterrupted)
    for item in export.BEST_TREES:
        _assert_trees_equal(export.read_best(workdir, item), export.read_best(reference, item))
    summary = json.loads((workdir / "summary.json").read_text())
    summary.pop("timing")
    expected = json.loads((reference / "summary.json").read_text())
    expected.pop("timing")
    assert summary == expected


def test_best_holds_the_statistics_and_load_predictor_reproduces_the_test_accuracy(reference):
    summary = json.loads((reference / "summary.json").read_text())
    _, _, x_test, y_test = blob_arrays()
    stats = _stats(export.read_best(reference, "model_state"))
    initial = BatchNormNet().init(jax.random.PRNGKey(0), jnp.zeros((1, 6)))["batch_stats"]
    assert not np.allclose(stats["mean"], initial[BODY_STATS]["mean"], atol=1e-3)
    assert not np.allclose(stats["var"], initial[BODY_STATS]["var"], atol=1e-3)
    best = summary["best_member"]
    final = _final_state(reference)
    _assert_trees_equal(
        export.read_best(reference, "model_state"),
        jax.tree_util.tree_map(lambda leaf: leaf[best], final["best_model_state"]),
    )
    every_member = jaxnn.load_predictor(reference, model=BatchNormNet())
    exported = jaxnn.load_predictor(reference / "best", model=BatchNormNet())

    def correct(accuracy: float) -> int:
        """Test examples classified right (summary.json holds float32 accuracies)."""
        count = accuracy * len(y_test)
        assert count == pytest.approx(round(count), abs=1e-4)
        return round(count)

    accuracy = correct(summary["best"]["test_accuracy"])
    assert correct(every_member.score(x_test, y_test)) == accuracy
    assert correct(exported.score(x_test, y_test)) == accuracy
    for row in summary["members"]:
        score = every_member.score(x_test, y_test, member=row["index"])
        assert correct(score) == correct(row["test_accuracy"])
        loss = every_member.evaluate(x_test, y_test, member=row["index"])["loss"]
        assert loss == pytest.approx(row["test_loss"], rel=1e-5)
    assert exported.evaluate(x_test, y_test)["loss"] == pytest.approx(
        summary["best"]["test_loss"], rel=1e-5
    )
    loaded = jaxnn.load_model(reference, model=BatchNormNet())
    _assert_trees_equal(loaded.model_state, export.read_best(reference, "model_state"))
    logits = loaded.apply(x_test)  # raw inputs, as the predictor takes them
    standardized = loaded.apply_standardized(exported.preprocessing.features(x_test))
    np.testing.assert_allclose(np.asarray(logits), np.asarray(standardized), rtol=1e-6)
    assert np.sum(np.argmax(np.asarray(logits), axis=-1) == y_test) == accuracy


def test_the_export_keeps_the_best_weights_state_and_the_final_one(tmp_path):
    config = _config(**{"restarts.sweep": "", "restarts.num": 1, "training.steps": 20})
    result = ensemble.fit_ensemble(config, blobs(), jax.random.PRNGKey(0), model=BatchNormNet())
    # Best and final state told apart, whatever step the best weights came from.
    state = result.state.replace(
        best_model_state=jax.tree_util.tree_map(lambda leaf: leaf + 1, result.state.model_state)
    )
    export.export_member(
        tmp_path / "best", state, 0, result.config, step=20, program=result.program
    )
    first = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[0], state)
    _assert_trees_equal(export.read_best(tmp_path, "model_state"), first.best_model_state)
    _assert_trees_equal(export.read_best(tmp_path, "final_model_state"), first.model_state)
    _assert_trees_equal(export.read_best(tmp_path, "params"), first.best_params)
    loaded = jaxnn.load_model(tmp_path / "best", model=BatchNormNet())
    _assert_trees_equal(loaded.model_state, first.best_model_state)


def _transfer(source: Path, workdir: Path, mode: str):
    config = _config(
        **{
            "init_from.workdir": str(source),
            "init_from.mode": mode,
            "restarts.sweep": "",
            "training.steps": 30,
        }
    )
    _run(workdir, config, data=blobs(seed=1))
    return _final_state(workdir)


def test_transfer_carries_the_statistics_finetune_updates_them_feature_extraction_keeps_them(
    reference, tmp_path
):
    pretrained = _stats(export.read_best(reference, "model_state"))
    frozen = _transfer(reference, tmp_path / "features", "feature_extraction")
    tuned = _transfer(reference, tmp_path / "finetune", "finetune")
    for member in range(2):
        for name in ("mean", "var"):
            # Feature extraction: the body's statistics stay the pretrained ones, bit for bit.
            np.testing.assert_array_equal(
                _stats(frozen["model_state"], member)[name], pretrained[name]
            )
            np.testing.assert_array_equal(
                _stats(frozen["best_model_state"], member)[name], pretrained[name]
            )
            # Finetuning goes on updating them, from the pretrained ones.
            assert not np.allclose(_stats(tuned["model_state"], member)[name], pretrained[name])


# --- Older checkpoints --------------------------------------------------------------------


def test_a_checkpoint_written_before_model_state_restores_predicts_and_continues(tmp_path):
    workdir = tmp_path / "run"
    old_fields = tuple(
        name for name in checkpoint.state_fields() if name not in checkpoint.OPTIONAL_FIELDS
    )
    config = small_config(**{"restarts.num": 2})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(checkpoint, "state_fields", lambda: old_fields)
        runner.run(config, workdir, data=blobs(), progress=False, out=io.StringIO())
    reader = checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True)
    step = reader.steps()[-1]
    assert reader.shapes(step, "best_model_state") == {}
    reader.close()
    summary = json.loads((workdir / "summary.json").read_text())
    _, _, x_test, y_test = blob_arrays()
    predictor = jaxnn.load_predictor(workdir)
    assert predictor.model_state == {}
    assert predictor.score(x_test, y_test) == pytest.approx(summary["best"]["test_accuracy"])
    assert export.restore_member(workdir, 1, with_state=True).keys() == {"params"}
    config.training.steps = 40
    out = io.StringIO()
    runner.run(config, workdir, data=blobs(), progress=False, out=out)
    assert f"(step {step})" in out.getvalue()
