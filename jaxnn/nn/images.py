"""Examples read as images: [H, W] or [H, W, C] is an H x W image of C channels (a flat [H, W]
has one)."""

from __future__ import annotations

import jax

from jaxnn.errors import ConfigError


def as_images(x: jax.Array) -> jax.Array:
    """Inputs [B, H, W] or [B, H, W, C] as [B, H, W, C]."""
    return x[..., None] if x.ndim == 3 else x


def image_shape(family: str, feature_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(height, width, channels) of examples of `feature_shape` ([H, W] or [H, W, C]).

    Raises:
      ConfigError: examples of another rank (the message names the family and the data option
        that gives images).
    """
    if len(feature_shape) == 2:
        return feature_shape[0], feature_shape[1], 1
    if len(feature_shape) == 3:
        return feature_shape[0], feature_shape[1], feature_shape[2]
    raise ConfigError(
        f"model.name={family} reads images, examples of shape [H, W] or [H, W, C]; this data "
        f"set's examples have shape {list(feature_shape)} (digits as images: "
        "dataset.name=digits_images)"
    )
