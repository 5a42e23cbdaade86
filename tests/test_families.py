"""The model families beyond the MLP (cnn1d, gru, lstm, rnn, resmlp): forward shapes, hand-checked
small cases, finite-difference gradients, member i of a vmapped run equal to the single run,
diagnostics, layer tables, and the config mistakes each refuses."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import jaxnn
from jaxnn import front_end
from jaxnn.core import ensemble, loop, train
from jaxnn.errors import ConfigError
from jaxnn.nn import family as family_lib
from jaxnn.nn import layer_table, losses, recurrent, registry
from jaxnn.nn.family import apply_model, init_model
from tests.helpers import blobs, small_config, tiered

# A small model of each family (dotted config overrides), and a sequence data set for them.
SMALL = {
    "cnn1d": {"model.channels": (4, 3), "model.kernel_sizes": (3,), "model.hidden": ()},
    **{
        cell: {"model.state_size": 5, "model.chunk": 2, "model.hidden": (100, 100)}
        for cell in ("gru", "lstm", "rnn")
    },
    "resmlp": {"model.width": 6, "model.depth": 2, "model.hidden": (100, 100)},
}
FAMILIES = sorted(SMALL)


def _config(name: str, **overrides):
    return small_config(**{"model.name": name, **SMALL[name], **overrides})


def _sequences(seed: int = 0):
    """Blobs whose 12 features are read as a sequence of 12 positions."""
    return blobs(num_features=12, seed=seed)


def _module(name: str, num_outputs: int = 3, **overrides):
    config = _config(name, **overrides)
    spec = front_end.resolve(config)
    hparams = {f.hparam: float(jnp.float32(config.model[f.field.split(".")[1]]))
               for f in spec.family.numeric_fields}  # fmt: skip
    return spec.family, spec.family.build(config.model, hparams, num_outputs)


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


# --- Forward shapes ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("feature_shape", [(12,), (12, 2)])
def test_forward_maps_a_batch_to_one_output_per_class(name, feature_shape):
    _, module = _module(name, num_outputs=5)
    x = jnp.ones((7, *feature_shape))
    params = jax.jit(lambda x: init_model(module, jax.random.key(0), x))(x)["params"]
    outputs = apply_model(module, params, x)
    assert outputs.shape == (7, 5)
    assert "head" in params and len(params) > 1


@pytest.mark.parametrize(
    ("overrides", "conv_kernels", "head_inputs"),
    [
        ({}, [(3, 1, 4), (3, 4, 3)], 12 * 3),
        ({"model.strides": (2,)}, [(3, 1, 4), (3, 4, 3)], 3 * 3),
        ({"model.padding": "valid", "model.pool": "max"}, [(3, 1, 4), (3, 4, 3)], 1 * 3),
        ({"model.kernel_sizes": (5, 3), "model.hidden": (6,)}, [(5, 1, 4), (3, 4, 3)], 6),
    ],
)
def test_cnn1d_parameter_shapes_follow_kernels_strides_padding_and_pooling(
    overrides, conv_kernels, head_inputs
):
    _, module = _module("cnn1d", **overrides)
    params = init_model(module, jax.random.key(0), jnp.ones((2, 12)))["params"]
    assert [params[f"conv_{i}"]["kernel"].shape for i in range(2)] == conv_kernels
    assert params["head"]["kernel"].shape == (head_inputs, 3)


# --- Hand-checked small cases -----------------------------------------------------------------


def test_cnn1d_is_numpys_convolution_then_relu_then_a_dense_head():
    _, module = _module("cnn1d", **{"model.channels": (2,), "model.padding": "valid"})
    rng = np.random.default_rng(3)
    x = rng.normal(size=(4, 12)).astype(np.float32)
    params = jax.tree.map(
        lambda p: rng.normal(size=p.shape).astype(np.float32),
        init_model(module, jax.random.key(0), jnp.asarray(x))["params"],
    )
    kernel, bias = params["conv_0"]["kernel"], params["conv_0"]["bias"]
    features = np.stack(
        [
            np.stack([np.convolve(row, kernel[::-1, 0, c], mode="valid") for row in x]) + bias[c]
            for c in range(2)
        ],
        axis=-1,
    )  # [B, 10 positions, 2 channels]
    hidden = np.maximum(features, 0).reshape(4, -1)
    expected = hidden @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(apply_model(module, params, jnp.asarray(x)), expected, rtol=1e-5)


def _sigmoid(v):
    return 1 / (1 + np.exp(-v))


def _numpy_recurrent(cell: str, params, x: np.ndarray, chunk: int, readout: str) -> np.ndarray:
    """The recurrent families' equations (jaxnn.nn.recurrent's docstring), step by step."""
    wx, bx = params["input"]["kernel"], params["input"]["bias"]
    wh = params["recurrent"]["kernel"]
    size = wh.shape[0]
    steps = x.reshape(x.shape[0], -1, chunk)  # one channel: [B, T, chunk]
    h = np.zeros((x.shape[0], size))
    c = np.zeros_like(h)
    states = []
    for t in range(steps.shape[1]):
        xp = steps[:, t] @ wx + bx
        if cell == "rnn":
            h = np.tanh(xp + h @ wh)
        elif cell == "gru":
            hp = h @ wh + params["recurrent"]["bias"]
            r = _sigmoid(xp[:, :size] + hp[:, :size])
            z = _sigmoid(xp[:, size : 2 * size] + hp[:, size : 2 * size])
            n = np.tanh(xp[:, 2 * size :] + r * hp[:, 2 * size :])
            h = (1 - z) * n + z * h
        else:
            i, f, g, o = np.split(xp + h @ wh, 4, axis=-1)
            c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
            h = _sigmoid(o) * np.tanh(c)
        states.append(h)
    features = states[-1] if readout == "last" else np.mean(states, axis=0)
    return features @ params["head"]["kernel"] + params["head"]["bias"]


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
@pytest.mark.parametrize("readout", ["last", "mean"])
def test_recurrent_nets_follow_their_equations(cell, readout):
    _, module = _module(cell, **{"model.readout": readout, "model.chunk": 3})
    rng = np.random.default_rng(5)
    x = rng.normal(size=(4, 12)).astype(np.float32)
    params = jax.tree.map(
        lambda p: (rng.normal(size=p.shape) * 0.7).astype(np.float32),
        init_model(module, jax.random.key(0), jnp.asarray(x))["params"],
    )
    assert params["input"]["kernel"].shape == (3, {"gru": 15, "lstm": 20, "rnn": 5}[cell])
    expected = _numpy_recurrent(cell, params, x.astype(np.float64), 3, readout)
    got = apply_model(module, params, jnp.asarray(x))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("cell", ["gru", "lstm", "rnn"])
def test_one_step_is_the_cells_equations(cell):
    rng = np.random.default_rng(6)
    size, gates = 3, {"gru": 3, "lstm": 4, "rnn": 1}[cell]
    h, c = rng.normal(size=(2, size)), rng.normal(size=(2, size))
    x_proj = rng.normal(size=(2, gates * size))
    kernel, bias = rng.normal(size=(size, gates * size)), rng.normal(size=gates * size)
    as32 = lambda a: jnp.asarray(a, jnp.float32)
    hp = h @ kernel
    if cell == "rnn":
        (new, _) = recurrent.rnn_step(as32(h), as32(x_proj), as32(kernel), None)
        expected = np.tanh(x_proj + hp)
    elif cell == "gru":
        (new, _) = recurrent.gru_step(as32(h), as32(x_proj), as32(kernel), as32(bias))
        hp = hp + bias
        r = _sigmoid(x_proj[:, :size] + hp[:, :size])
        z = _sigmoid(x_proj[:, size : 2 * size] + hp[:, size : 2 * size])
        n = np.tanh(x_proj[:, 2 * size :] + r * hp[:, 2 * size :])
        expected = (1 - z) * n + z * h
    else:
        ((new, new_c), _) = recurrent.lstm_step(
            (as32(h), as32(c)), as32(x_proj), as32(kernel), None
        )
        i, f, g, o = np.split(x_proj + hp, 4, axis=-1)
        expected_c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        np.testing.assert_allclose(new_c, expected_c, rtol=1e-5, atol=1e-6)
        expected = _sigmoid(o) * np.tanh(expected_c)
    np.testing.assert_allclose(new, expected, rtol=1e-5, atol=1e-6)


# --- Gradients --------------------------------------------------------------------------------

GRADIENT_CASES = {
    "cnn1d": {"model.activation": "tanh", "model.layer_norm": True, "model.hidden": (3,)},
    "gru": {"model.readout": "mean"},
    "resmlp": {"model.activation": "elu"},
}


@pytest.mark.parametrize("name", tiered(FAMILIES, {"cnn1d", "gru", "resmlp"}))
def test_gradients_match_finite_differences(name):
    _, module = _module(name, **GRADIENT_CASES.get(name, {}))
    rng = np.random.default_rng(4)
    x32 = jnp.asarray(rng.normal(size=(5, 12)), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, size=5))
    params32 = init_model(module, jax.random.key(1), x32)["params"]
    with jax.enable_x64(True):
        params = jax.tree.map(lambda p: jnp.asarray(p, jnp.float64), params32)
        x = jnp.asarray(x32, jnp.float64)

        def loss(p):
            outputs = module.apply({"params": p}, x)
            return losses.per_example_loss("cross_entropy", outputs, labels).mean()

        flat, unravel = ravel_pytree(params)
        eps = 1e-6
        basis = jnp.eye(flat.size, dtype=jnp.float64) * eps
        numeric = jax.jit(
            jax.vmap(lambda d: (loss(unravel(flat + d)) - loss(unravel(flat - d))) / (2 * eps))
        )(basis)
        analytic = ravel_pytree(jax.jit(jax.grad(loss))(params))[0]
        assert analytic.dtype == jnp.float64
        np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)


# --- The ensemble: member i is the single run -------------------------------------------------


@pytest.mark.parametrize("name", tiered(FAMILIES, {"cnn1d"}))
def test_member_i_equals_fit_alone_with_its_key_and_hparams(name):
    data = _sequences()
    config = _config(name, **{"restarts.num": 2, "model.dropout": 0.2})
    sweep = {"model.init_scale": [0.5, 1.0]}
    root = jax.random.PRNGKey(3)
    spec = front_end.resolve(config, sweep=sweep)
    result = jaxnn.fit_ensemble(config, data, root, sweep=sweep)
    assert len(result.members) == 4
    for member in result.members:
        alone = loop.fit(
            config, data, train.member_key(root, member.seed_index), hparams=member.hparams(spec)
        )
        stacked = ensemble.member_state(result.state, member.index)
        for a, b in zip(_leaves(stacked.params), _leaves(alone.state.params), strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert np.all(np.isfinite(last)) and np.mean(last) < np.mean(first)
    # The swept init_scale gives two random starts of one seed different weights.
    a, b = (ensemble.member_state(result.state, i).params for i in (0, 2))
    assert not np.allclose(_leaves(a)[0], _leaves(b)[0])


# --- Diagnostics and layer tables -------------------------------------------------------------


def test_cnn1d_preactivations_treat_each_channel_as_a_unit():
    family, module = _module("cnn1d", **{"model.hidden": (5,), "model.strides": (2,)})
    x = jnp.ones((3, 12))
    params = init_model(module, jax.random.key(0), x)["params"]
    pre = family.preactivations(module, {"params": params}, x)
    assert {name: value.shape for name, value in pre.items()} == {
        "conv_0": (3 * 6, 4),
        "conv_1": (3 * 3, 3),
        "hidden_0": (3, 5),
    }


def test_cnn1d_layer_table_is_in_layer_order():
    family, module = _module(
        "cnn1d", **{"model.layer_norm": True, "model.activation": "prelu", "model.hidden": (5,)}
    )
    params = init_model(module, jax.random.key(0), jnp.ones((2, 12)))["params"]
    names = [row[0] for row in layer_table.layer_table(params, order=family.layer_order)]
    assert names == [
        "conv_0/kernel", "conv_0/bias", "norm_0/bias", "norm_0/scale", "prelu_0/negative_slope",
        "conv_1/kernel", "conv_1/bias", "norm_1/bias", "norm_1/scale", "prelu_1/negative_slope",
        "hidden_0/kernel", "hidden_0/bias", "prelu_hidden_0/negative_slope",
        "head/kernel", "head/bias",
    ]  # fmt: skip
    labels = family_lib.body_head_labels(params, family.head)
    assert labels["head"]["kernel"] == "head" and labels["conv_0"]["kernel"] == "body"


@pytest.mark.parametrize("name", sorted(registry.MODEL_FAMILIES))
def test_every_family_is_registered_and_declares_its_fields(name):
    family = registry.family(name)
    assert family.fields is not None
    declared = {spec.name for spec in family.fields}
    for field in family.numeric_fields:
        assert field.field.split(".")[1] in declared
    assert declared <= set(jaxnn.default_config().model)


def test_resmlp_blocks_are_pre_norm_residual_and_in_layer_order():
    family, module = _module("resmlp", **{"model.activation": "prelu"})
    x = jax.random.normal(jax.random.key(1), (3, 12))
    params = init_model(module, jax.random.key(0), x)["params"]
    names = [row[0] for row in layer_table.layer_table(params, order=family.layer_order)]
    assert names[:3] == ["embed/kernel", "embed/bias", "block_0/norm/bias"]
    assert names[-4:] == ["norm/bias", "norm/scale", "head/kernel", "head/bias"]
    assert params["block_1"]["dense_1"]["kernel"].shape == (6, 6)
    # A block whose last layer is zero is the identity: the residual path carries x through.
    zeroed = jax.tree.map(lambda p: p, params)
    for i in range(2):
        zeroed[f"block_{i}"]["dense_1"] = jax.tree.map(
            jnp.zeros_like, params[f"block_{i}"]["dense_1"]
        )
    embedded = x @ params["embed"]["kernel"] + params["embed"]["bias"]
    normed = (embedded - embedded.mean(-1, keepdims=True)) / jnp.sqrt(
        embedded.var(-1, keepdims=True) + 1e-6
    )
    expected = normed @ params["head"]["kernel"] + params["head"]["bias"]
    np.testing.assert_allclose(apply_model(module, zeroed, x), expected, rtol=1e-4, atol=1e-5)
    pre = family.preactivations(module, {"params": params}, x)
    assert {k: v.shape for k, v in pre.items()} == {"block_0": (3, 6), "block_1": (3, 6)}


# --- Config mistakes --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.channels": (8,)}, "model.channels is read by the cnn1d, cnn2d families, not by model.name=mlp"),
        ({"model.conv_impl": "lax"}, "model.conv_impl is read by the cnn1d, cnn2d, resnet families"),
        ({"model.name": "cnn1d", "model.input_dropout": 0.1}, "model.input_dropout is read by the mlp family"),
        ({"model.name": "cnn1d", "model.pool": "min"}, "model.pool must be one of none, max, avg"),
        ({"model.name": "cnn1d", "model.padding": "full"}, "model.padding must be one of same, valid"),
        ({"model.name": "cnn1d", "model.conv_impl": "cudnn"}, "model.conv_impl must be one of auto"),
        ({"model.name": "cnn1d", "model.kernel_sizes": (3, 5)}, "model.kernel_sizes gives 2 values for 3"),
        ({"model.name": "cnn1d", "model.strides": (0,)}, "model.strides values must all be >= 1"),
        ({"model.name": "cnn1d", "model.channels": ()}, "model.channels must name at least one"),
        ({"model.name": "cnn1d", "model.pool_size": 0}, "model.pool_size must be an integer in "),
        ({"model.name": "gru", "model.hidden": (100, 100), "model.readout": "first"}, "model.readout must be one of last, mean"),
        ({"model.name": "rnn", "model.hidden": (100, 100), "model.chunk": 0}, "model.chunk must be an integer in "),
        ({"model.name": "lstm", "model.hidden": (100, 100), "model.state_size": 0}, "model.state_size must be an integer in "),
        ({"model.name": "gru"}, "model.hidden is read by the mlp, cnn1d, cnn2d families"),
        ({"model.name": "lstm", "model.hidden": (100, 100), "model.activation": "tanh"}, "model.activation is read by"),
        ({"model.state_size": 8}, "model.state_size is read by the gru, lstm, rnn families"),
        ({"model.depth": 3}, "model.depth is read by the resmlp family, not by model.name=mlp"),
        ({"model.name": "resmlp", "model.hidden": (100, 100), "model.width": 0}, "model.width must be an integer in "),
        ({"model.name": "rnn", "model.hidden": (100, 100), "model.gate_init": "chrono"}, "model.gate_init is read by the gru, lstm families, not by model.name=rnn"),
        ({"model.name": "gru", "model.hidden": (100, 100), "model.gate_init": "warp"}, "model.gate_init must be one of standard, chrono"),
        ({"model.name": "gru", "model.hidden": (100, 100), "model.forget_bias": 2.0}, "model.forget_bias is read by the lstm family, not by model.name=gru"),
        ({"model.name": "lstm", "model.hidden": (100, 100), "model.forget_bias": float("inf")}, "model.forget_bias must be a finite number"),
    ],
)  # fmt: skip
def test_bad_model_configs_are_refused_before_data(overrides, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        front_end.resolve(small_config(**overrides))


def test_another_familys_field_at_its_default_is_accepted():
    front_end.resolve(small_config(**{"model.channels": (32, 32, 32), "model.chunk": 1}))


@pytest.mark.parametrize(
    ("name", "overrides", "message"),
    [
        ("cnn1d", {"model.kernel_sizes": (13,)}, "conv layer 0 has a kernel of 13 positions"),
        ("cnn1d", {"model.padding": "valid", "model.kernel_sizes": (7,)}, "conv layer 1 has a kernel of 7 positions but its input has 6"),
        ("cnn1d", {"model.strides": (13,)}, "model.strides: conv layer 0 has stride 13"),
        ("gru", {"model.chunk": 5}, "model.chunk=5 does not divide the examples' 12 positions"),
        ("lstm", {"model.chunk": 24}, "model.chunk=24 does not divide"),
        ("cnn1d", {"model.kernel_sizes": (1,), "model.pool": "avg", "model.pool_size": 5}, "model.pool_size=5: pooling after conv layer 1"),
    ],
)  # fmt: skip
def test_shapes_that_do_not_fit_the_data_are_refused_from_python(name, overrides, message):
    with pytest.raises(ConfigError, match=message):
        jaxnn.fit_ensemble(_config(name, **overrides), _sequences(), jax.random.PRNGKey(0))


# --- Gate initialisation ----------------------------------------------------------------------


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_chrono_init_biases_the_keep_gate_by_log_uniform_1_to_t_minus_1(cell):
    # 12 positions, chunk 2: T = 6 time steps, so the keep gate's bias is in [0, log 5].
    _, module = _module(cell, **{"model.gate_init": "chrono", "model.state_size": 64})
    params = init_model(module, jax.random.PRNGKey(0), _sequences().x_train[:2])["params"]
    size, bias = 64, np.asarray(params["input"]["bias"])
    blocks = bias.reshape((-1, size))  # gru: r, z, n; lstm: i, f, g, o
    keep = blocks[1]
    assert keep.min() >= 0 and keep.max() <= np.log(5) + 1e-6 and keep.std() > 0.2
    others = [i for i in range(len(blocks)) if i != 1]
    if cell == "lstm":
        np.testing.assert_array_equal(blocks[0], -keep)
        others = [2, 3]
    for i in others:
        np.testing.assert_array_equal(blocks[i], 0)
    if cell == "gru":
        np.testing.assert_array_equal(np.asarray(params["recurrent"]["bias"]), 0)
    _, standard_module = _module(cell, **{"model.state_size": 64})
    standard = init_model(standard_module, jax.random.PRNGKey(0), _sequences().x_train[:2])
    standard = standard["params"]
    assert jax.tree.map(np.shape, standard) == jax.tree.map(np.shape, params)


def _last_over_first_at_init(cell: str, **overrides) -> float:
    """At initialisation, over 40 steps of one position: the norm of the loss's gradient with
    respect to the last step's input over the first step's."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(64, 40)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, size=64))
    _, module = _module(cell, **{"model.chunk": 1, "model.state_size": 32, **overrides})
    params = init_model(module, jax.random.PRNGKey(1), x[:2])["params"]

    def loss(inputs):
        outputs = apply_model(module, params, inputs)
        return jnp.mean(losses.per_example_loss("cross_entropy", outputs, y))

    norms = np.linalg.norm(np.asarray(jax.grad(loss)(x)), axis=0)
    return float(norms[-1] / norms[0])


