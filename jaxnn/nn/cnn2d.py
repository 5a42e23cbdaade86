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

from jaxnn.errors import ConfigError
from jaxnn.nn import cnn1d, conv, model_fields
from jaxnn.nn.cnn1d import per_layer
from jaxnn.nn.dense import Dense
from jaxnn.nn.family import ModelFamily
from jaxnn.nn.images import as_images, image_shape
from jaxnn.nn.layers import activate, inverted_dropout, is_python_zero, kernel_initializer
from jaxnn.nn.normalization import NORMS, normalize

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


def build(model_cfg: Any, hparams: Any, num_outputs: int) -> CNN2D:
    """The family's builder: the CNN of `model_cfg` with the member's numeric hyperparameters."""
    return CNN2D(
        channels=tuple(model_cfg.channels),
        kernel_sizes=per_layer(model_cfg, "kernel_sizes"),
        strides=per_layer(model_cfg, "strides"),
        num_outputs=num_outputs,
        padding=model_cfg.padding,
        pool=model_cfg.pool,
        pool_size=int(model_cfg.pool_size),
        norm=model_cfg.norm,
        conv_impl=model_cfg.conv_impl,
        hidden=tuple(model_cfg.hidden),
        **model_fields.unit_settings(model_cfg, hparams),
    )


def validate_model_config(model_cfg: Any) -> None:
    """Checks the fields cnn2d reads, each by its spec, then kernel_sizes and strides against
    the conv layers (one value, or one per layer)."""
    model_fields.check(model_cfg, FIELDS)
    per_layer(model_cfg, "kernel_sizes")
    per_layer(model_cfg, "strides")


def check_inputs(model_cfg: Any, feature_shape: tuple[int, ...]) -> None:
    """Examples are images, and every conv layer and pooling gets pixels to read.

    Raises:
      ConfigError: examples that are not [H, W] or [H, W, C]; a kernel or stride larger than
        its layer's input, or pooling that leaves no pixels (naming the layer).
    """
    height, width, _ = image_shape("cnn2d", feature_shape)
    sizes, strides = per_layer(model_cfg, "kernel_sizes"), per_layer(model_cfg, "strides")
    pool, pool_size = model_cfg.pool, int(model_cfg.pool_size)
    for i, (size, stride) in enumerate(zip(sizes, strides, strict=True)):
        side = min(height, width)
        if max(size, stride) > side:
            raise ConfigError(
                f"model.kernel_sizes, model.strides: conv layer {i} has a {size}x{size} kernel "
                f"and stride {stride} but its input is {height}x{width} pixels; use smaller "
                "kernels, strides or pools, or fewer layers"
            )
        height, width = (
            conv.pooled_length(
                conv.output_length(n, size, stride, model_cfg.padding), pool, pool_size
            )
            for n in (height, width)
        )
        if min(height, width) < 1:
            raise ConfigError(
                f"model.pool_size={pool_size}: pooling after conv layer {i} leaves no pixels; "
                "use a smaller pool_size or strides, or fewer layers"
            )


# The normalisation after each convolution (resnet's too; jaxnn.nn.normalization).
NORM = model_fields.choice("norm", "batch", NORMS)
# Conv layers as cnn1d's (square kernels and strides), `norm` after each, the same dense layers.
FIELDS = (
    cnn1d.CHANNELS, cnn1d.KERNEL_SIZES, cnn1d.STRIDES, cnn1d.PADDING, cnn1d.POOL, cnn1d.POOL_SIZE,
    NORM, cnn1d.CONV_IMPL,
    model_fields.HIDDEN, model_fields.ACTIVATION, model_fields.INIT, model_fields.INIT_STDDEV,
    model_fields.DROPOUT, model_fields.INIT_SCALE, model_fields.NEGATIVE_SLOPE,
)  # fmt: skip

FAMILY = ModelFamily(
    name="cnn2d",
    build=build,
    fields=FIELDS,
    head=(HEAD,),
    validate=validate_model_config,
    preactivations=cnn1d.preactivations,  # conv layers' channels, then dense layers' units
    activation_field="activation",
    layer_order=cnn1d.layer_order,  # the same layer names: conv_i, norm_i, prelu_i, hidden_j
    transfer_fields=("activation", "padding", "pool", "pool_size", "norm"),
    check_inputs=check_inputs,
)
