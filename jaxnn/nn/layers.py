"""Layers that model families share: inverted dropout with a traced rate, PReLU, the activation
a family's `model.activation` names and its kernel initialiser."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.errors import lookup
from jaxnn.nn import dropout_mask
from jaxnn.nn.activations import ACTIVATIONS, INITIALIZERS, Initializer, leaky_relu, scaled


def is_python_zero(value: object) -> bool:
    """A rate given as a Python 0 (not traced): the layer it controls is left out of the program."""
    return isinstance(value, int | float) and value == 0


def inverted_dropout(x: jax.Array, rate: float | jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout whose rate may be a traced scalar.

    Args:
      x: activations [B, ...].
      rate: probability of dropping a unit, in [0, 1).
      key: PRNG key.

    Returns:
      x with dropped units zeroed and kept ones divided by 1 - rate. The mask comes from
      `jaxnn.nn.dropout_mask` (a keyed hash, several times cheaper on CPU than threefry bits).
    """
    keep_prob = jnp.asarray(1.0 - rate, x.dtype)
    keep = dropout_mask.keep_mask(key, keep_prob, x.shape)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


class PReLU(nn.Module):
    """Leaky ReLU whose scalar negative slope is a learnable parameter `negative_slope`."""

    negative_slope_init: float | jax.Array = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param(
            "negative_slope", lambda key: jnp.asarray(self.negative_slope_init, jnp.float32)
        )
        return leaky_relu(x, slope)


def activate(
    h: jax.Array, activation: str, negative_slope: float | jax.Array, name: str
) -> jax.Array:
    """`model.activation` applied to h inside a Module's compact method: prelu is a PReLU layer
    named `name` (its slope learnable, starting at `negative_slope`); every other activation is
    its function (leaky_relu reads `negative_slope`)."""
    if activation == "prelu":
        return PReLU(negative_slope, name=name)(h)
    return lookup(ACTIVATIONS, activation, "model.activation")(h, negative_slope)


def kernel_initializer(name: str, stddev: float, scale: float | jax.Array) -> Initializer:
    """`model.init` (with `model.init_stddev` where it reads one) times `model.init_scale`."""
    return scaled(lookup(INITIALIZERS, name, "model.init")(stddev), scale)
