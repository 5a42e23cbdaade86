"""Mixed precision (`model.dtype=bfloat16`, jaxnn.nn.precision): every family and a user's
Module with a `dtype` attribute compute in bfloat16 while parameters, gradients and optimiser
state stay float32 and the loss reads float32 outputs; member i still equals `fit`; a run's
dtype is recorded and its reloaded model computes in it; a Module without `dtype` is refused."""

from __future__ import annotations

import json
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import front_end
from jaxnn.core import ensemble, loop, train
from jaxnn.errors import ConfigError
from tests.helpers import blobs, small_config, tiered

SMALL = {
    "mlp": {"model.dropout": 0.1},
    "cnn1d": {"model.channels": (4, 3), "model.kernel_sizes": (3,), "model.hidden": (),
              "model.layer_norm": True},
    **{cell: {"model.state_size": 5, "model.chunk": 2, "model.hidden": (100, 100)}
       for cell in ("gru", "lstm", "rnn")},
    "resmlp": {"model.width": 6, "model.depth": 2, "model.hidden": (100, 100)},
}  # fmt: skip


def _config(name: str, **overrides: Any):
    fields = {"model.name": name, **SMALL[name], "model.dtype": "bfloat16", "restarts.num": 2}
    return small_config(**{**fields, "training.steps": 60, **overrides})


def _equations(jaxpr: Any):
    """Every equation of a jaxpr and of the jaxprs inside it (scan bodies, custom VJPs)."""
    for eqn in jaxpr.eqns:
        yield eqn
        for value in eqn.params.values():
            for inner in value if isinstance(value, list | tuple) else (value,):
                inner = getattr(inner, "jaxpr", inner)
                if hasattr(inner, "eqns"):
                    yield from _equations(inner)


def _step_products(result: ensemble.EnsembleResult, data: Any) -> list[Any]:
    """The matmuls' operand dtypes of one training step (forward and backward) of member 0."""
    state = ensemble.member_state(result.state, 0)
    batch = (
        jnp.asarray(data.x_train[:16]),
        jnp.asarray(data.y_train[:16]),
        jnp.ones(16, bool),
    )
    step = jax.make_jaxpr(lambda s, b: train.train_step(s, b, jnp.int32(0), result.program))(
        state, batch
    )
    return [
        tuple(v.aval.dtype for v in eqn.invars)
        for eqn in _equations(step.jaxpr)
        if eqn.primitive.name == "dot_general"
    ]


def _floating_dtypes(tree: Any) -> set[str]:
    return {
        str(leaf.dtype)
        for leaf in jax.tree_util.tree_leaves(tree)
        if jnp.issubdtype(leaf.dtype, jnp.floating)
    }


def _assert_mixed_precision(result: ensemble.EnsembleResult, data: Any) -> None:
    products = _step_products(result, data)
    assert products and all(d == (jnp.bfloat16,) * 2 for d in products), products
    state = result.state
    assert _floating_dtypes((state.params, state.opt_state, state.best_params)) == {"float32"}
    member = ensemble.member_state(state, 0)
    outputs, _ = member.apply_fn(
        member.params, member.model_state, jnp.asarray(data.x_test), member.hparams
    )
    assert outputs.dtype == jnp.float32  # what the loss and the metrics read


@pytest.mark.parametrize("name", tiered(sorted(SMALL), {"mlp", "lstm"}))
def test_a_bfloat16_run_computes_in_bfloat16_keeps_float32_state_and_trains(name):
    data = blobs(num_features=12)
    result = jaxnn.fit_ensemble(_config(name), data, jax.random.PRNGKey(0))
    _assert_mixed_precision(result, data)
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert np.all(np.isfinite(last)) and np.mean(last) < np.mean(first)


