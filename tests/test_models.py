"""Tests of jaxnn.nn's MLP family and its parts: activations, initialisers, the MLP's forward pass, gradients, dropout,
PReLU, parameter tables and config validation."""

from __future__ import annotations

import functools
import itertools
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxnn import front_end
from jaxnn.config import default_config
from jaxnn.errors import ConfigError
from jaxnn.nn import activations, family, layer_table, layers, losses, mlp


@pytest.fixture(autouse=True)
def _strict_dtype_promotion():
    # A context manager rather than jax.config.update: the setting must not leak into other
    # test modules of the same pytest process.
    with jax.numpy_dtype_promotion("strict"):
        yield


def _init(model: mlp.MLP, x: jax.Array, seed: int = 0):
    # jit: eager initialisation dispatches (and compiles) one op at a time, which is slow.
    return jax.jit(model.init)(jax.random.key(seed), x)


def _apply(model: mlp.MLP, variables, x: jax.Array, **kwargs):
    return jax.jit(functools.partial(model.apply, **kwargs))(variables, x)


def _np_gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _np_activation(name: str, x: np.ndarray, slope: float) -> np.ndarray:
    return {
        "sigmoid": lambda: 1 / (1 + np.exp(-x)),
        "tanh": lambda: np.tanh(x),
        "relu": lambda: np.maximum(x, 0),
        "leaky_relu": lambda: np.where(x >= 0, x, slope * x),
        "prelu": lambda: np.where(x >= 0, x, slope * x),
        "elu": lambda: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        "gelu": lambda: _np_gelu(x),
        "identity": lambda: x,
    }[name]()


def test_registries_hold_the_documented_names():
    assert set(activations.ACTIVATIONS) == {
        "sigmoid", "tanh", "relu", "leaky_relu", "prelu", "elu", "gelu", "identity",
    }  # fmt: skip
    assert set(activations.INITIALIZERS) == {
        "he_normal", "he_uniform", "glorot_normal", "glorot_uniform", "lecun_normal", "normal",
        "kaiming_normal", "kaiming_uniform", "xavier_normal", "xavier_uniform",
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_activation_matches_numpy(name):
    x = np.linspace(-4, 4, 81, dtype=np.float32)
    got = activations.ACTIVATIONS[name](jnp.asarray(x), 0.2)
    np.testing.assert_allclose(got, _np_activation(name, x, 0.2), rtol=1e-5, atol=1e-6)


def _set_params(rng: np.random.Generator, features: int, hidden, outputs: int, slopes=None):
    params, widths = {}, [features, *hidden]
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
        params[f"hidden_{i}"] = {
            "kernel": rng.normal(size=(fan_in, fan_out)).astype(np.float32),
            "bias": rng.normal(size=(fan_out,)).astype(np.float32),
        }
        if slopes is not None:
            params[f"prelu_{i}"] = {"negative_slope": np.float32(slopes[i])}
    params["head"] = {
        "kernel": rng.normal(size=(widths[-1], outputs)).astype(np.float32),
        "bias": rng.normal(size=(outputs,)).astype(np.float32),
    }
    return params


@pytest.mark.parametrize("name", sorted(activations.ACTIVATIONS))
def test_forward_pass_matches_numpy(name):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 2, 2)).astype(np.float32)  # flattened to 4 features
    slopes = [0.3, -0.2] if name == "prelu" else None
    params = _set_params(rng, 4, (3, 2), 2, slopes)
    model = mlp.MLP(hidden=(3, 2), num_outputs=2, activation=name, negative_slope=0.1)

    got = model.apply({"params": params}, jnp.asarray(x))

    h = x.reshape(5, 4)
    for i in range(2):
        layer = params[f"hidden_{i}"]
        slope = slopes[i] if slopes else 0.1
        h = _np_activation(name, h @ layer["kernel"] + layer["bias"], slope)
    expected = h @ params["head"]["kernel"] + params["head"]["bias"]
    assert got.shape == (5, 2)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_empty_hidden_is_a_linear_model():
    rng = np.random.default_rng(1)
    params = _set_params(rng, 3, (), 2)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    got = mlp.MLP(hidden=(), num_outputs=2).apply({"params": params}, jnp.asarray(x))
    np.testing.assert_allclose(
        got, x @ params["head"]["kernel"] + params["head"]["bias"], rtol=1e-5
    )


