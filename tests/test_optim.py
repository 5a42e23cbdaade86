"""Tests of jaxnn.optim: update formulas, schedules, traced hyperparameters, freezing, per-label
learning-rate scales and config validation."""

from __future__ import annotations

import contextlib
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxnn.errors import ConfigError
from jaxnn.nn import optimizers

# optax.scale_by_adam raises b1 to an int32 step count (`b1 ** count`), which strict dtype
# promotion rejects; adam and adamw are tested under standard promotion.
STRICT_INCOMPATIBLE = ("adam", "adamw")


@pytest.fixture(autouse=True)
def _strict_dtype_promotion():
    # A context manager rather than jax.config.update: the setting must not leak into other
    # test modules of the same pytest process.
    with jax.numpy_dtype_promotion("strict"):
        yield


def _promotion(name: str):
    if name in STRICT_INCOMPATIBLE:
        return jax.numpy_dtype_promotion("standard")
    return contextlib.nullcontext()


def _opt_config(**overrides) -> ml_collections.ConfigDict:
    fields = dict(
        name="momentum",
        learning_rate=0.05,
        momentum=0.9,
        schedule="constant",
        warmup_steps=0,
        decay_rate=0.1,
        boundaries=(0.5, 0.75),
        end_fraction=0.0,
        weight_decay=0.0,
        clip_norm=0.0,
    )
    fields.update(overrides)
    return ml_collections.ConfigDict(fields)


A = np.array([1.0, 3.0, 0.5], np.float32)  # a diagonal quadratic 0.5 * sum(A * p**2)
P0 = np.array([1.0, -2.0, 3.0], np.float32)


def _grad(p):
    return A * p


def _run(tx: optax.GradientTransformation, params, steps: int, grad_fn=None):
    """Runs `steps` optimiser steps on the quadratic (or grad_fn); returns every iterate."""
    grad_fn = grad_fn or (lambda p: jax.tree.map(_grad, p))
    state = tx.init(params)
    iterates = [params]

    @jax.jit
    def step(params, state):
        updates, state = tx.update(grad_fn(params), state, params)
        return optax.apply_updates(params, updates), state

    for _ in range(steps):
        params, state = step(params, state)
        iterates.append(params)
    return iterates, state


def _hparams(cfg):
    return {
        "learning_rate": cfg.learning_rate,
        "momentum": cfg.momentum,
        "weight_decay": cfg.weight_decay,
    }


def test_registries_hold_the_documented_names():
    assert set(optimizers.OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"}
    assert set(optimizers.SCHEDULES) == {
        "constant", "step", "exponential", "cosine", "warmup_cosine", "linear",
    }  # fmt: skip


def test_sgd_follows_its_formula():
    cfg = _opt_config(name="sgd", learning_rate=0.1)
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    iterates, _ = _run(tx, jnp.asarray(P0), 4)
    p = P0.astype(np.float64)
    for got in iterates[1:]:
        p = p - 0.1 * _grad(p)
        np.testing.assert_allclose(got, p, rtol=1e-6)


@pytest.mark.parametrize("weight_decay", [0.0, 0.2])
def test_momentum_follows_its_formula(weight_decay):
    lr, mu = 0.1, 0.9
    cfg = _opt_config(name="momentum", learning_rate=lr, momentum=mu, weight_decay=weight_decay)
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    iterates, _ = _run(tx, jnp.asarray(P0), 5)
    p, v = P0.astype(np.float64), np.zeros(3)
    for got in iterates[1:]:
        v = mu * v + _grad(p)
        p = p - lr * (v + weight_decay * p)  # decoupled decay: added to the update, times lr
        np.testing.assert_allclose(got, p, rtol=1e-5)


def test_nesterov_follows_its_formula():
    lr, mu = 0.1, 0.8
    cfg = _opt_config(name="nesterov", learning_rate=lr, momentum=mu)
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    iterates, _ = _run(tx, jnp.asarray(P0), 5)
    p, v = P0.astype(np.float64), np.zeros(3)
    for got in iterates[1:]:
        g = _grad(p)
        v = mu * v + g
        p = p - lr * (g + mu * v)
        np.testing.assert_allclose(got, p, rtol=1e-5)
    heavy_ball = optimizers.make_optimizer(
        _opt_config(name="momentum"), {"learning_rate": lr, "momentum": mu}, total_steps=10
    )
    assert not np.allclose(iterates[-1], _run(heavy_ball, jnp.asarray(P0), 5)[0][-1])


REFERENCES = {
    "sgd": lambda lr, wd: optax.sgd(lr),
    "momentum": lambda lr, wd: optax.sgd(lr, momentum=0.9),
    "nesterov": lambda lr, wd: optax.sgd(lr, momentum=0.9, nesterov=True),
    "adam": lambda lr, wd: optax.adam(lr),
    "adamw": lambda lr, wd: optax.adamw(lr, weight_decay=wd),
    "rmsprop": lambda lr, wd: optax.rmsprop(lr),
}


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_optimizer_equals_the_optax_alias(name):
    weight_decay = 0.1 if name == "adamw" else 0.0
    cfg = _opt_config(name=name, learning_rate=0.05, weight_decay=weight_decay)
    with _promotion(name):
        ours, _ = _run(
            optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10), jnp.asarray(P0), 4
        )
        reference, _ = _run(REFERENCES[name](0.05, weight_decay), jnp.asarray(P0), 4)
    np.testing.assert_allclose(ours[-1], reference[-1], rtol=1e-6)
    assert not np.allclose(ours[-1], P0)


