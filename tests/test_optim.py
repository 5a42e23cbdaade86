"""Tests of jaxnn.nn.optimizers: update formulas, each optimiser's own settings, schedules,
traced hyperparameters, freezing, per-label learning-rate scales and config validation."""

from __future__ import annotations

import contextlib
import inspect
import itertools
import json
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from jaxnn import front_end
from jaxnn.config.schema import default_config
from jaxnn.config.upgrade import upgrade
from jaxnn.core import program
from jaxnn.errors import ConfigError
from jaxnn.nn import optimizers
from tests.helpers import blobs

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
    # The schema's optimizer section with some fields changed (to any type, as a flag may).
    fields = dict(default_config().optimizer.items())
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
    """The member hyperparameters of `cfg`'s optimiser, as the config states them."""
    return {
        field.hparam: cfg[field.field.rpartition(".")[2]] for field in optimizers.member_fields(cfg)
    }


def test_registries_hold_the_documented_names():
    assert set(optimizers.OPTIMIZERS) == {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"}
    assert set(optimizers.SCHEDULES) == {
        "constant", "step", "exponential", "cosine", "warmup_cosine", "linear",
        "reduce_on_plateau",
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
    # The step count leaves it at the base rate: the loss moves it (below).
    ("reduce_on_plateau", {}, 100, [(0, 1.0), (50, 1.0), (100, 1.0)]),
]


def test_reduce_on_plateau_cuts_the_rate_after_patience_checks_of_accumulated_steps():
    # One check per 3 steps (plateau_accumulation 0 = eval_every); patience 2 checks.
    cfg = _opt_config(
        name="sgd",
        learning_rate=0.1,
        schedule="reduce_on_plateau",
        plateau_factor=0.5,
        plateau_patience=2,
        plateau_cooldown=0,
        plateau_rtol=1e-4,
        plateau_accumulation=0,
    )
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=100, eval_every=3)
    params = jnp.zeros(2, jnp.float32)
    grads = jnp.ones(2, jnp.float32)
    rates = []
    # optax.contrib.reduce_on_plateau multiplies its int32 count by a float32 mean, which
    # strict promotion rejects (as for Adam, STRICT_INCOMPATIBLE).
    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(params)
        update = jax.jit(lambda s, v: tx.update(grads, s, params, value=v))
        # Improving for 2 checks, then a flat loss: the cut comes at the 2nd flat check (step 12).
        for value in [3.0, 3.0, 3.0, 2.0, 2.0, 2.0, *[2.0] * 9]:
            updates, state = update(state, jnp.float32(value))
            rates.append(-float(updates[0]))
    np.testing.assert_allclose(rates, [0.1] * 11 + [0.05] * 4, rtol=1e-6)
    assert float(optimizers.loss_scale(state)) == 0.5


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
    with pytest.raises(ConfigError, match=r"optimizer.schedule.*constant, cosine"):
        optimizers.unit_schedule(_opt_config(schedule="cyclic"), 10)


