"""Random-start ensembles: the vmapped members equal single runs; sweeps; divergence; statistics."""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from jaxnn import front_end
from jaxnn.analysis import restart_stats
from jaxnn.core import ensemble, loop, train
from jaxnn.data import device
from tests.helpers import blobs, small_config


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def test_member_i_equals_fit_alone_with_its_key_and_hparams():
    data = blobs()
    config = small_config(
        **{
            "restarts.num": 3,
            "model.dropout": 0.2,
            "restarts.sweep": "optimizer.learning_rate=[0.02, 0.05]",
        }
    )
    root = jax.random.PRNGKey(7)
    spec = front_end.resolve(config)
    result = ensemble.fit_ensemble(config, data, root)
    assert len(result.members) == 6
    for member in result.members:
        alone = loop.fit(
            config, data, train.member_key(root, member.seed_index), hparams=member.hparams(spec)
        )
        stacked = ensemble.member_state(result.state, member.index)
        for a, b in zip(_leaves(stacked.params), _leaves(alone.state.params), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # Dropout keys differ per member: two random starts of one variant end differently.
    first, second = (ensemble.member_state(result.state, i).params for i in (0, 1))
    assert not np.allclose(_leaves(first)[0], _leaves(second)[0])


def test_swept_learning_rates_share_one_program_and_end_differently():
    data = blobs()
    config = small_config(**{"restarts.sweep": "optimizer.learning_rate=[0.01, 0.1]"})
    trainer = ensemble.make_trainer(front_end.resolve(config), data, jax.random.PRNGKey(0))
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    a, b = (ensemble.member_state(result.state, i) for i in (0, 1))
    # Same initialisation (same random start), different learning rate -> different weights.
    assert a.hparams["learning_rate"] != b.hparams["learning_rate"]
    assert not np.allclose(_leaves(a.params)[0], _leaves(b.params)[0])
    # A different swept value reuses the compiled program.
    other = front_end.resolve(
        small_config(**{"restarts.sweep": "optimizer.learning_rate=[0.3, 0.5]"})
    )
    state = trainer.init_fn(
        ensemble.stacked_hparams(other, ensemble.members(other)),
        ensemble.member_keys(jax.random.PRNGKey(0), trainer.members),
        None,
    )
    state0 = ensemble.init_members(trainer, jax.random.PRNGKey(0))
    np.testing.assert_allclose(state.hparams["learning_rate"], [0.3, 0.5])
    data_on_device = device.device_data(data)
    step = jax.numpy.asarray(0, jax.numpy.int32)
    trainer.chunk_fn(state0, data_on_device, step, trainer.order_key)
    trainer.chunk_fn(state, data_on_device, step, trainer.order_key)
    assert trainer.chunk_fn._cache_size() == 1


def test_a_diverging_member_is_isolated_and_leaves_the_others_bit_identical():
    data = blobs()
    sweep = "optimizer.learning_rate=[0.05, 1e7, 0.02]"
    calm = "optimizer.learning_rate=[0.05, 0.03, 0.02]"
    wild = ensemble.fit_ensemble(
        small_config(**{"restarts.sweep": sweep}), data, jax.random.PRNGKey(0)
    )
    tame = ensemble.fit_ensemble(
        small_config(**{"restarts.sweep": calm}), data, jax.random.PRNGKey(0)
    )
    diverged = np.asarray(wild.state.diverged)
    assert diverged.tolist() == [False, True, False]
    for i in (0, 2):
        for a, b in zip(
            _leaves(ensemble.member_state(wild.state, i)),
            _leaves(ensemble.member_state(tame.state, i)),
            strict=True,
        ):
            np.testing.assert_array_equal(a, b)
    metrics = {"val_loss": np.array([0.5, np.nan, 0.4])}
    # Selection's direction comes from the program: a loss is minimised, accuracy maximised.
    assert not wild.program.greater_is_better("val_loss")
    assert wild.program.greater_is_better("val_accuracy")
    greater = wild.program.greater_is_better("val_loss")
    assert ensemble.select_best(metrics, diverged, "val_loss", greater_is_better=greater) == 2


def test_shared_batch_order_gives_members_the_same_batches():
    data = blobs()
    config = small_config(**{"restarts.num": 2, "training.batch_order": "shared"})
    trainer = ensemble.make_trainer(front_end.resolve(config), data, jax.random.PRNGKey(0))
    assert trainer.order_key is not None
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    root = jax.random.PRNGKey(0)
    alone = loop.fit(
        config, data, train.member_key(root, 1), order_key=train.shared_order_key(root)
    )
    for a, b in zip(
        _leaves(ensemble.member_state(result.state, 1).params),
        _leaves(alone.state.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_per_member_early_stopping_freezes_only_that_member():
    data = blobs()
    # Learning rates 0.5 and 2.0 overfit the blobs quickly: their validation loss stops
    # improving and patience 3 ends them at steps 50 and 60; 0.02 keeps improving to the end.
    config = small_config(
        **{
            "training.steps": 200,
            "training.patience": 3,
            "restarts.sweep": "optimizer.learning_rate=[0.5, 2.0, 0.02]",
        }
    )
    root = jax.random.PRNGKey(0)
    spec = front_end.resolve(config)
    result = ensemble.fit_ensemble(config, data, root)
    steps = np.asarray(result.state.step)
    np.testing.assert_array_equal(np.asarray(result.state.stopped), [True, True, False])
    np.testing.assert_array_equal(np.asarray(result.state.diverged), [False, False, False])
    np.testing.assert_array_equal(steps, [50, 60, 200])
    assert result.history[-1]["step"][0] == 200
    # A stopped member is frozen where it stopped: it equals the same member trained alone,
    # which stops there too, though the ensemble ran on to step 200.
    member = result.members[0]
    alone = loop.fit(
        config, data, train.member_key(root, member.seed_index), hparams=member.hparams(spec)
    )
    assert int(alone.state.step) == 50 and bool(alone.state.stopped)
    for a, b in zip(
        _leaves(ensemble.member_state(result.state, 0).params),
        _leaves(alone.state.params),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)


def test_the_loop_ends_when_every_member_has_stopped():
    data = blobs()
    config = small_config(
        **{
            "training.steps": 3000,
            "training.patience": 3,
            "restarts.sweep": "optimizer.learning_rate=[0.5, 2.0]",
        }
    )
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(result.state.stopped), [True, True])
    np.testing.assert_array_equal(np.asarray(result.state.step), [50, 60])
    # The last member stopped at step 60: no chunk ran after it (3000 steps were allowed).
    assert [int(h["step"][0]) for h in result.history] == [10, 20, 30, 40, 50, 60]


def test_expected_best_of_k_matches_brute_force():
    values = np.array([0.9, 0.3, 0.5, 0.7, 0.4, 0.8])
    for k in range(1, len(values) + 1):
        brute = np.mean([min(c) for c in itertools.combinations(values, k)])
        assert restart_stats.expected_best_of_k(values, k) == pytest.approx(brute, rel=1e-12)
    curve = restart_stats.restart_stats(values, tolerance=0.5)["expected_best_of_k"]
    assert curve[0] == pytest.approx(values.mean()) and curve[-1] == pytest.approx(values.min())
    assert all(a >= b for a, b in itertools.pairwise(curve))


def test_select_best_by_accuracy_maximises():
    metrics = {"val_accuracy": np.array([0.5, 0.9, 0.7])}

    def best(diverged):
        return ensemble.select_best(
            metrics, np.array(diverged), "val_accuracy", greater_is_better=True
        )

    assert best([False, False, False]) == 1
    assert best([False, True, False]) == 2
    assert best([True, True, True]) is None
    # The same values read as a loss: the smallest wins.
    minimised = ensemble.select_best(
        metrics, np.array([False, False, False]), "val_accuracy", greater_is_better=False
    )
    assert minimised == 0


def test_the_best_member_is_selected_by_validation_never_by_test():
    from jaxnn.errors import ConfigError
    from jaxnn.reporting import summary as summary_lib

    data = blobs(seed=1)
    config = small_config(**{"restarts.num": 6, "training.steps": 20})
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(0))
    summary, _ = summary_lib.summarize(result, config, data)
    val = np.array([m["val_loss"] for m in summary["members"]])
    test = np.array([m["test_loss"] for m in summary["members"]])
    # In this run the best member on the test split is another one than on validation.
    assert np.argmin(test) != np.argmin(val)
    assert summary["selected_by"] == "val_loss"
    assert summary["best_member"] == int(np.argmin(val))
    assert summary["best"]["test_loss"] == test[np.argmin(val)]
    with pytest.raises(ConfigError, match=r"restarts\.select_by"):
        front_end.resolve(small_config(**{"restarts.select_by": "test_loss"}))
