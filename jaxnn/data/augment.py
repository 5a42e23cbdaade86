"""Data augmentation of training batches: random shifts, Gaussian noise and random scaling.

`config.augment` describes it; `jaxnn.core.train.train_step` applies `augment_batch` to every
training batch inside the jitted step, with a key derived from the member's key and the global
step, so a resumed run draws the same transforms and member i of an ensemble draws those of the
single run with its key. The validation and test splits (and the training metrics, which
`evaluate` computes on the whole stored training split) never see it.

The transforms, in the order they are applied, on a batch x [B, L, ...] (L positions along
axis 1, e.g. MNIST-1D's 40):

- shift: each example moves by an offset drawn uniformly from -shift..shift positions along
  axis 1, wrapping round (`shift_mode=circular`) or filled with zeros (`zero`; features are
  standardised, so a zero is the training mean);
- scale: each example is multiplied by a factor drawn uniformly from [1 - scale, 1 + scale];
- noise: Gaussian noise of standard deviation `noise` is added to every feature.

A value of 0 that is not swept leaves its transform out of the program, so a config without
augmentation trains exactly as before the feature existed. The numeric values are
`NumericField`s that members may each set differently (`restarts.sweep='augment.noise=[0,0.1]'`):
members carry them in their hparams only when they are swept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.config.fields import NumericField
from jaxnn.errors import ConfigError


def _is_count(value: float) -> bool:
    return value >= 0 and float(value).is_integer()


NUMERIC_FIELDS = (
    NumericField(
        "augment.shift",
        "augment_shift",
        _is_count,
        "must be a whole number of positions >= 0 (0 = off)",
        integer=True,
        zero_removes=True,
        constant_unless_swept=True,
    ),
    NumericField(
        "augment.noise",
        "augment_noise",
        lambda v: v >= 0,
        "must be a standard deviation >= 0 (0 = off)",
        zero_removes=True,
        constant_unless_swept=True,
    ),
    NumericField(
        "augment.scale",
        "augment_scale",
        lambda v: 0 <= v < 1,
        "must be in [0, 1) (0 = off; factors are drawn from [1 - scale, 1 + scale])",
        zero_removes=True,
        constant_unless_swept=True,
    ),
)
# fold_in tags of each transform's key within the step's augmentation key.
SHIFT_TAG, SCALE_TAG, NOISE_TAG = 0, 1, 2

Scalar = float | jax.Array


def _circular(x: jax.Array, source: jax.Array) -> jax.Array:
    length = x.shape[1]
    return _gather(x, source % length)


def _zero_filled(x: jax.Array, source: jax.Array) -> jax.Array:
    length = x.shape[1]
    inside = (source >= 0) & (source < length)
    gathered = _gather(x, jnp.clip(source, 0, length - 1))
    return jnp.where(_expand(inside, x.ndim), gathered, jnp.zeros((), x.dtype))


# shift_mode -> fill(x [B, L, ...], source int32 [B, L]) -> x[b, source[b, t], ...] with the
# positions outside 0..L-1 filled by the mode's rule.
SHIFT_MODES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "circular": _circular,
    "zero": _zero_filled,
}


def _expand(index: jax.Array, ndim: int) -> jax.Array:
    return index.reshape(index.shape + (1,) * (ndim - index.ndim))


def _gather(x: jax.Array, source: jax.Array) -> jax.Array:
    return jnp.take_along_axis(x, _expand(source, x.ndim), axis=1)


def shift(x: jax.Array, offsets: jax.Array, mode: str = "circular") -> jax.Array:
    """Moves example b of x [B, L, ...] by offsets[b] positions along axis 1 (later positions
    for a positive offset): out[b, t] = x[b, t - offsets[b]], wrapped or zero-filled by `mode`."""
    source = jnp.arange(x.shape[1], dtype=jnp.int32)[None, :] - offsets.astype(jnp.int32)[:, None]
    return SHIFT_MODES[mode](x, source)


def scale(x: jax.Array, factors: jax.Array) -> jax.Array:
    """Multiplies example b of x [B, ...] by factors[b]."""
    return x * _expand(factors.astype(x.dtype), x.ndim)


def add_noise(x: jax.Array, std: Scalar, key: jax.Array) -> jax.Array:
    """x plus Gaussian noise of standard deviation `std` on every entry."""
    return x + std * jax.random.normal(key, x.shape, x.dtype)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The static part of a run's augmentation (a field of `jaxnn.core.program.Program`).

    Attributes:
      shift, noise, scale: the config's values, used for members that do not carry their own
        (a field that is not swept); a 0 leaves the transform out of the program.
      shift_mode: a key of SHIFT_MODES.
      swept: the hparam names members carry (their swept fields).
    """

    shift: int = 0
    noise: float = 0.0
    scale: float = 0.0
    shift_mode: str = "circular"
    swept: frozenset[str] = frozenset()

    def value(self, hparams: Mapping[str, jax.Array], hparam: str) -> Scalar:
        """The member's value of a field: its traced one when swept, else the config's."""
        if hparam in self.swept:
            return hparams[hparam]
        return getattr(self, hparam.removeprefix("augment_"))

    def uses(self, hparam: str) -> bool:
        """Whether the program contains the transform (swept, or a non-zero config value)."""
        return hparam in self.swept or getattr(self, hparam.removeprefix("augment_")) != 0

    @property
    def active(self) -> bool:
        return any(self.uses(f.hparam) for f in NUMERIC_FIELDS)


