"""Examples read as sequences: [L] or [L, C] is L positions of C channels (a flat [L] has one)."""

from __future__ import annotations

import jax

from jaxnn.errors import ConfigError


def as_sequence(x: jax.Array) -> jax.Array:
    """Inputs [B, L] or [B, L, C] as [B, L, C]."""
    return x[..., None] if x.ndim == 2 else x


def sequence_shape(family: str, feature_shape: tuple[int, ...]) -> tuple[int, int]:
    """(positions, channels) of examples of `feature_shape` ([L] or [L, C]).

    Raises:
      ConfigError: examples of another rank (the message names the family).
    """
    if len(feature_shape) == 1:
        return feature_shape[0], 1
    if len(feature_shape) == 2:
        return feature_shape[0], feature_shape[1]
    raise ConfigError(
        f"model.name={family} reads examples of shape [L] or [L, C] (positions, channels); "
        f"this data set's examples have shape {list(feature_shape)}"
    )