def test_a_schedule_that_does_not_fit_the_run_is_refused_before_it_is_built():
    # The run's steps are known once the data is (training.epochs): the data checks refuse
    # what would not fit, so building the optimiser after them cannot fail.
    data = blobs(num_train=120)
    steps = 2 * -(-data.num_train // 50)  # two epochs of batch 50
    config = default_config()
    config.model.hidden = (8,)
    config.training.steps, config.training.epochs, config.training.batch_size = 0, 2, 50
    config.optimizer.schedule, config.optimizer.warmup_steps = "warmup_cosine", steps - 1
    program.make_program(front_end.resolve(config), data)
    config.optimizer.warmup_steps = steps
    with pytest.raises(ConfigError) as raised:
        program.make_program(front_end.resolve(config), data)
    assert str(raised.value) == (
        f"optimizer.warmup_steps={steps} must be smaller than the number of training steps "
        f"({steps})"
    )
    config.optimizer.warmup_steps, config.optimizer.accumulate_steps = 0, steps + 1
    with pytest.raises(ConfigError, match="the number of training steps must be >= 1, got 0"):
        program.make_program(front_end.resolve(config), data)


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


# Member values per setting, exact binary fractions so that a float32 member and a Python
# float single run compute the same 1 - value (optax's moment updates use it).
SETTING_VALUES = {
    "momentum": (0.0, 0.5, 0.875),
    "b1": (0.5, 0.75, 0.875),
    "b2": (0.5, 0.75, 0.9375),
    "eps": (2.0**-20, 2.0**-6, 0.5),
    "rms_decay": (0.5, 0.75, 0.875),
}
OWN_SETTINGS = [
    (name, setting)
    for name, optimizer in sorted(optimizers.OPTIMIZERS.items())
    for setting in optimizer.reads
]


def test_every_setting_has_member_values():
    assert {setting for _, setting in OWN_SETTINGS} == set(SETTING_VALUES)


@pytest.mark.parametrize("name, setting", OWN_SETTINGS)
def test_traced_setting_matches_a_single_run(name, setting):
    # One setting traced per member under vmap; each member trains as a single run given that
    # value as a Python float.
    shared = _opt_config(name=name, learning_rate=0.05, weight_decay=0.01)
    values = SETTING_VALUES[setting]
    params = {"w": jnp.asarray(P0), "b": jnp.asarray(-0.5 * P0)}

    def train(hparams):
        return _run(optimizers.make_optimizer(shared, hparams, total_steps=5), params, 3)[0][-1]

    with _promotion(name):
        members = jax.vmap(lambda v: train({setting: v}))(jnp.asarray(values, jnp.float32))
        for i, value in enumerate(values):
            single = train({**_hparams(shared), setting: value})
            for key in params:
                np.testing.assert_allclose(members[key][i], single[key], rtol=1e-6, atol=1e-7)
    assert not np.allclose(members["w"][0], members["w"][2])  # the setting reached optax


@pytest.mark.parametrize(
    "name, hparams",
    [
        ("momentum", ({"momentum": 0.0}, {"momentum": 0.9})),
        ("nesterov", ({"momentum": 0.0}, {"momentum": 0.9})),
        ("adam", ({"b1": 0.0, "b2": 0.5, "eps": 1.0}, {"b1": 0.9, "b2": 0.999, "eps": 1e-8})),
        ("adamw", ({"b1": 0.0}, {"b1": jnp.float32(0.9)})),
        ("rmsprop", ({"rms_decay": 0.0, "eps": 1.0}, {"rms_decay": 0.9, "eps": 1e-8})),
    ],
)
def test_state_structure_does_not_depend_on_hparam_values(name, hparams):
    cfg = _opt_config(name=name)
    params = {"w": jnp.asarray(P0)}
    states = [
        optimizers.make_optimizer(cfg, {"learning_rate": lr, **h}, total_steps=10).init(params)
        for lr, h in zip((0.1, 0.3), hparams)
    ]
    assert jax.tree.structure(states[0]) == jax.tree.structure(states[1])
    if name in ("momentum", "nesterov"):
        traces = jax.tree.leaves(states[0], is_leaf=lambda s: isinstance(s, optax.TraceState))
        assert any(isinstance(s, optax.TraceState) for s in traces)  # kept even at momentum 0


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_one_compiled_program_serves_every_hparam_value(name):
    cfg = _opt_config(name=name, schedule="cosine")
    params = {"w": jnp.asarray(P0)}
    fields = [field.hparam for field in optimizers.member_fields(cfg)]

    @jax.jit
    def step(hparams, params):
        tx = optimizers.make_optimizer(cfg, hparams, total_steps=10)
        updates, _ = tx.update(jax.tree.map(_grad, params), tx.init(params), params)
        return updates

    with _promotion(name):
        for value in (0.1, 0.5, 0.01):
            step({hparam: jnp.float32(value) for hparam in fields}, params)
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


def _adam_chain(lr, wd, **settings):
    return optax.chain(
        optax.scale_by_adam(**settings),
        optax.add_decayed_weights(wd),
        optax.scale_by_learning_rate(lr),
    )


def _rms_chain(lr, wd, **settings):
    return optax.chain(
        optax.scale_by_rms(**settings),
        optax.add_decayed_weights(wd),
        optax.scale_by_learning_rate(lr),
    )


# name, the config's own setting, the optax transformation it must equal (lr, wd) -> tx.
OWN_SETTING_REFERENCES = [
    ("momentum", {"momentum": 0.5}, lambda lr, wd: optax.sgd(lr, momentum=0.5)),
    ("nesterov", {"momentum": 0.5}, lambda lr, wd: optax.sgd(lr, momentum=0.5, nesterov=True)),
    ("adam", {"b1": 0.5}, lambda lr, wd: _adam_chain(lr, wd, b1=0.5)),
    ("adam", {"b2": 0.9}, lambda lr, wd: _adam_chain(lr, wd, b2=0.9)),
    ("adam", {"eps": 1e-2}, lambda lr, wd: _adam_chain(lr, wd, eps=1e-2)),
    ("adamw", {"b1": 0.5}, lambda lr, wd: optax.adamw(lr, b1=0.5, weight_decay=wd)),
    ("adamw", {"b2": 0.9}, lambda lr, wd: optax.adamw(lr, b2=0.9, weight_decay=wd)),
    ("adamw", {"eps": 1e-2}, lambda lr, wd: optax.adamw(lr, eps=1e-2, weight_decay=wd)),
    ("rmsprop", {"rms_decay": 0.5}, lambda lr, wd: _rms_chain(lr, wd, decay=0.5)),
    ("rmsprop", {"eps": 1e-2}, lambda lr, wd: _rms_chain(lr, wd, eps=1e-2)),
]


def test_every_setting_has_a_reference():
    assert {(n, next(iter(s))) for n, s, _ in OWN_SETTING_REFERENCES} == set(OWN_SETTINGS)


@pytest.mark.parametrize("name, setting, reference", OWN_SETTING_REFERENCES)
def test_own_setting_reaches_optax(name, setting, reference):
    # optax.sgd has no weight decay: momentum and nesterov are compared without it.
    wd = 0.0 if name in ("momentum", "nesterov") else 0.1
    cfg = _opt_config(name=name, learning_rate=0.05, weight_decay=wd, **setting)
    default = _opt_config(name=name, learning_rate=0.05, weight_decay=wd)

    def final(tx):
        return _run(tx, jnp.asarray(P0), 4)[0][-1]

    with _promotion(name):
        ours = final(optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10))
        expected = final(reference(0.05, wd))
        plain = final(optimizers.make_optimizer(default, _hparams(default), total_steps=10))
    np.testing.assert_allclose(ours, expected, rtol=1e-6)
    assert not np.allclose(ours, plain)  # the setting changed the run


