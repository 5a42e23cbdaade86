"""The 1-D convolutional family (`model.name=cnn1d`).

Examples [L] or [L, C] are sequences of L positions with C channels (a flat [L] has one). Each
conv layer i is `conv_{i}` (kernel [K, C_in, C_out], bias [C_out]; `jaxnn.nn.conv`), then an
optional `norm_{i}` (LayerNorm over channels), the activation (`prelu_{i}` for prelu), optional
pooling and dropout. The positions are then flattened into the dense layers `hidden_{j}`
(model.hidden, often ()) and the linear `head`. Transfer: every parameter but `head` is the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxnn.config.fields import Flag
from jaxnn.errors import ConfigError
from jaxnn.nn import conv, model_fields
from jaxnn.nn.dense import Dense
from jaxnn.nn.family import ModelFamily, Params
from jaxnn.nn.layers import PARAM_ORDER, HiddenUnits, dropout, kernel_initializer, nonlinearity
from jaxnn.nn.model_fields import STRUCTURAL, FieldSpec, IntegerTuple
from jaxnn.nn.normalization import normalize
from jaxnn.nn.sequence import as_sequence, sequence_shape

HEAD = "head"


class ConvLayers(HiddenUnits):
    """The fields of CNN1D and CNN2D (`conv_net`): `kernel_sizes` and `strides` hold one value
    per conv layer."""

    channels: Sequence[int]
    kernel_sizes: Sequence[int]
    strides: Sequence[int]
    num_outputs: int
    padding: str = "same"
    pool: str = "none"
    pool_size: int = 2
    conv_impl: str = "auto"
    hidden: Sequence[int] = ()


class CNN1D(ConvLayers):
    """Conv layers over positions, then dense layers and a linear head (`conv_net`)."""

    layer_norm: bool = False

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps inputs [B, L] or [B, L, C] to outputs [B, num_outputs]; pre-activations are sown
        as `intermediates/preactivation_{n}` (conv layers' [B, L_i, C_i], then dense layers')."""
        norm = "layer" if self.layer_norm else "none"
        return conv_net(self, as_sequence(x), norm, train=train, dropout_key=dropout_key)


def conv_net(
    net: ConvLayers, x: jax.Array, norm: str, *, train: bool, dropout_key: jax.Array | None
) -> jax.Array:
    """The computation of CNN1D and CNN2D (`net`, in its compact method) on x [B, *S, C]: conv
    layers over the S axes, each followed by the normalisation `norm`, the activation, pooling
    and dropout, then the flattened positions through the dense layers and the head."""
    kernel_init = kernel_initializer(net.initializer, net.init_stddev, net.init_scale)
    axes = x.ndim - 2

    def drop(h: jax.Array, index: int) -> jax.Array:
        return dropout(h, net.dropout, dropout_key, train=train, tag=index)

    layers = zip(net.channels, net.kernel_sizes, net.strides, strict=True)
    for i, (features, size, stride) in enumerate(layers):
        h = conv.Conv(
            features,
            (size,) * axes,
            (stride,) * axes,
            net.padding,
            net.conv_impl,
            use_bias=norm != "batch",
            kernel_init=kernel_init,
            dtype=net.dtype,
            name=f"conv_{i}",
        )(x)
        h = normalize(h, norm, train=train, name=f"norm_{i}", dtype=net.dtype)
        h = nonlinearity(net, h, f"preactivation_{i}", f"prelu_{i}")
        x = drop(conv.pool(h, net.pool, (net.pool_size,) * axes), i)
    x = x.reshape((x.shape[0], -1))
    for j, width in enumerate(net.hidden):
        index = len(net.channels) + j
        h = Dense(width, kernel_init=kernel_init, dtype=net.dtype, name=f"hidden_{j}")(x)
        x = drop(nonlinearity(net, h, f"preactivation_{index}", f"prelu_hidden_{j}"), index)
    return Dense(net.num_outputs, kernel_init=kernel_init, dtype=net.dtype, name=HEAD)(x)


def per_layer(model_cfg: Any, name: str) -> tuple[int, ...]:
    """model.`name` with one value per conv layer (a single value applies to every layer).

    Raises:
      ConfigError: neither one value nor one per layer (model.channels).
    """
    given = tuple(int(item) for item in model_cfg[name])
    layers = len(model_cfg.channels)
    if len(given) == 1:
        return given * layers
    if len(given) != layers:
        raise ConfigError(
            f"model.{name} gives {len(given)} values for {layers} conv layers "
            f"(model.channels={tuple(model_cfg.channels)}); give one value per layer, "
            "or one for all"
        )
    return given


def build(model_cfg: Any, hparams: Any, num_outputs: int) -> CNN1D:
    """The family's builder: the CNN of `model_cfg` with the member's numeric hyperparameters."""
    return CNN1D(
        num_outputs=num_outputs,
        layer_norm=bool(model_cfg.layer_norm),
        **conv_settings(model_cfg),
        **model_fields.unit_settings(model_cfg, hparams),
    )


def conv_settings(model_cfg: Any) -> dict[str, Any]:
    """The conv and dense layers' settings that CNN1D and CNN2D take from the config."""
    return {
        "channels": tuple(model_cfg.channels),
        "kernel_sizes": per_layer(model_cfg, "kernel_sizes"),
        "strides": per_layer(model_cfg, "strides"),
        "padding": model_cfg.padding,
        "pool": model_cfg.pool,
        "pool_size": int(model_cfg.pool_size),
        "conv_impl": model_cfg.conv_impl,
        "hidden": tuple(model_cfg.hidden),
    }


