"""What every member schedule does with members: rank them, and move their state on the device
(gathers and scatters over every leaf of the `TrainState`)."""

from __future__ import annotations

import jax
import numpy as np

from jaxnn.core import train


def ranking_values(
    scores: np.ndarray, diverged: np.ndarray, *, greater_is_better: bool
) -> np.ndarray:
    """float64 [n]: lower ranks first; diverged members and non-finite scores last."""
    values = np.asarray(scores, np.float64)
    values = -values if greater_is_better else values
    return np.where(np.asarray(diverged, bool) | ~np.isfinite(values), np.inf, values)


def live_mask(state: train.TrainState) -> np.ndarray:
    """bool [n]: the members still training (neither stopped nor diverged)."""
    return ~np.asarray(jax.device_get(state.stopped | state.diverged), bool)


@jax.jit
def gather(state: train.TrainState, index: jax.Array) -> train.TrainState:
    """The members `index` of a stacked state, in that order."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], state)


@jax.jit
def scatter(
    state: train.TrainState, index: jax.Array, members: train.TrainState
) -> train.TrainState:
    """`state` with members `index` replaced by the stacked `members`."""
    return jax.tree_util.tree_map(lambda leaf, new: leaf.at[index].set(new), state, members)


def copy_members(
    state: train.TrainState, destination: jax.Array, source: jax.Array
) -> train.TrainState:
    """`state` where member `destination[i]` holds member `source[i]`'s whole state but its
    own member key (QDax-style `x.at[dst].set(x[src])` over every leaf)."""
    copied = jax.tree_util.tree_map(lambda leaf: leaf.at[destination].set(leaf[source]), state)
    return copied.replace(member_key=state.member_key)