@pytest.mark.parametrize("cell", tiered(["gru", "lstm"], {"lstm"}))
def test_chrono_init_sends_more_gradient_to_the_first_steps(cell):
    chrono = _last_over_first_at_init(cell, **{"model.gate_init": "chrono"})
    assert chrono * 10 < _last_over_first_at_init(cell)


def test_lstm_forget_bias_starts_the_forget_gate_and_keeps_more_gradient():
    _, module = _module("lstm", **{"model.forget_bias": 2.5})
    params = init_model(module, jax.random.PRNGKey(0), _sequences().x_train[:2])["params"]
    blocks = np.asarray(params["input"]["bias"]).reshape((4, 5))  # i, f, g, o
    np.testing.assert_array_equal(blocks[1], 2.5)
    np.testing.assert_array_equal(blocks[[0, 2, 3]], 0)
    ratios = [_last_over_first_at_init("lstm", **{"model.forget_bias": b}) for b in (1.0, 3.0)]
    assert ratios[1] * 10 < ratios[0]


def test_a_swept_forget_bias_starts_each_member_at_its_own_value():
    config = _config("lstm", **{"restarts.num": 2})
    spec = front_end.resolve(config, sweep="model.forget_bias=0,3")
    trainer = ensemble.make_trainer(spec, _sequences(), jax.random.key(0))
    state = ensemble.init_members(trainer, jax.random.PRNGKey(0))
    forget = np.asarray(state.params["input"]["bias"]).reshape((4, 4, 5))[:, 1]
    expected = [m.hparams(spec)["forget_bias"] for m in trainer.members]
    assert sorted(set(expected)) == [0.0, 3.0]
    np.testing.assert_array_equal(forget, np.repeat(np.asarray(expected)[:, None], 5, axis=1))