@pytest.mark.parametrize("name", ["sgd", "adam", "rmsprop"])
def test_weight_decay_is_decoupled(name):
    # decay is added to the update after the optimiser's own scaling, then times lr, so with
    # zero gradients each step is exactly p -= lr * wd * p.
    lr, wd = 0.1, 0.3
    cfg = _opt_config(name=name, learning_rate=lr, weight_decay=wd)
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    with _promotion(name):
        iterates, _ = _run(tx, jnp.asarray(P0), 3, grad_fn=jnp.zeros_like)
    np.testing.assert_allclose(iterates[-1], P0 * (1 - lr * wd) ** 3, rtol=1e-5)


def test_clipping_comes_first():
    cfg = _opt_config(name="sgd", learning_rate=0.1, clip_norm=0.5)
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    iterates, _ = _run(tx, jnp.asarray(P0), 1)
    g = _grad(P0)
    expected = P0 - 0.1 * g * 0.5 / np.linalg.norm(g)
    np.testing.assert_allclose(iterates[1], expected, rtol=1e-5)


def _unit(schedule: str, total_steps: int, **overrides):
    unit = optimizers.unit_schedule(_opt_config(schedule=schedule, **overrides), total_steps)
    jitted = jax.jit(unit)
    return lambda step: float(jitted(jnp.asarray(step, jnp.int32)))


# schedule, overrides, total_steps, [(step, documented value)]
SCHEDULE_POINTS = [
    ("constant", {}, 100, [(0, 1.0), (50, 1.0), (100, 1.0)]),
    (
        "step",
        {"boundaries": (0.5, 0.75), "decay_rate": 0.1},
        100,
        [(0, 1.0), (49, 1.0), (50, 0.1), (74, 0.1), (75, 0.01), (99, 0.01)],
    ),
    (
        "exponential",
        {"decay_rate": 0.1},
        100,
        [(0, 1.0), (50, math.sqrt(0.1)), (100, 0.1), (150, 0.1)],
    ),
    ("cosine", {"end_fraction": 0.1}, 100, [(0, 1.0), (50, 0.55), (100, 0.1), (200, 0.1)]),
    (
        "warmup_cosine",
        {"warmup_steps": 10, "end_fraction": 0.0},
        110,
        [(0, 0.0), (5, 0.5), (10, 1.0), (60, 0.5), (110, 0.0)],
    ),
    (
        "linear",
        {"end_fraction": 0.2},
        100,
        [(0, 1.0), (25, 0.8), (50, 0.6), (100, 0.2), (120, 0.2)],
    ),
]


