"""The residual family (`model.name=resnet`), for images: He et al. 2016's basic blocks.

A stem (`stem`: a 3x3 convolution for small images, CIFAR-style; or ImageNet's 7x7 stride-2
convolution and 3x3 stride-2 max pooling), then stages of basic blocks (`blocks` per stage,
`widths` channels; every stage after the first halves the resolution in its first block), global
average pooling (so a trained body reads images of other sizes) and the linear `head`.
`(2, 2, 2, 2)` blocks of `(64, 128, 256, 512)` with the ImageNet stem is ResNet-18.

A block is conv-norm-act-conv-norm plus the shortcut, then the activation (`preact=False`,
He et al. 2016a), or norm-act-conv-norm-act-conv plus the shortcut (`preact=True`, He et al.
2016b); a shortcut that changes shape is a 1x1 convolution (with its own norm, standard blocks).
Normalisation is BatchNorm by default (`norm`; its running statistics are the member's model
state), GroupNorm or LayerNorm as options; a block's last norm starts at zero scale (Goyal et al.
2017), so each block starts as the identity. Transfer: every parameter but `head` is the body.
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
STEMS = ("cifar", "imagenet")


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (standard or pre-activation)."""

    features: int
    stride: int
    preact: bool
    norm: str
    conv_impl: str
    activation: str
    negative_slope: float | jax.Array
    kernel_init: Any
    dtype: Any

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        def conv_layer(h: jax.Array, size: int, stride: int, name: str) -> jax.Array:
            return conv.Conv(
                self.features, (size, size), (stride, stride), "same", self.conv_impl,
                use_bias=self.norm == "none", kernel_init=self.kernel_init, dtype=self.dtype,
                name=name,
            )(h)  # fmt: skip

        def norm(h: jax.Array, name: str) -> jax.Array:
            return normalize(h, self.norm, train=train, name=name, dtype=self.dtype)

        def act(h: jax.Array, index: int) -> jax.Array:
            return activate(h, self.activation, self.negative_slope, f"prelu_{index}")

        reshapes = self.stride != 1 or x.shape[-1] != self.features
        if self.preact:
            h = act(norm(x, "norm_0"), 0)
            shortcut = conv_layer(h, 1, self.stride, "shortcut") if reshapes else x
            h = conv_layer(h, 3, self.stride, "conv_0")
            h = conv_layer(act(norm(h, "norm_1"), 1), 3, 1, "conv_1")
            return h + shortcut
        shortcut = x
        if reshapes:
            shortcut = norm(conv_layer(x, 1, self.stride, "shortcut"), "shortcut_norm")
        h = act(norm(conv_layer(x, 3, self.stride, "conv_0"), "norm_0"), 0)
        h = normalize(conv_layer(h, 3, 1, "conv_1"), self.norm, train=train, name="norm_1",
                      dtype=self.dtype, scale_init=nn.initializers.zeros)  # fmt: skip
        return act(h + shortcut, 1)


class ResNet(nn.Module):
    """Stem, stages of basic blocks, global average pooling, dropout and the linear head.

    `dropout`, `init_scale` and `negative_slope` may be traced scalars (one per member).
    """

    blocks: Sequence[int]
    widths: Sequence[int]
    num_outputs: int
    stem: str = "cifar"
    preact: bool = False
    norm: str = "batch"
    conv_impl: str = "auto"
    activation: str = "relu"
    initializer: str = "he_normal"  # config `model.init`
    init_stddev: float = 0.01
    negative_slope: float | jax.Array = 0.01
    dropout: float | jax.Array = 0.0
    init_scale: float | jax.Array = 1.0
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps images [B, H, W] or [B, H, W, C] to outputs [B, num_outputs]; each stage's
        output is sown as `intermediates/preactivation_{stage}` [B, H_s, W_s, C_s]."""
        kernel_init = kernel_initializer(self.initializer, self.init_stddev, self.init_scale)
        x = as_images(x)
        imagenet = self.stem == "imagenet"
        size, stride = (7, 2) if imagenet else (3, 1)
        x = conv.Conv(
            self.widths[0], (size, size), (stride, stride), "same", self.conv_impl,
            use_bias=self.norm == "none", kernel_init=kernel_init, dtype=self.dtype, name="stem",
        )(x)  # fmt: skip
        if not self.preact:
            x = normalize(x, self.norm, train=train, name="stem_norm", dtype=self.dtype)
            x = activate(x, self.activation, self.negative_slope, "stem_prelu")
        if imagenet:
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for s, (count, width) in enumerate(zip(self.blocks, self.widths, strict=True)):
            for b in range(count):
                x = BasicBlock(
                    width, 2 if s > 0 and b == 0 else 1, self.preact, self.norm, self.conv_impl,
                    self.activation, self.negative_slope, kernel_init, self.dtype,
                    name=f"stage{s}_block{b}",
                )(x, train=train)  # fmt: skip
            self.sow("intermediates", f"preactivation_{s}", x)
        if self.preact:
            x = normalize(x, self.norm, train=train, name="final_norm", dtype=self.dtype)
            x = activate(x, self.activation, self.negative_slope, "final_prelu")
        x = jnp.mean(x, axis=(1, 2))
        if train and dropout_key is not None and not is_python_zero(self.dropout):
            x = inverted_dropout(x, self.dropout, dropout_key)
        return Dense(self.num_outputs, kernel_init=kernel_init, dtype=self.dtype, name=HEAD)(x)