def test_setting_defaults_are_optax_defaults():
    # So the optimisers train with default settings exactly as before they had any.
    opt = default_config().optimizer

    def optax_default(fn, arg):
        return inspect.signature(fn).parameters[arg].default

    assert opt.b1 == optax_default(optax.scale_by_adam, "b1")
    assert opt.b2 == optax_default(optax.scale_by_adam, "b2")
    assert opt.eps == optax_default(optax.scale_by_adam, "eps")
    assert opt.eps == optax_default(optax.scale_by_rms, "eps")
    assert opt.rms_decay == optax_default(optax.scale_by_rms, "decay")


def test_a_config_saved_without_the_settings_trains_as_it_did_then():
    # A config.json written before the settings existed is upgraded to the schema's defaults.
    record = json.loads(default_config().to_json())
    record["optimizer"]["name"] = "adam"
    for setting in ("b1", "b2", "eps", "rms_decay"):
        del record["optimizer"][setting]
    old = upgrade(record).optimizer
    optimizers.validate_optimizer_config(old)
    with jax.numpy_dtype_promotion("standard"):
        ours = _run(optimizers.make_optimizer(old, {}, total_steps=10), jnp.asarray(P0), 3)[0]
        expected = _run(optax.adam(old.learning_rate), jnp.asarray(P0), 3)[0]
    np.testing.assert_allclose(ours[-1], expected[-1], rtol=1e-6)


