"""Dropout keep-masks from a keyed integer hash: one fused elementwise pass instead of threefry.

Threefry draws two 32-bit seeds per mask (`jax.random.bernoulli` draws a block per unit, a loop
over the array on XLA CPU); each unit's bits are `mix(mix(index ^ seed_a) + seed_b)`, `mix` being
Wellons' lowbias32 (a bijection on uint32). Two seeds keep masks of different keys from being
shifted copies of each other. Deterministic in the key and vmappable; the keep probability may
be traced and is resolved to 24 bits.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

_UNIFORM_BITS = 24  # top bits of the hash compared with keep_prob * 2**24


def _mix32(x: jax.Array) -> jax.Array:
    """Wellons' lowbias32 integer hash of uint32 values."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def keep_mask(key: jax.Array, keep_prob: float | jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """A bool mask of `shape` (at most 2**32 entries) whose entries are True with probability
    `keep_prob` in [0, 1] (a Python float or a traced scalar), independently."""
    size = math.prod(shape)
    if size > 2**32:
        raise ValueError(f"a dropout mask of {size} entries is larger than 2**32")
    seed_a, seed_b = jax.random.bits(key, (2,), jnp.uint32)
    index = jax.lax.iota(jnp.uint32, size).reshape(shape)
    bits = _mix32(_mix32(index ^ seed_a) + seed_b)
    uniform = (bits >> (32 - _UNIFORM_BITS)).astype(jnp.float32)
    return uniform < jnp.asarray(keep_prob, jnp.float32) * float(2**_UNIFORM_BITS)
