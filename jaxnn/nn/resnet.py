"""The residual family (`model.name=resnet`), for images: He et al. 2016's basic blocks.

A stem (cifar: a 3x3 convolution; imagenet: 7x7 stride 2, then 3x3 stride-2 max pooling), stages
of basic blocks (`stages` blocks of `widths` channels; each stage after the first halves the
resolution in its first block), global average pooling (a trained body reads images of other
sizes) and the linear `head`; stages (2, 2, 2, 2) of (64, 128, 256, 512) with the imagenet stem
is ResNet-18. A block is conv-norm-act-conv-norm plus the shortcut, then the activation, or with
`preact` (He et al. 2016b) norm-act-conv-norm-act-conv plus the shortcut; a shortcut that changes
shape is a 1x1 convolution. A block's last norm starts at zero scale (Goyal et al. 2017), so each
block starts as the identity. Transfer: every parameter but `head` is the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from jaxnn.config.fields import Flag
from jaxnn.errors import ConfigError
from jaxnn.nn import cnn1d, cnn2d, conv, model_fields
from jaxnn.nn.dense import Dense
from jaxnn.nn.family import ModelFamily, Params
from jaxnn.nn.images import as_images, image_shape
from jaxnn.nn.layers import PARAM_ORDER, HiddenUnits, dropout, kernel_initializer, nonlinearity
from jaxnn.nn.model_fields import STRUCTURAL, FieldSpec, IntegerTuple
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
            return nonlinearity(self, h, f"preactivation_{index}", f"prelu_{index}")

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


class ResNet(HiddenUnits):
    """Stem, stages of basic blocks, global average pooling, dropout and the linear head."""

    blocks: Sequence[int]
    widths: Sequence[int]
    num_outputs: int
    stem: str = "cifar"
    preact: bool = False
    norm: str = "batch"
    conv_impl: str = "auto"

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps images [B, H, W] or [B, H, W, C] to outputs [B, num_outputs]; every
        activation's input is sown in `intermediates` (`preactivations` reads them)."""
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
            x = nonlinearity(self, x, "preactivation_stem", "stem_prelu")
        if imagenet:
            x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
        for s, (count, width) in enumerate(zip(self.blocks, self.widths, strict=True)):
            for b in range(count):
                x = BasicBlock(
                    width, 2 if s > 0 and b == 0 else 1, self.preact, self.norm, self.conv_impl,
                    self.activation, self.negative_slope, kernel_init, self.dtype,
                    name=f"stage{s}_block{b}",
                )(x, train=train)  # fmt: skip
        if self.preact:
            x = normalize(x, self.norm, train=train, name="final_norm", dtype=self.dtype)
            x = nonlinearity(self, x, "preactivation_final", "final_prelu")
        x = jnp.mean(x, axis=(1, 2))
        x = dropout(x, self.dropout, dropout_key, train=train)
        return Dense(self.num_outputs, kernel_init=kernel_init, dtype=self.dtype, name=HEAD)(x)


def build(model_cfg: Any, hparams: Any, num_outputs: int) -> ResNet:
    """The family's builder: the ResNet of `model_cfg` with the member's numeric hyperparameters."""
    return ResNet(
        blocks=tuple(model_cfg.stages),
        widths=tuple(model_cfg.widths),
        num_outputs=num_outputs,
        stem=model_cfg.stem,
        preact=model_cfg.preact,
        norm=model_cfg.norm,
        conv_impl=model_cfg.conv_impl,
        **model_fields.unit_settings(model_cfg, hparams),
    )


def validate_model_config(model_cfg: Any) -> None:
    """Checks the fields resnet reads, each by its spec, then one width per stage.

    Raises:
      ConfigError: the first field its rule refuses; widths and stages of other lengths.
    """
    model_fields.check(model_cfg, FIELDS)
    stages, widths = tuple(model_cfg.stages), tuple(model_cfg.widths)
    if len(stages) != len(widths):
        raise ConfigError(
            f"model.widths gives {len(widths)} widths for {len(stages)} stages "
            f"(model.stages={stages}); give one width per stage"
        )


def check_inputs(model_cfg: Any, feature_shape: tuple[int, ...]) -> None:
    """Examples are images ([H, W] or [H, W, C]; global average pooling reads any size)."""
    image_shape("resnet", feature_shape)


def preactivations(module: nn.Module, variables: Params, x: jax.Array) -> dict[str, jax.Array]:
    """Every activation's input as [N * H * W, C] (a channel is a unit at every position), in
    the order the network applies them: `stem` (standard blocks), each block's two
    (`stage0_block0/act_0`, ...), `final` (pre-activation blocks)."""
    _, sown = module.apply(variables, x, mutable=["intermediates"])
    flat = traverse_util.flatten_dict(sown["intermediates"], sep="/")
    result = {}
    for path, (h,) in sorted(flat.items(), key=lambda item: _preactivation_order(item[0])):
        name = path.removeprefix("preactivation_").replace("/preactivation_", "/act_")
        result[name] = h.reshape((-1, h.shape[-1]))
    return result


def _preactivation_order(path: str) -> tuple:
    block, _, index = path.rpartition("/preactivation_")
    if not block:
        return (0,) if path.endswith("stem") else (2,)
    stage, _, number = block.removeprefix("stage").partition("_block")
    return (1, int(stage), int(number), int(index))


_TOP = {"stem": 0, "stem_norm": 1, "stem_prelu": 2}
_INNER = {"norm_0": 0, "prelu_0": 1, "conv_0": 2, "norm_1": 3, "conv_1": 4, "prelu_1": 5,
          "shortcut": 6, "shortcut_norm": 7}  # fmt: skip


def layer_order(names: Sequence[str]) -> tuple:
    """stem, stem_norm, stage0_block0 (its layers), ..., final_norm, final_prelu, head."""
    module, rest = names[0], names[1:]
    stage, _, block = module.removeprefix("stage").partition("_block")
    if module in _TOP:
        position: tuple = (0, _TOP[module], 0)
    elif stage.isdigit() and block.isdigit():
        position = (1, int(stage), int(block))
    else:
        position = ({"final_norm": 2, "final_prelu": 3, HEAD: 4}.get(module, 5), 0, 0)
    return (position, module, [(_INNER.get(n, 8 + PARAM_ORDER.get(n, 4)), n) for n in rest])


# He et al.'s CIFAR ResNet-20 by default: 3 stages of 3 basic blocks, 16, 32 and 64 channels.
FIELDS = (
    FieldSpec("stages", (3, 3, 3), IntegerTuple("model.stages"), STRUCTURAL),  # blocks per stage
    FieldSpec("widths", (16, 32, 64), IntegerTuple("model.widths"), STRUCTURAL),  # their channels
    model_fields.choice("stem", "cifar", STEMS),
    FieldSpec("preact", False, Flag("model.preact"), STRUCTURAL),  # He et al. 2016b's blocks
    cnn2d.NORM, cnn1d.CONV_IMPL, *model_fields.UNITS,
)  # fmt: skip

FAMILY = ModelFamily(
    name="resnet",
    build=build,
    fields=FIELDS,
    validate=validate_model_config,
    activation_field="activation",
    layer_order=layer_order,
    preactivations=preactivations,
    transfer_fields=("activation", "norm", "stem", "preact"),
    check_inputs=check_inputs,
)