def test_every_schedule_is_checked():
    assert {point[0] for point in SCHEDULE_POINTS} == set(optimizers.SCHEDULES)


@pytest.mark.parametrize("schedule, overrides, total_steps, points", SCHEDULE_POINTS)
def test_schedule_values(schedule, overrides, total_steps, points):
    unit = _unit(schedule, total_steps, **overrides)
    for step, expected in points:
        assert unit(step) == pytest.approx(expected, rel=1e-5, abs=1e-6), f"step {step}"


def test_exponential_schedule_is_smooth():
    unit = _unit("exponential", 100, decay_rate=0.1)
    values = [unit(step) for step in range(0, 101)]
    assert all(a > b for a, b in itertools.pairwise(values))


def test_step_boundaries_that_round_to_one_step_compound():
    unit = _unit("step", 10, boundaries=(0.51, 0.54), decay_rate=0.5)
    assert unit(4) == 1.0
    assert unit(5) == pytest.approx(0.25)


def test_learning_rate_follows_the_schedule():
    cfg = _opt_config(name="sgd", learning_rate=0.2, schedule="linear", end_fraction=0.0)
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=4)
    iterates, _ = _run(tx, jnp.asarray(P0), 4, grad_fn=jnp.ones_like)
    steps = np.diff(np.stack(iterates), axis=0)[:, 0]
    np.testing.assert_allclose(steps, [-0.2, -0.15, -0.1, -0.05], rtol=1e-5)


def test_schedule_errors():
    with pytest.raises(ConfigError, match=r"optimizer.warmup_steps"):
        optimizers.unit_schedule(_opt_config(schedule="warmup_cosine", warmup_steps=100), 100)
    with pytest.raises(ConfigError, match="training steps"):
        optimizers.unit_schedule(_opt_config(), 0)
    with pytest.raises(ConfigError, match=r"optimizer.schedule.*constant, cosine"):
        optimizers.unit_schedule(_opt_config(schedule="cyclic"), 10)


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_traced_hparams_match_python_floats(name):
    # The shared config's own values are deliberately off: members must use their hparams.
    shared = _opt_config(
        name=name, schedule="cosine", clip_norm=5.0, learning_rate=1.0, momentum=0.3
    )
    learning_rates = [0.01, 0.05, 0.2]
    momenta = [0.0, 0.5, 0.9]
    weight_decays = [0.0, 0.01, 0.1]
    params = {"w": jnp.asarray(P0), "b": jnp.asarray(-0.5 * P0)}

    def train(hparams):
        tx = optimizers.make_optimizer(shared, hparams, total_steps=5)
        return _run(tx, params, 3)

    with _promotion(name):
        stacked = {
            "learning_rate": jnp.asarray(learning_rates),
            "momentum": jnp.asarray(momenta),
            "weight_decay": jnp.asarray(weight_decays),
        }
        members, member_states = jax.vmap(train)(stacked)
        for i, (lr, mu, wd) in enumerate(zip(learning_rates, momenta, weight_decays)):
            own = _opt_config(
                name=name,
                schedule="cosine",
                clip_norm=5.0,
                learning_rate=lr,
                momentum=mu,
                weight_decay=wd,
            )
            single, _ = _run(
                optimizers.make_optimizer(own, _hparams(own), total_steps=5), params, 3
            )
            for key in params:
                np.testing.assert_allclose(members[-1][key][i], single[-1][key], rtol=1e-5)
            _, python_float_state = train(_hparams(own))
            assert jax.tree.structure(python_float_state) == jax.tree.structure(member_states)
    # The members differ, so the hyperparameters reached them.
    assert not np.allclose(members[-1]["w"][0], members[-1]["w"][2])


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_state_structure_does_not_depend_on_hparam_values(name):
    cfg = _opt_config(name=name)
    params = {"w": jnp.asarray(P0)}
    states = [
        optimizers.make_optimizer(cfg, h, total_steps=10).init(params)
        for h in ({"learning_rate": 0.1, "momentum": 0.0}, {"learning_rate": 0.3, "momentum": 0.9})
    ]
    assert jax.tree.structure(states[0]) == jax.tree.structure(states[1])
    traces = jax.tree.leaves(states[0], is_leaf=lambda s: isinstance(s, optax.TraceState))
    assert any(isinstance(s, optax.TraceState) for s in traces)  # kept even at momentum 0


