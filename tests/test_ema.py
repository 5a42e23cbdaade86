"""Averaged weights (`optimizer.ema_decay`): optax.ema's debiased average of the weights after
each step, which evaluation, the best weights and the export use."""

from __future__ import annotations

import io

import jax
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn import runner
from jaxnn.core import ensemble, loop, train
from jaxnn.errors import ConfigError
from jaxnn.io import checkpoint, export
from jaxnn.nn import ema
from tests.helpers import blob_arrays, blobs, small_config

DECAY = 0.9


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def _fit(steps: int, **overrides):
    config = small_config(
        **{"training.steps": steps, "training.eval_every": steps, "model.dropout": 0.1, **overrides}
    )
    return loop.fit(config, blobs(), jax.random.PRNGKey(5))


def test_the_averaged_weights_equal_a_hand_computed_average_over_three_steps():
    after = [_fit(steps).state.params for steps in (1, 2, 3)]  # w_1, w_2, w_3 without averaging
    averaged = _fit(3, **{"optimizer.ema_decay": DECAY})
    # Averaging does not change training: the raw weights are those of the run without it.
    for a, b in zip(_leaves(averaged.state.params), _leaves(after[2]), strict=True):
        np.testing.assert_array_equal(a, b)
    # By hand: m_t = d m_{t-1} + (1 - d) w_t from m_0 = 0, debiased by 1 - d^3.
    d = DECAY
    expected = jax.tree_util.tree_map(
        lambda w1, w2, w3: (
            (1 - d) * (d**2 * np.asarray(w1) + d * np.asarray(w2) + np.asarray(w3)) / (1 - d**3)
        ),
        *after,
    )
    assert int(averaged.state.ema.count) == 3
    # The one evaluation (step 3) read the averaged weights, and kept them as the best ones.
    for a, b in zip(_leaves(averaged.state.best_params), _leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    kept = train.evaluated_params(averaged.state, averaged.program)
    for a, b in zip(_leaves(kept), _leaves(expected), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    state = averaged.state
    val = train.evaluate(state, state.best_params, _val_split(), averaged.program)
    assert averaged.history[-1]["val_loss"][0] == pytest.approx(float(val["loss"]), rel=1e-6)
    raw = train.evaluate(state, state.params, _val_split(), averaged.program)
    assert float(raw["loss"]) != pytest.approx(float(val["loss"]), rel=1e-6)


def _val_split():
    from jaxnn.data import device

    return device.device_data(blobs()).val


def test_a_swept_decay_is_per_member_and_zero_is_no_averaging():
    config = small_config(**{"restarts.sweep": "optimizer.ema_decay=[0.0, 0.9]"})
    swept = ensemble.fit_ensemble(config, blobs(), jax.random.PRNGKey(0))
    plain = ensemble.fit_ensemble(small_config(), blobs(), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(swept.state.hparams["ema_decay"], np.float32([0.0, 0.9]))
    without = ensemble.member_state(plain.state, 0)
    zero, averaged = (ensemble.member_state(swept.state, i) for i in (0, 1))
    # decay 0: the average is the weights themselves, bit for bit.
    evaluated = train.evaluated_params(zero, swept.program)
    for a, b in zip(_leaves(evaluated), _leaves(zero.params), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(_leaves(zero.best_params), _leaves(without.best_params), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    # decay 0.9: the same training, other evaluated (and kept) weights.
    for a, b in zip(_leaves(averaged.params), _leaves(zero.params), strict=True):
        np.testing.assert_array_equal(a, b)
    evaluated = train.evaluated_params(averaged, swept.program)
    assert not np.allclose(_leaves(evaluated)[0], _leaves(averaged.params)[0], atol=1e-4)
    # Without averaging the members keep none (and no ema_decay among their hparams).
    assert plain.state.ema == {} and "ema_decay" not in plain.state.hparams


@pytest.mark.parametrize("value", [1.0, -0.1])
def test_a_decay_outside_zero_to_one_is_refused_in_one_line(value):
    with pytest.raises(ConfigError, match=r"optimizer.ema_decay must be in \[0, 1\)") as error:
        jaxnn.validate(small_config(**{"optimizer.ema_decay": value}))
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"optimizer.ema_decay must be in \[0, 1\)"):
        jaxnn.validate(small_config(**{"restarts.sweep": f"optimizer.ema_decay=[0.5, {value}]"}))


def test_the_export_holds_the_averaged_weights(tmp_path):
    workdir = tmp_path / "run"
    config = small_config(**{"optimizer.ema_decay": DECAY, "restarts.num": 2})
    summary = runner.run(config, workdir, data=blobs(), progress=False, out=io.StringIO())
    reader = checkpoint.RunCheckpoints(workdir / "checkpoints", read_only=True)
    step = reader.steps()[-1]
    fields = {name: reader.shapes(step, name) for name in ("params", "best_params", "ema")}
    stored = reader.restore_fields(step, fields)
    reader.close()
    best = summary["best_member"]
    member = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[best], stored)
    state = optax.EmaState(count=member["ema"]["count"], ema=member["ema"]["ema"])
    final = ema.averaged(state, member["params"], DECAY)
    for a, b in zip(
        _leaves(export.read_best(workdir, "final_params")), _leaves(final), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    for a, b in zip(
        _leaves(export.read_best(workdir, "params")), _leaves(member["best_params"]), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(
        _leaves(export.read_best(workdir, "final_params"))[0], _leaves(member["params"])[0]
    )
    _, _, x_test, y_test = blob_arrays()
    score = jaxnn.load_predictor(workdir / "best").score(x_test, y_test)
    assert score == pytest.approx(summary["best"]["test_accuracy"], abs=1e-6)