@pytest.mark.parametrize(
    "name, hparams",
    [
        ("sgd", ["learning_rate", "weight_decay"]),
        ("momentum", ["learning_rate", "weight_decay", "momentum"]),
        ("nesterov", ["learning_rate", "weight_decay", "momentum"]),
        ("adam", ["learning_rate", "weight_decay", "b1", "b2", "eps"]),
        ("adamw", ["learning_rate", "weight_decay", "b1", "b2", "eps"]),
        ("rmsprop", ["learning_rate", "weight_decay", "rms_decay", "eps"]),
    ],
)
def test_member_fields_are_the_optimizers_reads(name, hparams):
    fields = optimizers.member_fields(_opt_config(name=name))
    assert [field.hparam for field in fields] == hparams
    assert [field.field for field in fields] == [f"optimizer.{h}" for h in hparams]
    assert all(optimizers.NUMERIC_FIELDS[field.hparam] is field for field in fields)


def test_numeric_fields_name_their_config_fields():
    schema = default_config().optimizer
    assert list(optimizers.NUMERIC_FIELDS) == [
        "learning_rate", "weight_decay", "momentum", "b1", "b2", "eps", "rms_decay",
    ]  # fmt: skip
    for hparam, field in optimizers.NUMERIC_FIELDS.items():
        assert field.hparam == hparam
        assert field.field == f"optimizer.{hparam}"
        assert field.problem(schema[hparam]) is None  # the defaults are valid
    reads = {read for optimizer in optimizers.OPTIMIZERS.values() for read in optimizer.reads}
    assert reads <= set(optimizers.NUMERIC_FIELDS)


def test_extra_hparams_are_ignored():
    # A member's hparams also hold the model's; the optimiser reads only its own.
    cfg = _opt_config(name="sgd", learning_rate=0.1)
    hparams = {**_hparams(cfg), "dropout": 0.5, "momentum": 0.9}
    with_extra = _run(optimizers.make_optimizer(cfg, hparams, total_steps=5), jnp.asarray(P0), 3)[0]
    own = _run(optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=5), jnp.asarray(P0), 3)[0]
    np.testing.assert_array_equal(with_extra[-1], own[-1])


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


def _labelled(cfg, labels, **options):
    tx = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    return optimizers.with_labels(tx, labels, **options)


@pytest.mark.parametrize("name", sorted(optimizers.OPTIMIZERS))
def test_frozen_labels_do_not_move_and_keep_no_state(name):
    params, labels = _labelled_params()
    cfg = _opt_config(name=name, weight_decay=0.1, clip_norm=1.0)
    tx = _labelled(cfg, labels, frozen_labels=("body",))
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
    tx = _labelled(_opt_config(name="momentum"), lambda tree: labels, frozen_labels=("head",))
    final = _run(tx, params, 2, grad_fn=_noisy_grads)[0][-1]
    np.testing.assert_array_equal(final["head"]["kernel"], params["head"]["kernel"])
    assert not np.allclose(final["hidden_0"]["kernel"], params["hidden_0"]["kernel"])


def test_clipping_ignores_frozen_parameters():
    params, labels = _labelled_params()
    cfg = _opt_config(name="sgd", learning_rate=1.0, clip_norm=1.0)
    tx = _labelled(cfg, labels, frozen_labels=("body",))
    updates, _ = tx.update(_noisy_grads(params), tx.init(params), params)
    head_norm = optax.tree.norm(updates["head"])
    assert float(head_norm) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_zero_lr_scale_gives_exactly_zero_update(name):
    params, labels = _labelled_params()
    cfg = _opt_config(name=name, weight_decay=0.1, clip_norm=1.0)
    tx = _labelled(cfg, labels, label_lr_scales={"body": 0.0})
    with _promotion(name):
        iterates, _ = _run(tx, params, 3, grad_fn=_noisy_grads)
    np.testing.assert_array_equal(iterates[-1]["hidden_0"]["kernel"], params["hidden_0"]["kernel"])
    assert not np.allclose(iterates[-1]["head"]["kernel"], params["head"]["kernel"])


