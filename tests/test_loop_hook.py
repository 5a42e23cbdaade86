"""The hook between chunks (`jaxnn.core.loop.drive`'s `between`), as a user writes one: it sees
each chunk's metrics, may change the state the next chunk starts from, and may end the loop."""

from __future__ import annotations

import jax
import numpy as np

from jaxnn.core import loop
from tests.helpers import blobs, small_config

CONFIG = {"training.steps": 50, "training.eval_every": 10}


def test_a_hook_ends_the_loop_after_the_chunk_it_says():
    seen = []

    def stop_after_two(state, history):
        seen.append(int(history[-1]["step"][0]))
        return state, len(history) == 2

    result = loop.fit(
        small_config(**CONFIG), blobs(seed=2), jax.random.PRNGKey(0), between=stop_after_two
    )
    assert seen == [10, 20]
    assert [int(row["step"][0]) for row in result.history] == [10, 20]
    assert int(result.state.step) == 20


def test_the_state_a_hook_returns_is_the_one_the_next_chunk_trains():
    after_first = {}

    def freeze_after_the_first_chunk(state, history):
        if len(history) == 1:
            after_first["params"] = jax.device_get(state.params)
            rates = {**state.hparams, "learning_rate": state.hparams["learning_rate"] * 0}
            return state.replace(hparams=rates), False
        return state, False

    frozen = loop.fit(
        small_config(**CONFIG),
        blobs(seed=2),
        jax.random.PRNGKey(0),
        between=freeze_after_the_first_chunk,
    )
    plain = loop.fit(small_config(**CONFIG), blobs(seed=2), jax.random.PRNGKey(0))
    assert int(frozen.state.step) == 50
    # A zero learning rate from the second chunk on: the weights stay those of the first chunk.
    for leaf, first in zip(
        jax.tree_util.tree_leaves(frozen.state.params),
        jax.tree_util.tree_leaves(after_first["params"]),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(leaf), first)
    moved = jax.tree_util.tree_leaves(plain.state.params)[0]
    assert not np.array_equal(
        np.asarray(moved), jax.tree_util.tree_leaves(after_first["params"])[0]
    )
