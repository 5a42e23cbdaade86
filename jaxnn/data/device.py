"""The splits a training chunk reads, placed on the device once."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn.data.dataset import Dataset


class SplitData(NamedTuple):
    """The arrays of one split on the device: x [N, ...], y [N] or [N, num_outputs]."""

    x: jax.Array
    y: jax.Array


class TrainingData(NamedTuple):
    """What a chunk of training reads: the train and validation splits, placed on the device once."""

    train: SplitData
    val: SplitData


def device_data(data: Dataset) -> TrainingData:
    """Places the train and validation splits on the device once."""
    return TrainingData(
        train=SplitData(jnp.asarray(data.x_train), jnp.asarray(data.y_train)),
        val=SplitData(jnp.asarray(data.x_val), jnp.asarray(data.y_val)),
    )
