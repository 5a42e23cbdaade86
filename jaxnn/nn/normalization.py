"""The normalisation a convolutional layer may be followed by (`model.norm`): none, batch
(`flax.linen.BatchNorm`: its running statistics are the member's model state), group or layer."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from jaxnn.nn.precision import layer_dtype

NORMS = ("none", "batch", "group", "layer")
BATCH_NORM_MOMENTUM = 0.9  # flax's ImageNet ResNet example's
GROUPS = 8  # GroupNorm's groups, where they divide the channels


def normalize(
    x: jax.Array,
    kind: str,
    *,
    train: bool,
    name: str,
    dtype: Any,
    scale_init: Any = nn.initializers.ones,
) -> jax.Array:
    """x [B, ..., C] normalised over channels by `kind`, a layer named `name` (none: x), its
    scale starting at `scale_init`; GroupNorm has min(GROUPS, C) groups when they divide C, else
    one group per channel."""
    if kind == "none":
        return x
    settings = {"scale_init": scale_init, "dtype": layer_dtype(dtype), "name": name}
    if kind == "batch":
        return nn.BatchNorm(
            use_running_average=not train, momentum=BATCH_NORM_MOMENTUM, **settings
        )(x)
    if kind == "group":
        channels = x.shape[-1]
        num = min(GROUPS, channels)
        return nn.GroupNorm(num_groups=num if channels % num == 0 else channels, **settings)(x)
    return nn.LayerNorm(**settings)(x)
