"""A user's model declares its own per-member numbers (`jaxnn.UserModel`): a swept field gives
the members of separate runs, is reported, exported and reloaded; `jaxnn.Dropout` takes a
traced rate as flax.linen.Dropout takes a Python one; bad declarations are one line."""

from __future__ import annotations

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import blobs, small_config

import jaxnn
from jaxnn import front_end
from jaxnn.core import ensemble
from jaxnn.errors import ConfigError
from jaxnn.nn.components import Components


class Net(nn.Module):
    """A Flax module as Flax's docs write one, with its dropout rate as an attribute."""

    rate: float

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.relu(nn.Dense(16)(x))
        x = jaxnn.Dropout(self.rate)(x, deterministic=not train)
        return nn.Dense(3, name="head")(x)


MODEL = jaxnn.UserModel(lambda hp: Net(rate=hp["dropout"]), fields={"dropout": 0.0})


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


def test_a_swept_declared_field_gives_the_members_of_separate_runs():
    data = blobs()
    config = small_config(**{"restarts.num": 2})
    key = jax.random.PRNGKey(0)
    swept = ensemble.fit_ensemble(config, data, key, model=MODEL, sweep="model.dropout=[0.0, 0.5]")
    assert np.asarray(swept.state.hparams["dropout"]).tolist() == [0.0, 0.0, 0.5, 0.5]
    for index, rate in enumerate((0.0, 0.5)):
        alone = small_config(**{"restarts.num": 2, "model.dropout": rate})
        single = ensemble.fit_ensemble(alone, data, key, model=MODEL)
        for got, want in zip(_leaves(swept.state.params), _leaves(single.state.params)):
            np.testing.assert_array_equal(got[2 * index : 2 * index + 2], want)
    # Dropout is on for the swept members that have it: they differ from the rate-0 ones.
    first = _leaves(swept.state.params)[0]
    assert not np.array_equal(first[0], first[2])


def test_a_declared_field_is_reported_exported_and_reloaded(tmp_path):
    data = blobs()
    config = small_config(**{"restarts.num": 1, "dataset.name": "arrays"})
    result = jaxnn.run(
        config,
        tmp_path / "run",
        data=data,
        model=MODEL,
        sweep="model.dropout=[0.0, 0.3]",
        progress=False,
    )
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [m["hparams"]["model.dropout"] for m in summary["members"]] == [0.0, 0.3]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model"]["dropout"] == 0.0
    loaded = jaxnn.load_model(tmp_path / "run", model=MODEL)
    best = summary["best_member"]
    assert float(loaded.hparams["dropout"]) == [0.0, 0.3][best]
    predictor = jaxnn.load_predictor(tmp_path / "run", model=MODEL)
    x = np.asarray(data.x_test)
    np.testing.assert_allclose(predictor.predict_proba(x), result.predictor().predict_proba(x))


def test_a_declared_field_is_searched():
    config = small_config(**{"restarts.num": 4, "restarts.search": "model.dropout=uniform(0, 0.5)"})
    spec = front_end.resolve(config, Components(model=MODEL))
    drawn = [point["model.dropout"] for point in spec.search.points]
    assert len(set(drawn)) == 4 and all(0 <= v <= 0.5 for v in drawn)


def test_the_config_value_overrides_the_declared_default():
    model = jaxnn.UserModel(lambda hp: Net(rate=hp["rate"]), fields={"rate": 0.25})
    spec = front_end.resolve(small_config(), Components(model=model))
    assert spec.config.model.rate == 0.25
    spec = front_end.resolve(small_config(**{"model.rate": 0.1}), Components(model=model))
    assert spec.config.model.rate == 0.1


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: jaxnn.UserModel(Net(rate=0.1), fields={"dropout": 0.0}), "needs a factory"),
        (lambda: jaxnn.UserModel(lambda hp: Net(0.0), fields={"dropout": "0.1"}), "finite number"),
        (lambda: jaxnn.UserModel(lambda hp: Net(0.0), fields={"hidden": 1.0}), "not a number"),
        (lambda: jaxnn.UserModel(lambda hp: Net(0.0), fields={"head": 1.0}), "identifier"),
        (lambda: jaxnn.UserModel(lambda hp: Net(0.0), fields={}), "default"),
    ],
    ids=["module_not_factory", "string_default", "structural_name", "reserved_name", "no_fields"],
)
def test_a_bad_declaration_is_one_line(build, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        build()
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("model", "sweep", "fragment"),
    [
        (MODEL, "model.width=[1.0, 2.0]", "declare it as a per-member number"),
        (lambda hp: Net(0.0), "model.dropout=[0.0, 0.5]", "it declares none"),
        (
            jaxnn.UserModel(lambda hp: Net(0.0), fields={"learning_rate": 0.1}),
            "",
            "another name",
        ),
    ],
)
def test_an_undeclared_or_clashing_field_is_one_line(model, sweep, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        front_end.resolve(small_config(), Components(model=model), sweep=sweep)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("rate", [0.0, 0.3, 0.5])
def test_dropout_with_a_traced_rate_equals_flax_dropout(rate):
    x = jax.random.normal(jax.random.PRNGKey(1), (8, 32))
    rngs = {"dropout": jax.random.PRNGKey(2)}
    want = nn.Dropout(rate).apply({}, x, deterministic=False, rngs=rngs)
    python = jaxnn.Dropout(rate).apply({}, x, deterministic=False, rngs=rngs)
    traced = jax.jit(lambda r: jaxnn.Dropout(r).apply({}, x, deterministic=False, rngs=rngs))(
        jnp.float32(rate)
    )
    np.testing.assert_array_equal(python, want)
    np.testing.assert_allclose(traced, want, rtol=1e-6)
    if rate == 0.0:
        np.testing.assert_array_equal(traced, x)


def test_dropout_with_a_traced_rate_of_one_gives_zeros_and_finite_gradients():
    x = jnp.ones((4, 5))
    rngs = {"dropout": jax.random.PRNGKey(0)}

    def total(r, x):
        return jnp.sum(jaxnn.Dropout(r).apply({}, x, deterministic=False, rngs=rngs))

    out = jax.jit(lambda r: jaxnn.Dropout(r).apply({}, x, deterministic=False, rngs=rngs))(1.0)
    np.testing.assert_array_equal(out, jnp.zeros_like(x))
    grad = jax.grad(total, argnums=1)(jnp.float32(1.0), x)
    assert np.all(np.isfinite(grad))
