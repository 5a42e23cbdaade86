"""The 2-D convolutional family (`model.name=cnn2d`), for images.

Examples [H, W] or [H, W, C] are images (`jaxnn.nn.images`). Each conv layer i is `conv_{i}`
(kernel [K, K, C_in, C_out], bias [C_out]; `jaxnn.nn.conv`), then an optional normalisation
`norm_{i}` (model.norm: batch, group or layer), the activation (`prelu_{i}` for prelu), optional
pooling and dropout. The pixels are then flattened into the dense layers `hidden_{j}` and the
linear `head` (Flax's MNIST example is channels (32, 64), pool avg, hidden (256,)). Transfer:
every parameter but `head` is the body; BatchNorm's statistics are the member's model state.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.nn import conv
from jaxnn.nn.dense import Dense
from jaxnn.nn.images import as_images
from jaxnn.nn.layers import activate, inverted_dropout, is_python_zero, kernel_initializer
from jaxnn.nn.normalization import normalize

HEAD = "head"


class CNN2D(nn.Module):
    """Conv layers over pixels, then dense layers and a linear head.

    `kernel_sizes` and `strides` hold one value per conv layer (square kernels and strides).
    `dropout`, `init_scale` and `negative_slope` may be traced scalars (one per member); a
    Python 0.0 dropout leaves dropout out of the program.
    """

    channels: Sequence[int]
    kernel_sizes: Sequence[int]
    strides: Sequence[int]
    num_outputs: int
    padding: str = "same"
    pool: str = "none"
    pool_size: int = 2
    norm: str = "none"
    conv_impl: str = "auto"
    hidden: Sequence[int] = ()
    activation: str = "relu"
    initializer: str = "he_normal"  # config `model.init`
    init_stddev: float = 0.01
    negative_slope: float | jax.Array = 0.01
    dropout: float | jax.Array = 0.0
    init_scale: float | jax.Array = 1.0
    dtype: Any = jnp.float32  # the computation's (config `model.dtype`); parameters are float32

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps images [B, H, W] or [B, H, W, C] to outputs [B, num_outputs].

        Pre-activations are sown as `intermediates/preactivation_{n}` (conv layers first,
        [B, H_i, W_i, C_i], then dense layers [B, width]).
        """
        kernel_init = kernel_initializer(self.initializer, self.init_stddev, self.init_scale)
        use_dropout = train and dropout_key is not None and not is_python_zero(self.dropout)

        def nonlinearity(h: jax.Array, index: int, name: str) -> jax.Array:
            self.sow("intermediates", f"preactivation_{index}", h)
            return activate(h, self.activation, self.negative_slope, f"prelu_{name}")

        def drop(h: jax.Array, index: int) -> jax.Array:
            if not use_dropout or dropout_key is None:
                return h
            return inverted_dropout(h, self.dropout, jax.random.fold_in(dropout_key, index))

        x = as_images(x)
        layers = zip(self.channels, self.kernel_sizes, self.strides, strict=True)
        for i, (features, size, stride) in enumerate(layers):
            h = conv.Conv(
                features,
                (size, size),
                (stride, stride),
                self.padding,
                self.conv_impl,
                use_bias=self.norm != "batch",
                kernel_init=kernel_init,
                dtype=self.dtype,
                name=f"conv_{i}",
            )(x)
            h = normalize(h, self.norm, train=train, name=f"norm_{i}", dtype=self.dtype)
            pooled = conv.pool(nonlinearity(h, i, str(i)), self.pool, (self.pool_size,) * 2)
            x = drop(pooled, i)
        x = x.reshape((x.shape[0], -1))
        for j, width in enumerate(self.hidden):
            index = len(self.channels) + j
            h = Dense(width, kernel_init=kernel_init, dtype=self.dtype, name=f"hidden_{j}")(x)
            x = drop(nonlinearity(h, index, f"hidden_{j}"), index)
        return Dense(self.num_outputs, kernel_init=kernel_init, dtype=self.dtype, name=HEAD)(x)