def test_one_compiled_program_serves_every_hparam_value():
    cfg = _opt_config(name="momentum", schedule="cosine")
    params = {"w": jnp.asarray(P0)}

    @jax.jit
    def step(hparams, params):
        tx = optimizers.make_optimizer(cfg, hparams, total_steps=10)
        updates, _ = tx.update(jax.tree.map(_grad, params), tx.init(params), params)
        return updates

    for lr, mu, wd in [(0.1, 0.0, 0.0), (0.2, 0.9, 0.1), (0.05, 0.5, 0.01)]:
        hparams = {
            k: jnp.float32(v)
            for k, v in zip(["learning_rate", "momentum", "weight_decay"], (lr, mu, wd))
        }
        step(hparams, params)
    assert step._cache_size() == 1


def test_swept_weight_decay_applies_when_the_config_has_none():
    cfg = _opt_config(name="momentum", learning_rate=0.1, weight_decay=0.0)
    params = jnp.asarray(P0)
    for weight_decay, factor in [(0.0, 1.0), (0.5, 1 - 0.1 * 0.5)]:
        hparams = {"learning_rate": 0.1, "momentum": 0.9, "weight_decay": jnp.float32(weight_decay)}
        tx = optimizers.make_optimizer(cfg, hparams, total_steps=5)
        iterates, _ = _run(tx, params, 1, grad_fn=jnp.zeros_like)
        np.testing.assert_allclose(iterates[1], P0 * factor, rtol=1e-6)


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_state_structure_ignores_whether_decay_is_zero(name):
    params = {"w": jnp.asarray(P0)}
    without, with_decay = (
        optimizers.make_optimizer(_opt_config(name=name, weight_decay=wd), {}, total_steps=5).init(
            params
        )
        for wd in (0.0, 0.1)
    )
    assert jax.tree.structure(without) == jax.tree.structure(with_decay)


def _labelled_params():
    params = {
        "hidden_0": {"kernel": jnp.ones((3, 5)), "bias": jnp.ones((5,))},
        "head": {"kernel": jnp.ones((5, 2)), "bias": jnp.ones((2,))},
    }
    labels = {
        "hidden_0": {"kernel": "body", "bias": "body"},
        "head": {"kernel": "head", "bias": "head"},
    }
    return params, labels


def _noisy_grads(params):
    return jax.tree.map(
        lambda p: p * 0.5 + jnp.arange(p.size, dtype=p.dtype).reshape(p.shape), params
    )


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_frozen_labels_do_not_move_and_keep_no_state(name):
    params, labels = _labelled_params()
    cfg = _opt_config(name=name, weight_decay=0.1, clip_norm=1.0)
    tx = optimizers.make_optimizer(
        cfg, _hparams(cfg), total_steps=10, param_labels=labels, frozen_labels=("body",)
    )
    with _promotion(name):
        iterates, state = _run(tx, params, 3, grad_fn=_noisy_grads)
    final = iterates[-1]
    np.testing.assert_array_equal(final["hidden_0"]["kernel"], params["hidden_0"]["kernel"])
    np.testing.assert_array_equal(final["hidden_0"]["bias"], params["hidden_0"]["bias"])
    assert not np.allclose(final["head"]["kernel"], params["head"]["kernel"])
    state_shapes = {jnp.shape(leaf) for leaf in jax.tree.leaves(state)}
    assert (3, 5) not in state_shapes and (5,) not in state_shapes
    if name != "sgd":  # sgd keeps no per-parameter state at all
        assert (5, 2) in state_shapes