@pytest.mark.parametrize(
    ("overrides", "sweep"),
    [
        ({"model.gate_init": "chrono", "model.forget_bias": 3.0}, None),
        ({"model.gate_init": "chrono"}, "model.forget_bias=1,3"),
        ({}, "model.gate_init=standard,chrono;model.forget_bias=1,3"),
        (
            {"model.gate_init": "chrono", "restarts.search": "model.forget_bias=uniform(0, 4)"},
            None,
        ),
    ],
)
def test_a_forget_bias_is_refused_where_chrono_draws_the_gate_biases(overrides, sweep):
    config = _config("lstm", **{"restarts.num": 4, **overrides})
    with pytest.raises(ConfigError, match="gate_init=chrono draws the LSTM's gate biases"):
        front_end.resolve(config, sweep=sweep)


# Every recurrent cell draws its orthogonal blocks through one function: rnn is the cheapest.
@pytest.mark.parametrize("name", tiered(FAMILIES, {"rnn"}))
def test_member_initialisation_runs_no_lapack_custom_call(name):
    # LAPACK's QR waits on the CPU thread pool it runs on; two at once hung a 2-core launch.
    config = _config(name, **{"restarts.num": 3})
    trainer = ensemble.make_trainer(front_end.resolve(config), _sequences(), jax.random.key(0))
    hparams = ensemble.stacked_hparams(trainer.spec, trainer.members)
    keys = ensemble.member_keys(jax.random.PRNGKey(0), trainer.members)
    text = trainer.init_fn.lower(hparams, keys, None).compile().as_text()
    assert 'custom_call_target="lapack' not in text