@pytest.mark.parametrize("name", tiered(["mlp", "cnn1d"], {"mlp"}))
def test_member_i_of_a_bfloat16_ensemble_equals_fit_and_differs_from_float32(name):
    data = blobs(num_features=12)
    config = _config(name, **{"training.steps": 30})
    sweep = {"optimizer.learning_rate": [0.02, 0.05]}
    root = jax.random.PRNGKey(3)
    spec = front_end.resolve(config, sweep=sweep)
    result = jaxnn.fit_ensemble(config, data, root, sweep=sweep)
    member = result.members[3]
    key, hparams = train.member_key(root, member.seed_index), member.hparams(spec)
    alone = loop.fit(config, data, key, hparams=hparams)
    stacked = ensemble.member_state(result.state, member.index)
    leaves = jax.tree_util.tree_leaves
    for a, b in zip(leaves(stacked.params), leaves(alone.state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6)
    config.model.dtype = "float32"
    in_float32 = loop.fit(config, data, key, hparams=hparams)
    assert not np.allclose(leaves(in_float32.state.params)[0], leaves(alone.state.params)[0])


class WithDtype(nn.Module):
    """A user's model as Flax's docs write one: its layers compute in `dtype`."""

    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = nn.relu(nn.Dense(8, dtype=self.dtype)(x))
        return nn.Dense(3, dtype=self.dtype, name="head")(x)


class WithoutDtype(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.Dense(3, name="head")(nn.relu(nn.Dense(8)(x)))


@pytest.mark.parametrize("given", ["module", "factory"])
def test_a_user_module_with_a_dtype_attribute_computes_in_it(given):
    data = blobs()
    model = WithDtype() if given == "module" else (lambda hparams: WithDtype())
    config = small_config(**{"model.dtype": "bfloat16", "restarts.num": 2, "training.steps": 60})
    result = jaxnn.fit_ensemble(config, data, jax.random.PRNGKey(0), model=model)
    _assert_mixed_precision(result, data)
    first, last = result.history[0]["val_loss"], result.history[-1]["val_loss"]
    assert np.mean(last) < np.mean(first)


def test_a_user_module_without_dtype_is_refused_in_one_line():
    config = small_config(**{"model.dtype": "bfloat16"})
    fragment = "model.dtype=bfloat16: the model WithoutDtype has no `dtype` attribute"
    with pytest.raises(ConfigError, match=fragment) as raised:  # a Module: before the data
        front_end.resolve(config, jaxnn.Components(model=WithoutDtype()))
    assert "\n" not in str(raised.value)
    with pytest.raises(ConfigError, match=fragment) as raised:  # a factory: on the data's shapes
        jaxnn.fit(config, blobs(), jax.random.PRNGKey(0), model=lambda hparams: WithoutDtype())
    assert "\n" not in str(raised.value)
    # In float32 the same module trains as it is.
    front_end.resolve(small_config(), jaxnn.Components(model=WithoutDtype()))


def test_a_bfloat16_run_records_its_dtype_and_reloads_computing_in_it(tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 12)) * 3
    y = rng.integers(0, 3, size=180)
    x = (centres[y] + rng.normal(size=(180, 12))).astype(np.float32) * 10 + 5  # raw inputs
    data = jaxnn.from_arrays(x[:120], y[:120], x[120:], y[120:], task="classification")
    config = _config("cnn1d", **{"tensorboard.enabled": False, "training.steps": 30})
    summary = jaxnn.run(config, tmp_path / "run", data=data, progress=False)
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())["model"]["dtype"]
    assert recorded == "bfloat16"
    assert jaxnn.load_model(tmp_path / "run").module.dtype == jnp.bfloat16
    here = summary.predictor()
    for path in (tmp_path / "run", tmp_path / "run" / "best"):
        reloaded = jaxnn.load_predictor(path)
        np.testing.assert_array_equal(reloaded.predict_proba(x[120:]), here.predict_proba(x[120:]))
        accuracy = reloaded.evaluate(x[120:], y[120:])["accuracy"]
        assert accuracy == pytest.approx(summary["best"]["test_accuracy"])