NO_AUGMENTATION = Augmentation()


def augment_batch(
    augmentation: Augmentation, hparams: Mapping[str, jax.Array], x: jax.Array, key: jax.Array
) -> jax.Array:
    """The augmented training batch x [B, L, ...] (shift, then scale, then noise).

    Args:
      augmentation: the run's augmentation.
      hparams: the member's hyperparameters (its swept augmentation values among them).
      x: the batch, float32 [B, L, ...].
      key: the step's augmentation key (each transform folds in a tag of its own).

    Returns:
      x itself when no transform is in the program, else the augmented batch of x's shape.
    """
    batch = x.shape[0]
    if augmentation.uses("augment_shift"):
        limit = jnp.round(jnp.asarray(augmentation.value(hparams, "augment_shift"))).astype(
            jnp.int32
        )
        offsets = jax.random.randint(
            jax.random.fold_in(key, SHIFT_TAG), (batch,), -limit, limit + 1, jnp.int32
        )
        x = shift(x, offsets, augmentation.shift_mode)
    if augmentation.uses("augment_scale"):
        half_range = augmentation.value(hparams, "augment_scale")
        unit = jax.random.uniform(
            jax.random.fold_in(key, SCALE_TAG), (batch,), x.dtype, minval=-1.0, maxval=1.0
        )
        x = scale(x, 1.0 + half_range * unit)
    if augmentation.uses("augment_noise"):
        std = augmentation.value(hparams, "augment_noise")
        x = add_noise(x, std, jax.random.fold_in(key, NOISE_TAG))
    return x


def from_config(augment_cfg: Any, swept_fields: Iterable[str] = ()) -> Augmentation:
    """The Augmentation of `config.augment` with the run's swept fields."""
    swept = {f.hparam for f in NUMERIC_FIELDS if f.field in set(swept_fields)}
    return Augmentation(
        shift=int(augment_cfg.shift),
        noise=float(augment_cfg.noise),
        scale=float(augment_cfg.scale),
        shift_mode=str(augment_cfg.shift_mode),
        swept=frozenset(swept),
    )


def validate_augment_config(augment_cfg: Any) -> None:
    """Checks `config.augment`.

    Raises:
      ConfigError: an unknown shift_mode, a shift that is not a whole number >= 0, a negative
        noise, a scale outside [0, 1).
    """
    mode = augment_cfg.shift_mode
    if mode not in SHIFT_MODES:
        raise ConfigError(
            f"augment.shift_mode: unknown {mode!r}; choose one of {', '.join(sorted(SHIFT_MODES))}"
        )
    # augment.shift's type and range: jaxnn.config.fields.INTEGER_FIELDS, checked before this.
    for field in NUMERIC_FIELDS:
        problem = field.problem(augment_cfg[field.field.rpartition(".")[2]])
        if problem:
            raise ConfigError(problem)


def check_feature_shape(
    augment_cfg: Any, swept: Mapping[str, Iterable[float]], feature_shape: tuple[int, ...]
) -> None:
    """Checks the largest shift (config, sweep or search) against the positions of the inputs.

    Args:
      augment_cfg: `config.augment`.
      swept: every member's value of each swept or searched field, dotted field -> values.
      feature_shape: the data's feature shape (positions along its first axis).

    Raises:
      ConfigError: a shift of at least the input length (every position would move out).
    """
    shifts = [augment_cfg.shift, *swept.get("augment.shift", ())]
    largest = int(max(shifts))
    if largest == 0:
        return
    length = feature_shape[0] if feature_shape else 1
    if largest >= length:
        raise ConfigError(
            f"augment.shift={largest} is not smaller than the input length {length} (the "
            f"positions of inputs of shape {tuple(feature_shape)}); use at most {length - 1}"
        )
