"""Data augmentation of training batches: random crops and flips of images, random shifts,
Gaussian noise and random scaling.

`config.augment` describes it; `jaxnn.core.train.train_step` applies `augment_batch` to every
training batch inside the jitted step, with a key derived from the member's key and the global
step, so a resumed run draws the same transforms and member i of an ensemble draws those of the
single run with its key. The validation and test splits (and the training metrics, which
`evaluate` computes on the whole stored training split) never see it.

The transforms, in the order they are applied, on a batch x [B, L, ...] (L positions along
axis 1, e.g. MNIST-1D's 40; images are [B, H, W, C]):

- crop (images): each image is padded with `crop` zero pixels on every side and a window of its
  own size is cut at a random place: the image moves by offsets drawn uniformly from
  -crop..crop along its height and its width, the pixels moved in are zeros (the training mean);
- flip (images): each image is mirrored left to right with probability 1/2;
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
        "augment.crop",
        "augment_crop",
        _is_count,
        "must be a whole number of pixels >= 0 (0 = off)",
        integer=True,
        zero_removes=True,
        constant_unless_swept=True,
    ),
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
SHIFT_TAG, SCALE_TAG, NOISE_TAG, CROP_TAG, FLIP_TAG = 0, 1, 2, 3, 4

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


def crop(x: jax.Array, offsets: jax.Array) -> jax.Array:
    """Image b of x [B, H, W, C] moved by offsets[b] = (rows, columns), zero-filled: the window
    of the image padded with zeros that starts `offsets[b]` before its top-left corner."""
    x = shift(x, offsets[:, 0], "zero")
    return jnp.swapaxes(shift(jnp.swapaxes(x, 1, 2), offsets[:, 1], "zero"), 1, 2)


def flip(x: jax.Array, flipped: jax.Array) -> jax.Array:
    """Image b of x [B, H, W, C] mirrored left to right where flipped[b] is true."""
    return jnp.where(_expand(flipped, x.ndim), x[:, :, ::-1], x)


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
      crop, shift, noise, scale: the config's values, used for members that do not carry their
        own (a field that is not swept); a 0 leaves the transform out of the program.
      flip: mirror each image left to right with probability 1/2.
      shift_mode: a key of SHIFT_MODES.
      swept: the hparam names members carry (their swept fields).
    """

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
    """The augmented training batch x [B, L, ...] (crop, flip, shift, scale, then noise).

    Args:
      augmentation: the run's augmentation.
      hparams: the member's hyperparameters (its swept augmentation values among them).
      x: the batch, float32 [B, L, ...].
      key: the step's augmentation key (each transform folds in a tag of its own).

    Returns:
      x itself when no transform is in the program, else the augmented batch of x's shape.
    """
    batch = x.shape[0]
    if augmentation.uses("augment_crop"):
        limit = _limit(augmentation.value(hparams, "augment_crop"))
        offsets = jax.random.randint(
            jax.random.fold_in(key, CROP_TAG), (batch, 2), -limit, limit + 1, jnp.int32
        )
        x = crop(x, offsets)
    if augmentation.flip:
        x = flip(x, jax.random.bernoulli(jax.random.fold_in(key, FLIP_TAG), 0.5, (batch,)))
    if augmentation.uses("augment_shift"):
        limit = _limit(augmentation.value(hparams, "augment_shift"))
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


def _limit(value: Scalar) -> jax.Array:
    """A member's largest offset (a traced float when swept) as an int32 scalar."""
    return jnp.round(jnp.asarray(value)).astype(jnp.int32)


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
    """Checks `config.augment`.

    Raises:
      ConfigError: an unknown shift_mode, a crop or shift that is not a whole number >= 0, a
        negative noise, a scale outside [0, 1).
    """
    mode = augment_cfg.shift_mode
    if mode not in SHIFT_MODES:
        raise ConfigError(
            f"augment.shift_mode: unknown {mode!r}; choose one of {', '.join(sorted(SHIFT_MODES))}"
        )
    # augment.crop's and shift's type and range: jaxnn.config.fields.INTEGER_FIELDS, checked
    # before this.
    for field in NUMERIC_FIELDS:
        problem = field.problem(augment_cfg[field.field.rpartition(".")[2]])
        if problem:
            raise ConfigError(problem)


def check_feature_shape(
    augment_cfg: Any, swept: Mapping[str, Iterable[float]], feature_shape: tuple[int, ...]
) -> None:
    """Checks the largest shift and crop (config, sweep or search) against the inputs' shape.

    Args:
      augment_cfg: `config.augment`.
      swept: every member's value of each swept or searched field, dotted field -> values.
      feature_shape: the data's feature shape (positions along its first axis; [H, W, C] for
        images).

    Raises:
      ConfigError: a shift of at least the input length (every position would move out); a
        crop or flip of inputs that are not images [H, W, C]; a crop of at least the image's
        height or width.
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
