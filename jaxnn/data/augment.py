"""Data augmentation of training batches: random crops and flips of images, random shifts,
Gaussian noise and random scaling (`config.augment`; docs/augmentation.md describes each).

`jaxnn.core.train.train_step` applies `augment_batch` to every training batch inside the jitted
step, with a key from the member's key and the global step, so a resumed run draws the same
transforms and member i of an ensemble those of the single run with its key. A 0 that is not
swept leaves its transform out of the program; members carry a numeric value only when swept.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxnn.config.fields import NumericField
from jaxnn.errors import ConfigError


def _is_count(value: float) -> bool:
    return value >= 0 and float(value).is_integer()


# Every augmentation value is 0 = off, and a constant of the program unless swept.
_AugmentField = functools.partial(NumericField, zero_removes=True, constant_unless_swept=True)
NUMERIC_FIELDS = (
    _AugmentField(
        "augment.crop",
        "augment_crop",
        _is_count,
        "must be a whole number of pixels >= 0 (0 = off)",
        integer=True,
    ),
    _AugmentField(
        "augment.shift",
        "augment_shift",
        _is_count,
        "must be a whole number of positions >= 0 (0 = off)",
        integer=True,
    ),
    _AugmentField(
        "augment.noise",
        "augment_noise",
        lambda v: v >= 0,
        "must be a standard deviation >= 0 (0 = off)",
    ),
    _AugmentField(
        "augment.scale",
        "augment_scale",
        lambda v: 0 <= v < 1,
        "must be in [0, 1) (0 = off; factors are drawn from [1 - scale, 1 + scale])",
    ),
)
# fold_in tags of each transform's key within the step's augmentation key.
SHIFT_TAG, SCALE_TAG, NOISE_TAG, CROP_TAG, FLIP_TAG = 0, 1, 2, 3, 4

Scalar = float | jax.Array


def _circular(x: jax.Array, source: jax.Array) -> jax.Array:
    return _gather(x, source % x.shape[1])


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


def crop(x: jax.Array, offsets: jax.Array) -> jax.Array:
    """Image b of x [B, H, W, C] moved by offsets[b] = (rows, columns), zero-filled: the window
    of the image padded with zeros that starts `offsets[b]` before its top-left corner."""
    x = shift(x, offsets[:, 0], "zero")
    return jnp.swapaxes(shift(jnp.swapaxes(x, 1, 2), offsets[:, 1], "zero"), 1, 2)


def flip(x: jax.Array, flipped: jax.Array) -> jax.Array:
    """Image b of x [B, H, W, C] mirrored left to right where flipped[b] is true."""
    return jnp.where(_expand(flipped, x.ndim), x[:, :, ::-1], x)


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """The static part of a run's augmentation (a field of `jaxnn.core.program.Program`): the
    config's values, used by members that do not carry their own, and the `swept` hparam names
    that they carry."""

    crop: int = 0
    flip: bool = False
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
        return self.flip or any(self.uses(f.hparam) for f in NUMERIC_FIELDS)


NO_AUGMENTATION = Augmentation()


def augment_batch(
    augmentation: Augmentation, hparams: Mapping[str, jax.Array], x: jax.Array, key: jax.Array
) -> jax.Array:
    """The augmented training batch x [B, L, ...] float32 (crop, flip, shift, scale, then
    noise; each transform folds its own tag into the step's augmentation `key`), or x itself
    when the program has no transform."""
    batch = x.shape[0]
    if augmentation.uses("augment_crop"):
        limit = augmentation.value(hparams, "augment_crop")
        x = crop(x, _offsets(jax.random.fold_in(key, CROP_TAG), limit, (batch, 2)))
    if augmentation.flip:
        x = flip(x, jax.random.bernoulli(jax.random.fold_in(key, FLIP_TAG), 0.5, (batch,)))
    if augmentation.uses("augment_shift"):
        limit = augmentation.value(hparams, "augment_shift")
        offsets = _offsets(jax.random.fold_in(key, SHIFT_TAG), limit, (batch,))
        x = shift(x, offsets, augmentation.shift_mode)
    if augmentation.uses("augment_scale"):
        half_range = augmentation.value(hparams, "augment_scale")
        unit = jax.random.uniform(
            jax.random.fold_in(key, SCALE_TAG), (batch,), x.dtype, minval=-1.0, maxval=1.0
        )
        x = x * _expand((1.0 + half_range * unit).astype(x.dtype), x.ndim)
    if augmentation.uses("augment_noise"):
        std = augmentation.value(hparams, "augment_noise")
        x = x + std * jax.random.normal(jax.random.fold_in(key, NOISE_TAG), x.shape, x.dtype)
    return x


def _offsets(key: jax.Array, limit: Scalar, shape: tuple[int, ...]) -> jax.Array:
    """Offsets int32 [*shape] drawn uniformly from -limit..limit (a swept limit is a traced
    float: rounded)."""
    limit = jnp.round(jnp.asarray(limit)).astype(jnp.int32)
    return jax.random.randint(key, shape, -limit, limit + 1, jnp.int32)


def from_config(augment_cfg: Any, swept_fields: Iterable[str] = ()) -> Augmentation:
    """The Augmentation of `config.augment` with the run's swept fields."""
    swept = {f.hparam for f in NUMERIC_FIELDS if f.field in set(swept_fields)}
    return Augmentation(
        crop=int(augment_cfg.crop),
        flip=bool(augment_cfg.flip),
        shift=int(augment_cfg.shift),
        noise=float(augment_cfg.noise),
        scale=float(augment_cfg.scale),
        shift_mode=str(augment_cfg.shift_mode),
        swept=frozenset(swept),
    )


def validate_augment_config(augment_cfg: Any) -> None:
    """Checks `config.augment` (ConfigError: an unknown shift_mode, a value out of range)."""
    mode = augment_cfg.shift_mode
    if mode not in SHIFT_MODES:
        raise ConfigError(
            f"augment.shift_mode: unknown {mode!r}; choose one of {', '.join(sorted(SHIFT_MODES))}"
        )
    # crop's and shift's type and range were checked before, by config.fields.INTEGER_FIELDS.
    for field in NUMERIC_FIELDS:
        problem = field.problem(augment_cfg[field.field.rpartition(".")[2]])
        if problem:
            raise ConfigError(problem)


def check_feature_shape(
    augment_cfg: Any, swept: Mapping[str, Iterable[float]], feature_shape: tuple[int, ...]
) -> None:
    """Checks the largest shift and crop (config, sweep or search) against the inputs' shape;
    `swept` maps each swept or searched dotted field to every member's value.

    Raises:
      ConfigError: a shift of at least the input length; a crop or flip of inputs that are
        not images [H, W, C]; a crop of at least the image's height or width.
    """
    shape = tuple(feature_shape)
    largest = _largest(augment_cfg, swept, "shift")
    length = shape[0] if shape else 1
    if largest >= length:
        raise ConfigError(
            f"augment.shift={largest} is not smaller than the input length {length} (the "
            f"positions of inputs of shape {shape}); use at most {length - 1}"
        )
    crop_pixels = _largest(augment_cfg, swept, "crop")
    for field, used in (("crop", crop_pixels > 0), ("flip", augment_cfg.flip)):
        if used and len(shape) != 3:
            raise ConfigError(
                f"augment.{field} transforms images [height, width, channels], but the inputs "
                f"are of shape {shape}; leave it off or use an image data set"
            )
    if crop_pixels and crop_pixels >= min(shape[:2]):
        raise ConfigError(
            f"augment.crop={crop_pixels} is not smaller than the images' height and width "
            f"{shape[:2]}; use at most {min(shape[:2]) - 1}"
        )


def _largest(augment_cfg: Any, swept: Mapping[str, Iterable[float]], name: str) -> int:
    """The largest value of `augment.<name>` any member uses (0: off for every member)."""
    return int(max([augment_cfg[name], *swept.get(f"augment.{name}", ())]))
