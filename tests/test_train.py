"""The single-member training loop: batches, epochs, best weights, early stopping, compilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import front_end
from jaxnn.core import loop, train
from jaxnn.core.program import make_program
from jaxnn.data import device
from tests.helpers import blobs, small_config


def _program(config, data):
    return make_program(front_end.resolve(config), data)


def test_epoch_order_is_a_permutation_and_batches_cover_each_example_once():
    data = blobs(num_train=100)
    config = small_config(**{"training.batch_size": 16})
    program = _program(config, data)
    assert program.num_train == data.num_train
    key = jax.random.PRNGKey(3)
    order = train.epoch_order(key, jnp.asarray(0), program.num_train)
    assert sorted(np.asarray(order).tolist()) == list(range(program.num_train))
    seen = []
    for step in range(program.steps_per_epoch):
        idx, mask = train.batch_indices(order, jnp.asarray(step), program)
        seen += np.asarray(idx)[np.asarray(mask)].tolist()
    # Every example exactly once, including the last partial batch (N mod B examples).
    assert sorted(seen) == list(range(program.num_train))
    last_mask = np.asarray(
        train.batch_indices(order, jnp.asarray(program.steps_per_epoch - 1), program)[1]
    )
    assert last_mask.sum() == program.num_train - (program.steps_per_epoch - 1) * 16
    other = train.epoch_order(key, jnp.asarray(1), program.num_train)
    assert not np.array_equal(order, other)


def test_epochs_mode_counts_steps_per_epoch_with_partial_batch():
    data = blobs(num_train=100)
    config = small_config(**{"training.steps": 0, "training.epochs": 3, "training.batch_size": 16})
    program = _program(config, data)
    assert program.total_steps == 3 * -(-data.num_train // 16)


def test_fit_learns_and_tracks_best_weights():
    data = blobs()
    result = loop.fit(small_config(), data, jax.random.PRNGKey(0))
    val = [float(h["val_loss"][0]) for h in result.history]
    assert val[-1] < val[0]
    state = result.state
    assert float(state.best_val_loss) == pytest.approx(min(val), rel=1e-6)
    best = train.evaluate(state, state.best_params, device.device_data(data).val, result.program)
    assert float(best["loss"]) == pytest.approx(min(val), rel=1e-5)
    assert int(state.step) == 30


def test_no_recompilation_after_the_first_chunk():
    compiles = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    counts = []
    config = small_config(**{"training.steps": 50, "training.eval_every": 10})
    loop.fit(
        config, blobs(seed=1), jax.random.PRNGKey(1), on_eval=lambda e: counts.append(len(compiles))
    )
    assert len(counts) == 5
    # Host-side helpers may compile during the first evaluation; nothing compiles after it.
    assert counts[1:] == [counts[1]] * 4, counts


def test_early_stopping_stops_and_keeps_best():
    data = blobs()
    # A large learning rate on a long run: patience 1 stops at the first non-improving evaluation.
    config = small_config(
        **{"training.steps": 400, "training.patience": 1, "optimizer.learning_rate": 2.0}
    )
    result = loop.fit(config, data, jax.random.PRNGKey(0))
    state = result.state
    val_losses = np.array([h["val_loss"][0] for h in result.history])
    steps = [int(h["step"][0]) for h in result.history]
    assert bool(state.stopped) and not bool(state.diverged)
    # Patience 1: every evaluation but the last improved on all before it, the last did not.
    assert len(val_losses) >= 2 and steps[-1] < 400
    assert (np.diff(val_losses[:-1]) < 0).all()
    assert val_losses[-1] >= val_losses[:-1].min()
    best = int(np.argmin(val_losses))
    assert best == len(val_losses) - 2
    # The kept weights are the best evaluation's, not the last: best_step, best_val_loss, and
    # the kept weights re-evaluated on the validation split give that evaluation's loss.
    assert int(state.best_step) == steps[best] < int(state.step) == steps[-1]
    assert float(state.best_val_loss) == pytest.approx(val_losses[best], rel=1e-6)
    val = device.device_data(data).val
    kept = train.evaluate(state, state.best_params, val, result.program)["loss"]
    last = train.evaluate(state, state.params, val, result.program)["loss"]
    assert float(kept) == pytest.approx(val_losses[best], rel=1e-5)
    assert float(last) == pytest.approx(val_losses[-1], rel=1e-5)
    assert float(kept) < float(last)


@pytest.mark.parametrize("num_train", [1, 2, 3, 4096, 4097, 2**20 + 1])
def test_epoch_order_is_a_permutation_for_every_size(num_train):
    # 2**20 + 1 examples need more index bits than epoch_order packs: it falls back to
    # jax.random.permutation.
    order = np.asarray(train.epoch_order(jax.random.PRNGKey(5), jnp.asarray(2), num_train))
    assert order.dtype == np.int32
    np.testing.assert_array_equal(np.sort(order), np.arange(num_train))


def test_epoch_order_is_shuffled():
    orders = np.stack(
        [
            np.asarray(train.epoch_order(jax.random.PRNGKey(6), jnp.asarray(e), 3600))
            for e in range(200)
        ]
    )
    # Each example lands in the first half of the epoch about half the time, and consecutive
    # positions go up or down in index as often as a uniform random order does.
    first_half = (np.argsort(orders, axis=1) < 1800).mean(axis=0)
    assert abs(first_half.mean() - 0.5) < 0.01 and first_half.std() < 0.06
    assert np.mean(np.diff(orders, axis=1) > 0) == pytest.approx(0.5, abs=0.01)


def test_keep_last_keeps_the_final_weights_and_keep_best_the_lowest_validation_loss():
    data = blobs()
    # A rate high enough that validation loss moves around: the best evaluation is not the last.
    overrides = {"training.steps": 120, "training.eval_every": 10, "optimizer.learning_rate": 0.5}
    best = loop.fit(small_config(**overrides), data, jax.random.PRNGKey(1))
    last = loop.fit(
        small_config(**overrides, **{"training.keep": "last"}), data, jax.random.PRNGKey(1)
    )
    # The same training either way; only which weights are kept differs.
    for a, b in zip(
        jax.tree_util.tree_leaves(best.state.params),
        jax.tree_util.tree_leaves(last.state.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(
        jax.tree_util.tree_leaves(last.state.best_params),
        jax.tree_util.tree_leaves(last.state.params),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert int(last.state.best_step) == 120
    val_losses = [float(entry["val_loss"][0]) for entry in best.history]
    assert float(last.state.best_val_loss) == pytest.approx(val_losses[-1])
    assert float(best.state.best_val_loss) == pytest.approx(min(val_losses))
    assert int(best.state.best_step) == 10 * (1 + int(np.argmin(val_losses)))
    assert np.argmin(val_losses) < len(val_losses) - 1  # so the two modes keep different weights


def test_divergence_is_flagged_and_the_member_stops_updating():
    data = blobs()
    config = small_config(**{"optimizer.learning_rate": 1e6, "optimizer.name": "sgd"})
    result = loop.fit(config, data, jax.random.PRNGKey(0))
    assert bool(result.state.diverged)
    leaves = jax.tree_util.tree_leaves(result.state.params)
    assert all(np.isfinite(np.asarray(leaf)).all() for leaf in leaves)


def test_member_keys_differ_by_purpose():
    key = train.member_key(jax.random.PRNGKey(0), 2)
    derived = {tag: tuple(np.asarray(jax.random.fold_in(key, tag))) for tag in (0, 1, 2)}
    assert len(set(derived.values())) == 3
