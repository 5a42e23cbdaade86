"""A user's optimiser factory written as Optax's docs write it, with the member's traced values:
schedules, chains and inject_hyperparams train per member exactly as `fit` does alone; a
Python decision on a traced value is one ConfigError line that names where and the fix."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from helpers import blobs, small_config

from jaxnn.core import ensemble, loop, train
from jaxnn.errors import ConfigError

IDIOMS = {
    "piecewise_constant_schedule": lambda hp: optax.sgd(
        optax.piecewise_constant_schedule(hp["learning_rate"], {10: 0.1})
    ),
    "chain_clip_adamw": lambda hp: optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(hp["learning_rate"], weight_decay=hp["weight_decay"]),
    ),
    "inject_hyperparams": lambda hp: optax.inject_hyperparams(optax.sgd)(
        learning_rate=hp["learning_rate"]
    ),
    # The fix the refusal below names: a unit schedule scaled by the member's rate.
    "scaled_warmup_cosine": lambda hp: optax.adamw(
        lambda count: (
            hp["learning_rate"] * optax.warmup_cosine_decay_schedule(0.0, 1.0, 5, 30)(count)
        )
    ),
}


def _leaves(tree):
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(tree)]


@pytest.mark.parametrize("name", sorted(IDIOMS))
def test_an_optax_idiom_trains_each_member_with_its_own_values(name):
    data = blobs()
    config = small_config(**{"optimizer.weight_decay": 1e-3})
    key = jax.random.PRNGKey(0)
    factory = IDIOMS[name]
    swept = ensemble.fit_ensemble(
        config, data, key, optimizer=factory, sweep="optimizer.learning_rate=[0.01, 0.1]"
    )
    alone = loop.fit(
        config, data, train.member_key(key, 0), hparams={"learning_rate": 0.1}, optimizer=factory
    )
    for got, want in zip(_leaves(swept.state.params), _leaves(alone.state.params)):
        np.testing.assert_allclose(got[1], want, rtol=1e-5, atol=1e-6)
    first = _leaves(swept.state.params)[0]
    assert not np.allclose(first[0], first[1])


@pytest.mark.parametrize(
    ("factory", "fragment"),
    [
        (
            lambda hp: optax.adamw(
                optax.warmup_cosine_decay_schedule(0.0, hp["learning_rate"], 5, 30)
            ),
            "optax's warmup_cosine_decay_schedule decides in Python",
        ),
        (
            # A schedule of the user's own that branches in Python on the step count.
            lambda hp: optax.sgd(lambda count: hp["learning_rate"] if count < 10 else 0.01),
            "test_optax_idioms.py",
        ),
        (lambda hp: "sgd", "returned str"),
    ],
    ids=["optax_schedule", "own_schedule", "not_a_transformation"],
)
def test_a_factory_that_cannot_take_traced_values_is_one_line(factory, fragment):
    with pytest.raises(ConfigError) as error:
        loop.fit(small_config(), blobs(), jax.random.PRNGKey(0), optimizer=factory)
    message = str(error.value)
    assert fragment in message and "\n" not in message
    if "returned" not in fragment:
        assert "hp['learning_rate'] * optax.warmup_cosine_decay_schedule(0.0, 1.0" in message
