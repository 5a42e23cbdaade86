"""The activation and initialiser registries that model families build from."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Activation = Callable[[jax.Array, Any], jax.Array]
Initializer = Callable[..., jax.Array]


def leaky_relu(x: jax.Array, negative_slope: float | jax.Array) -> jax.Array:
    """max(x, 0) + negative_slope * min(x, 0), with a slope that may be traced."""
    return jnp.where(x >= 0, x, jnp.asarray(negative_slope, x.dtype) * x)


# name -> f(x, negative_slope) -> activated x. Only leaky_relu and prelu read the slope; for
# prelu a family passes its learnable per-layer slope.
ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": lambda x, negative_slope: jax.nn.sigmoid(x),
    "tanh": lambda x, negative_slope: jnp.tanh(x),
    "relu": lambda x, negative_slope: jax.nn.relu(x),
    "leaky_relu": leaky_relu,
    "prelu": leaky_relu,
    "elu": lambda x, negative_slope: jax.nn.elu(x),
    "gelu": lambda x, negative_slope: jax.nn.gelu(x, approximate=False),
    "identity": lambda x, negative_slope: x,
}

# name -> f(stddev) -> kernel initializer. Only `normal` reads stddev; biases start at zero.
INITIALIZERS: dict[str, Callable[[float | jax.Array], Initializer]] = {
    "he_normal": lambda stddev: nn.initializers.he_normal(),
    "he_uniform": lambda stddev: nn.initializers.he_uniform(),
    "glorot_normal": lambda stddev: nn.initializers.glorot_normal(),
    "glorot_uniform": lambda stddev: nn.initializers.glorot_uniform(),
    "lecun_normal": lambda stddev: nn.initializers.lecun_normal(),
    "normal": lambda stddev: nn.initializers.normal(stddev),
}
INITIALIZERS["kaiming_normal"] = INITIALIZERS["he_normal"]
INITIALIZERS["kaiming_uniform"] = INITIALIZERS["he_uniform"]
INITIALIZERS["xavier_normal"] = INITIALIZERS["glorot_normal"]
INITIALIZERS["xavier_uniform"] = INITIALIZERS["glorot_uniform"]


def scaled(init: Initializer, scale: float | jax.Array) -> Initializer:
    """`init` multiplied by `scale` (which may be a member's traced scalar)."""

    def scaled_init(
        key: jax.Array, shape: Any, dtype: Any = jnp.float32, **kwargs: Any
    ) -> jax.Array:
        return init(key, shape, dtype, **kwargs) * jnp.asarray(scale, dtype)

    return scaled_init