def test_preactivations_are_sown():
    rng = np.random.default_rng(2)
    params = _set_params(rng, 3, (4, 2), 2)
    x = rng.normal(size=(6, 3)).astype(np.float32)
    model = mlp.MLP(hidden=(4, 2), num_outputs=2, activation="tanh")
    _, state = model.apply({"params": params}, jnp.asarray(x), mutable=["intermediates"])
    sown = state["intermediates"]
    assert set(sown) == {"preactivation_0", "preactivation_1"}
    first = x @ params["hidden_0"]["kernel"] + params["hidden_0"]["bias"]
    np.testing.assert_allclose(sown["preactivation_0"][0], first, rtol=1e-5)
    assert sown["preactivation_1"][0].shape == (6, 2)


FAN_IN, FAN_OUT = 1000, 500
# name -> (expected stddev of the kernel, uniform bound or None)
_INIT_STATS = {
    "he_normal": (math.sqrt(2 / FAN_IN), None),
    "kaiming_normal": (math.sqrt(2 / FAN_IN), None),
    "he_uniform": (math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    "kaiming_uniform": (math.sqrt(2 / FAN_IN), math.sqrt(6 / FAN_IN)),
    "glorot_normal": (math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "xavier_normal": (math.sqrt(2 / (FAN_IN + FAN_OUT)), None),
    "glorot_uniform": (math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "xavier_uniform": (math.sqrt(2 / (FAN_IN + FAN_OUT)), math.sqrt(6 / (FAN_IN + FAN_OUT))),
    "lecun_normal": (math.sqrt(1 / FAN_IN), None),
    "normal": (0.05, None),
}


def test_every_initializer_has_expected_statistics():
    assert set(_INIT_STATS) == set(activations.INITIALIZERS)


@pytest.mark.parametrize("name", sorted(_INIT_STATS))
def test_initializer_statistics(name):
    expected_std, bound = _INIT_STATS[name]
    model = mlp.MLP(hidden=(FAN_OUT,), num_outputs=3, initializer=name, init_stddev=0.05)
    params = _init(model, jnp.zeros((1, FAN_IN)))["params"]
    kernel = np.asarray(params["hidden_0"]["kernel"])
    assert kernel.shape == (FAN_IN, FAN_OUT)
    assert params["head"]["kernel"].shape == (FAN_OUT, 3)
    np.testing.assert_array_equal(params["hidden_0"]["bias"], np.zeros(FAN_OUT))
    np.testing.assert_array_equal(params["head"]["bias"], np.zeros(3))
    assert abs(kernel.mean()) < 0.01 * expected_std
    assert kernel.std() == pytest.approx(expected_std, rel=0.02)
    if bound is not None:
        assert np.abs(kernel).max() <= bound
        assert np.abs(kernel).max() > 0.99 * bound


def test_init_scale_multiplies_every_kernel():
    x = jnp.zeros((1, 6))
    base = _init(mlp.MLP(hidden=(4,), num_outputs=2), x, 3)["params"]
    scaled = _init(mlp.MLP(hidden=(4,), num_outputs=2, init_scale=2.5), x, 3)
    for layer in ("hidden_0", "head"):
        np.testing.assert_allclose(
            scaled["params"][layer]["kernel"], 2.5 * base[layer]["kernel"], rtol=1e-6
        )


def test_unknown_activation_or_initializer_lists_choices():
    x = jnp.zeros((1, 3))
    with pytest.raises(ConfigError, match=r"model.activation.*relu.*tanh"):
        mlp.MLP(hidden=(2,), num_outputs=1, activation="swish").init(jax.random.key(0), x)
    with pytest.raises(ConfigError, match=r"model.init.*glorot_normal.*he_normal"):
        mlp.MLP(hidden=(2,), num_outputs=1, initializer="zeros").init(jax.random.key(0), x)


@pytest.mark.parametrize("activation", ["tanh", "prelu", "elu"])
def test_gradients_match_finite_differences(activation):
    with jax.enable_x64(True):
        model = mlp.MLP(hidden=(4, 3), num_outputs=3, activation=activation, negative_slope=0.3)
        rng = np.random.default_rng(4)
        x = jnp.asarray(rng.normal(size=(8, 5)))
        labels = jnp.asarray(rng.integers(0, 3, size=8))
        params = _init(model, x.astype(jnp.float32), 1)["params"]
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params)

        @jax.jit
        def loss(p):
            outputs = model.apply({"params": p}, x)
            return losses.per_example_loss("cross_entropy", outputs, labels).mean()

        grads = jax.grad(loss)(params)
        flat, unravel = ravel_pytree(params)
        eps = 1e-6
        numeric = np.array(
            [
                (loss(unravel(flat.at[i].add(eps))) - loss(unravel(flat.at[i].add(-eps))))
                / (2 * eps)
                for i in range(flat.size)
            ]
        )
        analytic = np.asarray(ravel_pytree(grads)[0])
        assert analytic.dtype == np.float64
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-9)


def _dropout_setup(**kwargs):
    model = mlp.MLP(hidden=(64, 64), num_outputs=4, **kwargs)
    x = jax.random.normal(jax.random.key(5), (16, 8))
    params = _init(model, x, 6)
    return model, params, x


def test_dropout_changes_training_outputs_only():
    model, params, x = _dropout_setup(dropout=0.5)
    key = jax.random.key(7)
    evaluation = _apply(model, params, x)
    training = _apply(model, params, x, train=True, dropout_key=key)
    assert not np.allclose(training, evaluation)
    np.testing.assert_array_equal(_apply(model, params, x, dropout_key=key), evaluation)
    np.testing.assert_array_equal(_apply(model, params, x, train=True), evaluation)
    np.testing.assert_array_equal(_apply(model, params, x, train=True, dropout_key=key), training)
    other = _apply(model, params, x, train=True, dropout_key=jax.random.key(8))
    assert not np.allclose(other, training)


def test_input_dropout_zeroes_inputs_in_training_only():
    model, params, x = _dropout_setup(input_dropout=0.5)
    key = jax.random.key(7)
    evaluation = _apply(model, params, x)
    training = _apply(model, params, x, train=True, dropout_key=key)
    assert not np.allclose(training, evaluation)
    np.testing.assert_array_equal(_apply(model, params, x, train=True), evaluation)
    # The same as feeding the inputs with the dropped features zeroed (and the rest scaled) by hand.
    input_key = jax.random.fold_in(key, mlp.INPUT_TAG)
    dropped = layers.inverted_dropout(x, 0.5, input_key)
    plain = mlp.MLP(hidden=(64, 64), num_outputs=4)
    np.testing.assert_allclose(training, _apply(plain, params, dropped), rtol=1e-5, atol=1e-6)


def test_python_zero_dropout_is_left_out_of_the_program():
    model, params, x = _dropout_setup(dropout=0.0)
    no_dropout = mlp.MLP(hidden=(64, 64), num_outputs=4)

    key = jax.random.key(9)
    training = _apply(model, params, x, train=True, dropout_key=key)
    np.testing.assert_array_equal(training, _apply(no_dropout, params, x))

    def program(rate: float) -> str:
        dropout_model = mlp.MLP(hidden=(64, 64), num_outputs=4, dropout=rate)
        apply = functools.partial(dropout_model.apply, train=True)
        return str(jax.make_jaxpr(apply)(params, x, dropout_key=key))

    assert "random_bits" not in program(0.0)
    assert "random_bits" in program(0.5)


def test_traced_dropout_rate_under_vmap():
    _, params, x = _dropout_setup()
    key = jax.random.key(10)
    rates = jnp.array([0.0, 0.3, 0.7])

    def member(rate):
        model = mlp.MLP(hidden=(64, 64), num_outputs=4, dropout=rate)
        return model.apply(params, x, train=True, dropout_key=key)

    stacked = jax.jit(jax.vmap(member))(rates)
    plain = _apply(mlp.MLP(hidden=(64, 64), num_outputs=4), params, x)
    np.testing.assert_allclose(stacked[0], plain, rtol=1e-5, atol=1e-6)
    for i, rate in enumerate([0.0, 0.3, 0.7]):
        single = mlp.MLP(hidden=(64, 64), num_outputs=4, dropout=rate)
        expected = _apply(single, params, x, train=True, dropout_key=key)
        np.testing.assert_allclose(stacked[i], expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(stacked[1], stacked[2])


@pytest.mark.parametrize("rate", [0.2, 0.6])
def test_dropout_drops_the_rate_and_keeps_the_mean(rate):
    x = jnp.ones((200, 500))
    dropped = np.asarray(layers.inverted_dropout(x, rate, jax.random.key(11)))
    assert (dropped == 0).mean() == pytest.approx(rate, abs=0.01)
    np.testing.assert_allclose(dropped[dropped != 0], 1 / (1 - rate), rtol=1e-6)
    assert dropped.mean() == pytest.approx(1.0, abs=0.02)


def test_prelu_slope_is_a_learnable_parameter():
    model = mlp.MLP(hidden=(6, 5), num_outputs=3, activation="prelu", negative_slope=0.25)
    x = jax.random.normal(jax.random.key(12), (32, 4))
    params = _init(model, x, 13)["params"]
    for i in range(2):
        slope = params[f"prelu_{i}"]["negative_slope"]
        assert slope.shape == ()
        assert float(slope) == 0.25
    labels = jnp.arange(32) % 3

    def loss(p):
        outputs = model.apply({"params": p}, x)
        return losses.per_example_loss("cross_entropy", outputs, labels).mean()

    grads = jax.jit(jax.grad(loss))(params)
    for i in range(2):
        assert abs(float(grads[f"prelu_{i}"]["negative_slope"])) > 1e-6
    leaky = mlp.MLP(hidden=(6, 5), num_outputs=3, activation="leaky_relu", negative_slope=0.25)
    body = {k: v for k, v in params.items() if not k.startswith("prelu")}
    np.testing.assert_allclose(
        _apply(model, {"params": params}, x), _apply(leaky, {"params": body}, x), rtol=1e-6
    )


def test_prelu_initial_slope_may_be_traced():
    x = jnp.zeros((1, 3))

    def init(slope):
        model = mlp.MLP(hidden=(2,), num_outputs=1, activation="prelu", negative_slope=slope)
        return model.init(jax.random.key(0), x)["params"]["prelu_0"]["negative_slope"]

    np.testing.assert_allclose(jax.jit(jax.vmap(init))(jnp.array([0.1, 0.5])), [0.1, 0.5])


def test_layer_table_and_count():
    model = mlp.MLP(hidden=(1,) * 11, num_outputs=2, activation="prelu")
    variables = _init(model, jnp.zeros((1, 3)))
    table = layer_table.layer_table(variables, order=mlp.layer_order)
    names = [name for name, _, _ in table]
    expected = []
    for i in range(11):
        expected += [f"hidden_{i}/kernel", f"hidden_{i}/bias", f"prelu_{i}/negative_slope"]
    assert names == [*expected, "head/kernel", "head/bias"]
    assert table[0] == ("hidden_0/kernel", (3, 1), 3)
    assert table[2] == ("prelu_0/negative_slope", (), 1)
    assert table[-2] == ("head/kernel", (1, 2), 2)
    assert layer_table.layer_table(variables["params"], order=mlp.layer_order) == table
    # Without the family's order, names sort naturally: hidden_2 before hidden_10.
    natural = [name for name, _, _ in layer_table.layer_table(variables)]
    assert sorted(natural) == sorted(names)
    assert natural[:2] == ["head/bias", "head/kernel"]
    assert natural.index("hidden_2/kernel") < natural.index("hidden_10/bias")
    assert natural.index("hidden_9/kernel") < natural.index("hidden_10/bias")
    total = 3 + 1 + 1 + 10 * (1 + 1 + 1) + 2 + 2
    assert layer_table.count_params(variables) == total
    assert layer_table.count_params(variables["params"]) == total


def test_format_layer_table():
    variables = _init(mlp.MLP(hidden=(100,), num_outputs=10), jnp.zeros((1, 40)))
    text = layer_table.format_layer_table(variables, order=mlp.layer_order)
    lines = text.splitlines()
    assert lines[0].split() == ["parameter", "shape", "count"]
    assert lines[2].split() == ["hidden_0/kernel", "(40,", "100)", "4,000"]
    assert lines[-1].split() == ["total", "5,110"]
    rows = [line for line in lines if not line.startswith("-")]
    assert len({len(line) for line in rows}) == 1  # columns aligned


def test_is_head_path():
    assert family.is_head_path(("params", "head", "kernel"))
    assert family.is_head_path(("head", "bias"))
    assert family.is_head_path("head/kernel")
    assert not family.is_head_path(("params", "hidden_0", "kernel"))
    assert not family.is_head_path(("prelu_0", "negative_slope"))
    assert not family.is_head_path(())
    variables = _init(mlp.MLP(hidden=(2,), num_outputs=1), jnp.zeros((1, 3)))
    paths = [path for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]]
    assert [family.is_head_path(p) for p in paths] == [True, True, False, False]
    labels = family.body_head_labels(variables)
    assert labels["params"]["head"] == {"kernel": "head", "bias": "head"}
    assert labels["params"]["hidden_0"] == {"kernel": "body", "bias": "body"}
    assert mlp.BODY_PREFIX == "hidden_" and mlp.HEAD == "head"
    # Another model's head is named by the caller.
    assert family.is_head_path(("params", "hidden_0", "kernel"), head=("hidden_0",))
    assert not family.is_head_path(("params", "head", "kernel"), head=("out",))
    labels = family.body_head_labels(variables, head=("hidden_0",))
    assert labels["params"]["head"] == {"kernel": "body", "bias": "body"}
    assert labels["params"]["hidden_0"] == {"kernel": "head", "bias": "head"}


def _model_config(**overrides) -> ml_collections.ConfigDict:
    """The schema's model section (an MLP) with `overrides`."""
    cfg = default_config().model
    for key, value in overrides.items():
        cfg[key] = value
    return cfg


def test_build_reads_the_config():
    cfg = _model_config(hidden=(7, 3), activation="tanh", init="normal", init_stddev=0.2)
    hparams = {"negative_slope": 0.01, "dropout": 0.25, "init_scale": 1.0, "input_dropout": 0.0}
    model = mlp.build(cfg, hparams, 4)
    assert model.hidden == (7, 3) and model.num_outputs == 4
    assert model.activation == "tanh" and model.initializer == "normal"
    assert model.init_stddev == 0.2 and model.dropout == 0.25 and model.init_scale == 1.0
    params = _init(model, jnp.zeros((1, 5)))["params"]
    assert params["hidden_0"]["kernel"].shape == (5, 7)
    assert params["head"]["kernel"].shape == (3, 4)


def test_valid_model_configs_pass():
    mlp.FAMILY.validate(_model_config())
    mlp.FAMILY.validate(_model_config(hidden=()))
    mlp.FAMILY.validate(_model_config(activation="prelu", init="xavier_uniform", dropout=0.5))


@pytest.mark.parametrize(
    "field, value",
    [
        ("activation", "swish"),
        ("init", "zeros"),
        ("hidden", (100, 0)),
        ("hidden", (-3,)),
        ("hidden", (10.5,)),
        ("dropout", 1.0),
        ("dropout", -0.1),
        ("dropout", float("nan")),
        ("init_stddev", 0.0),
        ("init_stddev", -1.0),
        ("init_scale", 0.0),
        ("init_scale", -2.0),
        ("negative_slope", float("inf")),
        ("negative_slope", float("nan")),
    ],
)
def test_bad_model_config_names_the_field(field, value):
    config = default_config()
    config.model[field] = value
    with pytest.raises(ConfigError, match=f"model.{field}") as raised:
        front_end.resolve(config)
    assert "\n" not in str(raised.value)


def test_unknown_activation_message_lists_choices():
    with pytest.raises(ConfigError) as raised:
        mlp.FAMILY.validate(_model_config(activation="swish"))
    assert ", ".join(sorted(activations.ACTIVATIONS)) in str(raised.value)
