"""Layers that model families share: inverted dropout with a traced rate, PReLU, the activation
a family's `model.activation` names and its kernel initialiser, the hidden units' settings, and
the order of a layer's parameters in layer tables."""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.nn import dropout_mask
from jaxnn.nn.activations import ACTIVATIONS, INITIALIZERS, Initializer, leaky_relu, scaled
from jaxnn.nn.lookup import lookup


def is_python_zero(value: object) -> bool:
    """A rate given as a Python 0 (not traced): the layer it controls is left out of the program."""
    return isinstance(value, int | float) and value == 0


def inverted_dropout(x: jax.Array, rate: float | jax.Array, key: jax.Array) -> jax.Array:
    """x [B, ...] with units dropped with probability `rate` (may be traced) and the kept ones
    divided by 1 - rate; the mask is `jaxnn.nn.dropout_mask`'s keyed hash."""
    keep_prob = jnp.asarray(1.0 - rate, x.dtype)
    keep = dropout_mask.keep_mask(key, keep_prob, x.shape)
    return jnp.where(keep, x / keep_prob, jnp.zeros_like(x))


def dropout(
    x: jax.Array,
    rate: float | jax.Array,
    key: jax.Array | None,
    *,
    train: bool,
    tag: int | None = None,
) -> jax.Array:
    """`inverted_dropout` of x while training with a key (folded with `tag` when given); x
    itself otherwise, and for a Python 0 rate (no dropout in the program)."""
    if not train or key is None or is_python_zero(rate):
        return x
    return inverted_dropout(x, rate, key if tag is None else jax.random.fold_in(key, tag))


class PReLU(nn.Module):
    """Leaky ReLU whose scalar negative slope is a learnable parameter `negative_slope`."""

    negative_slope_init: float | jax.Array = 0.01

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        slope = self.param(
            "negative_slope", lambda key: jnp.asarray(self.negative_slope_init, jnp.float32)
        )
        return leaky_relu(x, slope)


def nonlinearity(module: nn.Module, h: jax.Array, sown: str, prelu: str) -> jax.Array:
    """h sown as `intermediates/{sown}` (the diagnostics' units), then `module`'s activation
    (its `activation` and `negative_slope` fields): prelu is a PReLU layer named `prelu` (its
    slope learnable, starting at `negative_slope`), leaky_relu reads `negative_slope`."""
    module.sow("intermediates", sown, h)
    if module.activation == "prelu":
        return PReLU(module.negative_slope, name=prelu)(h)
    return lookup(ACTIVATIONS, module.activation, "model.activation")(h, module.negative_slope)


def kernel_initializer(name: str, stddev: float, scale: float | jax.Array) -> Initializer:
    """`model.init` (with `model.init_stddev` where it reads one) times `model.init_scale`."""
    return scaled(lookup(INITIALIZERS, name, "model.init")(stddev), scale)


class HiddenUnits(nn.Module):
    """The keyword-only fields of a family's Module that `model_fields.unit_settings` fills;
    `negative_slope`, `dropout` and `init_scale` may be traced scalars (one per member), and a
    Python 0.0 dropout rate removes dropout from the program."""

    _: dataclasses.KW_ONLY
    activation: str = "relu"
    initializer: str = "he_normal"  # config `model.init`; `init` would shadow Module.init
    init_stddev: float = 0.01
    negative_slope: float | jax.Array = 0.01
    dropout: float | jax.Array = 0.0
    init_scale: float | jax.Array = 1.0
    dtype: Any = jnp.float32  # the computation's (config `model.dtype`); parameters are float32


# A layer's parameters in the families' layer tables: kernel, bias, scale, then a PReLU slope.
PARAM_ORDER = {"kernel": 0, "bias": 1, "scale": 2, "negative_slope": 3}
