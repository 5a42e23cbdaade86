"""Mixed precision: the dtype a model computes in (`model.dtype`), its parameters kept float32.

With bfloat16 each layer casts its float32 parameters to the computation dtype where it uses
them (the gradient flows back through the cast as float32, as does the optimiser state), and the
outputs are cast back to float32 (`outputs_in_float32`) before any loss or metric reads them. A
family's `build` is wrapped (`in_model_dtype`) so every Module it builds is cloned with the
config's `dtype`; a Module without a `dtype` attribute is refused for any dtype but float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.errors import ConfigError

# model.dtype -> the dtype the model computes in.
COMPUTE_DTYPES: dict[str, Any] = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def compute_dtype(model_cfg: Any) -> Any:
    """The dtype `model.dtype` names.

    Raises:
      ConfigError: a name that is not one of COMPUTE_DTYPES.
    """
    name = model_cfg.dtype
    if not isinstance(name, str) or name not in COMPUTE_DTYPES:
        raise ConfigError(
            f"model.dtype must be one of {', '.join(COMPUTE_DTYPES)} (the dtype the model "
            f"computes in; parameters stay float32), got {name!r}"
        )
    return COMPUTE_DTYPES[name]


def with_dtype(module: nn.Module, dtype: Any) -> nn.Module:
    """`module` computing in `dtype`: unchanged for float32, else `module.clone(dtype=dtype)`.

    Raises:
      ConfigError: a dtype other than float32 for a Module without a `dtype` attribute.
    """
    if jnp.dtype(dtype) == jnp.float32:
        return module
    if all(field.name != "dtype" for field in dataclasses.fields(module)):
        raise ConfigError(
            f"model.dtype={jnp.dtype(dtype).name}: the model {type(module).__name__} has no "
            "`dtype` attribute to compute in; declare `dtype: Any = jnp.float32` and pass it "
            "to its layers (flax.linen layers take dtype=), or leave model.dtype=float32"
        )
    return module.clone(dtype=dtype)


@dataclasses.dataclass(frozen=True)
class InModelDtype:
    """A family's builder whose Modules compute in the config's `model.dtype` (equal, and so
    hashing alike, for the same builder: programs built twice from one family share their
    compiled code)."""

    build: Callable[[Any, Any, int], nn.Module]

    def __call__(self, model_cfg: Any, hparams: Any, num_outputs: int) -> nn.Module:
        return with_dtype(self.build(model_cfg, hparams, num_outputs), compute_dtype(model_cfg))


@dataclasses.dataclass(frozen=True)
class CheckingModelDtype:
    """A family's `validate` that checks `model.dtype` first, then the family's own rules."""

    validate: Callable[[Any], None] | None

    def __call__(self, model_cfg: Any) -> None:
        compute_dtype(model_cfg)
        if self.validate is not None:
            self.validate(model_cfg)


def in_model_dtype(family: Any) -> Any:
    """The `ModelFamily` whose `build` gives Modules that compute in `model.dtype`, and whose
    `validate` checks that dtype first (a family that already is so, unchanged)."""
    if isinstance(family.build, InModelDtype):
        return family
    return dataclasses.replace(
        family, build=InModelDtype(family.build), validate=CheckingModelDtype(family.validate)
    )


def x64_enabled() -> bool:
    """Whether JAX's x64 mode is on in this thread (`jax.enable_x64` is a thread's own)."""
    return bool(jax.dtypes.canonicalize_dtype(np.float64) == np.float64)


def cast(x: jax.Array, dtype: Any) -> jax.Array:
    """A floating array narrowed to `dtype` when that is narrower than float32 (bfloat16:
    mixed precision); unchanged otherwise, so that the float32 default leaves float64
    computations (x64 mode, the finite-difference checks) in float64."""
    narrow = jnp.finfo(dtype).bits < 32
    if narrow and jnp.issubdtype(x.dtype, jnp.floating) and x.dtype != dtype:
        return x.astype(dtype)
    return x


def layer_dtype(dtype: Any) -> Any:
    """The `dtype=` to give a flax layer (LayerNorm) computing in `dtype`: bfloat16 as it is,
    None for float32, so that flax computes in its inputs' dtype (float64 in x64 mode)."""
    return dtype if jnp.finfo(dtype).bits < 32 else None


def outputs_in_float32(outputs: Any) -> Any:
    """Every floating leaf of a Module's outputs narrower than float32 (bfloat16) as float32,
    what losses and metrics read; float32 and float64 outputs (x64 mode) are left as they are."""

    def widen(leaf: Any) -> Any:
        leaf = jnp.asarray(leaf)
        if jnp.issubdtype(leaf.dtype, jnp.floating) and jnp.finfo(leaf.dtype).bits < 32:
            return leaf.astype(jnp.float32)
        return leaf

    return jax.tree_util.tree_map(widen, outputs)