def preactivations(module: nn.Module, variables: Params, x: jax.Array) -> dict[str, jax.Array]:
    """Pre-activations [N, units] of every layer, in order: conv layers as [N * L_i, C_i]
    (a channel is a unit at every position), dense layers as [N, width]."""
    _, variables = module.apply(variables, x, mutable=["intermediates"])
    sown = variables["intermediates"]
    names = [*(f"conv_{i}" for i in range(len(module.channels))),
             *(f"hidden_{j}" for j in range(len(module.hidden)))]  # fmt: skip
    pre = [sown[f"preactivation_{index}"][0] for index in range(len(names))]
    return {name: h.reshape((-1, h.shape[-1])) for name, h in zip(names, pre, strict=True)}


def layer_order(names: Sequence[str]) -> tuple:
    """conv_0, norm_0, prelu_0, conv_1, ..., hidden_0, ..., head; kernel before bias."""
    module, rest = names[0], names[1:]
    kinds = {"conv": 0, "norm": 1, "prelu": 2}
    prefix, _, index = module.rpartition("_")
    if prefix in kinds and index.isdigit():
        position: tuple = (0, int(index), kinds[prefix])
    elif module.startswith("prelu_hidden_"):
        position = (1, int(module.rpartition("_")[2]), 1)
    elif prefix == "hidden" and index.isdigit():
        position = (1, int(index), 0)
    elif module == HEAD:
        position = (2, 0, 0)
    else:
        position = (3, 0, 0)
    return (position, module, [(PARAM_ORDER.get(n, 4), n) for n in rest])


def validate_model_config(model_cfg: Any, fields: Sequence[FieldSpec] = ()) -> None:
    """Checks the fields cnn1d reads (or `fields`, cnn2d's), each by its spec, then kernel_sizes
    and strides against the conv layers (`per_layer`).

    Raises:
      ConfigError: the first field its rule refuses; kernel_sizes or strides that are neither
        one value nor one per layer.
    """
    model_fields.check(model_cfg, fields or FIELDS)
    per_layer(model_cfg, "kernel_sizes")
    per_layer(model_cfg, "strides")


def check_inputs(model_cfg: Any, feature_shape: tuple[int, ...]) -> None:
    """Every conv layer and pooling gets positions to read from examples of `feature_shape`.

    Raises:
      ConfigError: naming the layer: a kernel longer than its input, a stride longer than
        its input, or pooling that leaves no positions.
    """
    length, _ = sequence_shape("cnn1d", feature_shape)
    padding, pool = model_cfg.padding, model_cfg.pool
    pool_size = int(model_cfg.pool_size)
    sizes, strides = per_layer(model_cfg, "kernel_sizes"), per_layer(model_cfg, "strides")
    for i, (size, stride) in enumerate(zip(sizes, strides, strict=True)):
        where = (
            f"{length} positions (the examples' length)"
            if i == 0
            else f"{length} positions (the examples' {feature_shape[0]} after layers 0-{i - 1})"
        )
        if size > length:
            raise ConfigError(
                f"model.kernel_sizes: conv layer {i} has a kernel of {size} positions but its "
                f"input has {where}; use smaller kernels, strides or pools, or fewer layers"
            )
        if stride > length:
            raise ConfigError(
                f"model.strides: conv layer {i} has stride {stride} but its input has {where}; "
                "a stride longer than its input leaves no positions to step to"
            )
        length = conv.output_length(length, size, stride, padding)
        if conv.pooled_length(length, pool, pool_size) < 1:
            raise ConfigError(
                f"model.pool_size={pool_size}: pooling after conv layer {i} gets {length} "
                "positions and leaves none; use a smaller pool_size or strides, or fewer layers"
            )
        length = conv.pooled_length(length, pool, pool_size)


# The conv layers' fields, which cnn2d shares: one entry per conv layer; a kernel_sizes or
# strides tuple of one value applies to every layer (--config.model.kernel_sizes=5 gives (5,)).
CHANNELS = FieldSpec("channels", (32, 32, 32), IntegerTuple("model.channels"), STRUCTURAL)
KERNEL_SIZES = FieldSpec("kernel_sizes", (5,), IntegerTuple("model.kernel_sizes"), STRUCTURAL)
STRIDES = FieldSpec("strides", (1,), IntegerTuple("model.strides"), STRUCTURAL)
PADDING = model_fields.choice("padding", "same", conv.PADDINGS)
POOL = model_fields.choice("pool", "none", tuple(conv.POOLS))  # after each conv layer
POOL_SIZE = model_fields.integer("pool_size", 2, 1, 10**6, "positions per pooling window")
# im2col or lax; auto = im2col on CPU, lax elsewhere (jaxnn.nn.conv)
CONV_IMPL = model_fields.choice("conv_impl", "auto", conv.CONV_IMPL_CHOICES)
LAYER_NORM = FieldSpec("layer_norm", False, Flag("model.layer_norm"), STRUCTURAL)
FIELDS = (
    CHANNELS, KERNEL_SIZES, STRIDES, PADDING, POOL, POOL_SIZE, LAYER_NORM, CONV_IMPL,
    model_fields.HIDDEN, *model_fields.UNITS,
)  # fmt: skip

FAMILY = ModelFamily(
    name="cnn1d",
    build=build,
    fields=FIELDS,
    validate=validate_model_config,
    preactivations=preactivations,
    activation_field="activation",
    layer_order=layer_order,
    transfer_fields=("activation", "padding", "pool", "pool_size", "layer_norm"),
    check_inputs=check_inputs,
)
