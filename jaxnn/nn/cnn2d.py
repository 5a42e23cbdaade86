"""The 2-D convolutional family (`model.name=cnn2d`), for images.

cnn1d's layers and names (`jaxnn.nn.cnn1d`) over examples [H, W] or [H, W, C] read as images
(`jaxnn.nn.images`): kernels [K, K, C_in, C_out], and `norm_{i}` is model.norm (batch, group or
layer; a convolution followed by BatchNorm has no bias). Flax's MNIST example is channels
(32, 64), pool avg, hidden (256,). Transfer: every parameter but `head` is the body; BatchNorm's
statistics are the member's model state.
"""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax

from jaxnn.errors import ConfigError
from jaxnn.nn import cnn1d, conv, model_fields
from jaxnn.nn.cnn1d import ConvLayers, conv_net, conv_settings, per_layer
from jaxnn.nn.family import ModelFamily
from jaxnn.nn.images import as_images, image_shape
from jaxnn.nn.normalization import NORMS


class CNN2D(ConvLayers):
    """Conv layers over pixels, then dense layers and a linear head: CNN1D's (`conv_net`), with
    square kernels and strides and the normalisation `norm` after each convolution."""

    norm: str = "none"

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps images [B, H, W] or [B, H, W, C] to outputs [B, num_outputs]; pre-activations are
        sown as `intermediates/preactivation_{n}` (conv layers' [B, H_i, W_i, C_i], then dense)."""
        return conv_net(self, as_images(x), self.norm, train=train, dropout_key=dropout_key)


def build(model_cfg: Any, hparams: Any, num_outputs: int) -> CNN2D:
    """The family's builder: the CNN of `model_cfg` with the member's numeric hyperparameters."""
    return CNN2D(
        num_outputs=num_outputs,
        norm=model_cfg.norm,
        **conv_settings(model_cfg),
        **model_fields.unit_settings(model_cfg, hparams),
    )


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
    NORM, cnn1d.CONV_IMPL, model_fields.HIDDEN, *model_fields.UNITS,
)  # fmt: skip

FAMILY = ModelFamily(
    name="cnn2d",
    build=build,
    fields=FIELDS,
    validate=functools.partial(cnn1d.validate_model_config, fields=FIELDS),
    preactivations=cnn1d.preactivations,  # conv layers' channels, then dense layers' units
    activation_field="activation",
    layer_order=cnn1d.layer_order,  # the same layer names: conv_i, norm_i, prelu_i, hidden_j
    transfer_fields=("activation", "padding", "pool", "pool_size", "norm"),
    check_inputs=check_inputs,
)