def test_frozen_labels_accept_a_label_function():
    params, labels = _labelled_params()
    cfg = _opt_config(name="momentum")
    tx = optimizers.make_optimizer(
        cfg,
        _hparams(cfg),
        total_steps=10,
        param_labels=lambda tree: labels,
        frozen_labels=("head",),
    )
    final = _run(tx, params, 2, grad_fn=_noisy_grads)[0][-1]
    np.testing.assert_array_equal(final["head"]["kernel"], params["head"]["kernel"])
    assert not np.allclose(final["hidden_0"]["kernel"], params["hidden_0"]["kernel"])


def test_clipping_ignores_frozen_parameters():
    params, labels = _labelled_params()
    cfg = _opt_config(name="sgd", learning_rate=1.0, clip_norm=1.0)
    tx = optimizers.make_optimizer(
        cfg, _hparams(cfg), total_steps=10, param_labels=labels, frozen_labels=("body",)
    )
    updates, _ = tx.update(_noisy_grads(params), tx.init(params), params)
    head_norm = optax.tree.norm(updates["head"])
    assert float(head_norm) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_zero_lr_scale_gives_exactly_zero_update(name):
    params, labels = _labelled_params()
    cfg = _opt_config(name=name, weight_decay=0.1, clip_norm=1.0)
    tx = optimizers.make_optimizer(
        cfg, _hparams(cfg), total_steps=10, param_labels=labels, label_lr_scales={"body": 0.0}
    )
    with _promotion(name):
        iterates, _ = _run(tx, params, 3, grad_fn=_noisy_grads)
    np.testing.assert_array_equal(iterates[-1]["hidden_0"]["kernel"], params["hidden_0"]["kernel"])
    assert not np.allclose(iterates[-1]["head"]["kernel"], params["head"]["kernel"])


def test_lr_scale_scales_the_labels_updates():
    params, labels = _labelled_params()
    cfg = _opt_config(name="momentum")
    plain = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    scaled = optimizers.make_optimizer(
        cfg, _hparams(cfg), total_steps=10, param_labels=labels, label_lr_scales={"body": 0.25}
    )
    grads = _noisy_grads(params)
    plain_updates, _ = plain.update(grads, plain.init(params), params)
    scaled_updates, _ = scaled.update(grads, scaled.init(params), params)
    np.testing.assert_allclose(
        scaled_updates["hidden_0"]["kernel"], 0.25 * plain_updates["hidden_0"]["kernel"], rtol=1e-6
    )
    np.testing.assert_array_equal(scaled_updates["head"]["kernel"], plain_updates["head"]["kernel"])


def test_labels_are_required_for_freezing():
    cfg = _opt_config()
    with pytest.raises(ValueError, match="param_labels"):
        optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10, frozen_labels=("body",))


def test_valid_optimizer_config_passes():
    optimizers.validate_optimizer_config(_opt_config())
    optimizers.validate_optimizer_config(_opt_config(boundaries=(), momentum=0.0, end_fraction=1.0))


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", "lbfgs"),
        ("schedule", "cyclic"),
        ("learning_rate", 0.0),
        ("learning_rate", -0.1),
        ("learning_rate", float("nan")),
        ("momentum", 1.0),
        ("momentum", -0.1),
        ("weight_decay", -0.01),
        ("clip_norm", -1.0),
        ("warmup_steps", -1),
        ("decay_rate", 0.0),
        ("decay_rate", -0.5),
        ("boundaries", (0.75, 0.5)),
        ("boundaries", (0.5, 0.5)),
        ("boundaries", (0.0, 0.5)),
        ("boundaries", (0.5, 1.0)),
        ("end_fraction", -0.1),
        ("end_fraction", 1.5),
    ],
)
def test_bad_optimizer_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=f"optimizer.{field}") as raised:
        optimizers.validate_optimizer_config(_opt_config(**{field: value}))
    assert "\n" not in str(raised.value)


def test_unknown_optimizer_lists_choices():
    with pytest.raises(ConfigError) as raised:
        optimizers.validate_optimizer_config(_opt_config(name="lbfgs"))
    assert ", ".join(sorted(optimizers.OPTIMIZERS)) in str(raised.value)