def test_lr_scale_scales_the_labels_updates():
    params, labels = _labelled_params()
    cfg = _opt_config(name="momentum")
    plain = optimizers.make_optimizer(cfg, _hparams(cfg), total_steps=10)
    scaled = _labelled(cfg, labels, label_lr_scales={"body": 0.25})
    grads = _noisy_grads(params)
    plain_updates, _ = plain.update(grads, plain.init(params), params)
    scaled_updates, _ = scaled.update(grads, scaled.init(params), params)
    np.testing.assert_allclose(
        scaled_updates["hidden_0"]["kernel"], 0.25 * plain_updates["hidden_0"]["kernel"], rtol=1e-6
    )
    np.testing.assert_array_equal(scaled_updates["head"]["kernel"], plain_updates["head"]["kernel"])


def test_with_labels_wraps_a_users_own_optax_transformation():
    # Freeze one label and halve another's updates on a plain optax.adam: the unfrozen label
    # trains as adam alone on those parameters, then times 0.5.
    params, labels = _labelled_params()
    tx = optimizers.with_labels(
        optax.adam(0.01), labels, frozen_labels=("body",), label_lr_scales={"head": 0.5}
    )
    with jax.numpy_dtype_promotion("standard"):
        iterates, state = _run(tx, params, 3, grad_fn=_noisy_grads)
        head_alone = optax.chain(optax.adam(0.01), optax.scale(0.5))
        expected = _run(head_alone, params["head"], 3, grad_fn=_noisy_grads)[0]
    final = iterates[-1]
    np.testing.assert_array_equal(final["hidden_0"]["kernel"], params["hidden_0"]["kernel"])
    np.testing.assert_array_equal(final["hidden_0"]["bias"], params["hidden_0"]["bias"])
    for key in ("kernel", "bias"):
        np.testing.assert_allclose(final["head"][key], expected[-1][key], rtol=1e-6)
    state_shapes = {jnp.shape(leaf) for leaf in jax.tree.leaves(state)}
    assert (3, 5) not in state_shapes and (5, 2) in state_shapes


def test_with_labels_returns_tx_unchanged_without_options():
    tx = optax.sgd(0.1)
    assert optimizers.with_labels(tx, None) is tx
    assert optimizers.with_labels(tx, {"w": "body"}, frozen_labels=(), label_lr_scales={}) is tx


def test_labels_are_required_for_freezing():
    tx = optimizers.make_optimizer(_opt_config(), {}, total_steps=10)
    with pytest.raises(ValueError, match="param_labels"):
        optimizers.with_labels(tx, None, frozen_labels=("body",))
    with pytest.raises(ValueError, match="param_labels"):
        optimizers.with_labels(tx, None, label_lr_scales={"body": 0.5})


def test_valid_optimizer_config_passes():
    optimizers.validate_optimizer_config(_opt_config())
    optimizers.validate_optimizer_config(_opt_config(boundaries=(), momentum=0.0, end_fraction=1.0))
    optimizers.validate_optimizer_config(_opt_config(name="adam", b1=0.0, b2=0.5, eps=1.0))
    optimizers.validate_optimizer_config(default_config().optimizer)


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
        ("b1", 1.0),
        ("b1", -0.1),
        ("b1", "0.9"),
        ("b2", 1.0),
        ("b2", float("inf")),
        ("eps", 0.0),
        ("eps", -1e-8),
        ("rms_decay", 1.0),
        ("rms_decay", -0.5),
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
    with pytest.raises(ConfigError, match=rf"optimizer\.{field}\b") as raised:
        optimizers.validate_optimizer_config(_opt_config(**{field: value}))
    assert "\n" not in str(raised.value)


def test_bad_b1_message():
    # Checked whatever the optimiser, so a bad value never waits for an Adam run to surface.
    with pytest.raises(ConfigError) as raised:
        optimizers.validate_optimizer_config(_opt_config(name="adam", b1=1.5))
    assert str(raised.value) == "optimizer.b1 must be in [0, 1), got 1.5"


def test_unknown_optimizer_lists_choices():
    known = ", ".join(sorted(optimizers.OPTIMIZERS))
    cfg = _opt_config(name="lbfgs")
    for call in (
        optimizers.validate_optimizer_config,
        lambda cfg: optimizers.make_optimizer(cfg, {}, total_steps=10),
    ):
        with pytest.raises(ConfigError, match=r"optimizer\.name") as raised:
            call(cfg)
        assert known in str(raised.value)
        assert "\n" not in str(raised.value)
