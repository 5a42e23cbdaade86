"""Gradient accumulation (`optimizer.accumulate_steps`, optax.MultiSteps): k batches of B make
one update equal to one batch of k * B, a short last batch of an epoch included, for the
built-in optimisers and a user's factory; bad values are one line."""

from __future__ import annotations

import jax
import numpy as np
import optax
import pytest
from helpers import blobs, small_config

from jaxnn.core import loop
from jaxnn.errors import ConfigError

# 433 examples leave 390 for training: batches of 100 end an epoch with a batch of 90, batches
# of 25 with 25, 25, 25 and 15, the same examples in the same order.
DATA_SIZE = 433
UPDATES = 12


def _params(batch_size: int, accumulate_steps: int, optimizer=None, **overrides):
    config = small_config(
        **{
            "training.batch_size": batch_size,
            "optimizer.accumulate_steps": accumulate_steps,
            "training.steps": UPDATES * accumulate_steps,
            "training.eval_every": UPDATES * accumulate_steps,
            "training.keep": "last",
            **overrides,
        }
    )
    data = blobs(num_train=DATA_SIZE)
    assert data.num_train == 390
    result = loop.fit(config, data, jax.random.PRNGKey(0), optimizer=optimizer)
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(result.state.params)]


@pytest.mark.parametrize(
    ("overrides", "optimizer"),
    [
        ({}, None),
        (
            {
                "optimizer.name": "adamw",
                "optimizer.schedule": "warmup_cosine",
                "optimizer.warmup_steps": 3,
                "optimizer.learning_rate": 0.01,
                "optimizer.weight_decay": 1e-3,
            },
            None,
        ),
        ({}, lambda hp: optax.adam(optax.cosine_decay_schedule(hp["learning_rate"], UPDATES))),
    ],
    ids=["momentum", "adamw_warmup_cosine", "user_factory"],
)
def test_four_batches_of_25_equal_one_batch_of_100(overrides, optimizer):
    accumulated = _params(25, 4, optimizer, **overrides)
    big = _params(100, 1, optimizer, **overrides)
    for got, want in zip(accumulated, big):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"optimizer.accumulate_steps": 0}, "optimizer.accumulate_steps must be an integer"),
        (
            {"optimizer.accumulate_steps": 4, "training.steps": 30},
            "not a multiple of optimizer.accumulate_steps=4",
        ),
    ],
)
def test_a_bad_accumulation_is_one_line(overrides, fragment):
    with pytest.raises(ConfigError, match=fragment) as error:
        loop.fit(small_config(**overrides), blobs(), jax.random.PRNGKey(0))
    assert "\n" not in str(error.value)
