"""Random orthogonal matrices from plain XLA ops (Householder QR), without LAPACK.

LAPACK's QR (behind `jax.random.orthogonal` and `flax.linen.initializers.orthogonal`) is a CPU
custom call that waits for its parts on the intra-op thread pool: with several running at once
(the GRU's three gates) every thread can end up waiting, and initialisation hangs. Householder
reflections in a `fori_loop` give the same Haar-distributed matrix (Mezzadri 2007), equal to
`jax.random.orthogonal`'s for the same key to float32 rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def householder_q(a: jax.Array) -> jax.Array:
    """Q [m, n] of the reduced QR of a [m, n] (m >= n) with R's diagonal >= 0 (unique when a
    has full rank), by n Householder reflections."""
    m, n = a.shape
    rows = jnp.arange(m)

    def reflect(k: int, carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        r, q = carry
        x = jnp.where(rows >= k, r[:, k], 0.0)  # column k from the diagonal down
        alpha = -jnp.where(r[k, k] >= 0, 1.0, -1.0) * jnp.linalg.norm(x)
        v = x - alpha * (rows == k)
        length = jnp.linalg.norm(v)
        v = jnp.where(length > 0, v / jnp.where(length > 0, length, 1.0), 0.0)
        # H = I - 2 v v^T: R <- H R and Q <- Q H keep a = Q R.
        return r - 2.0 * jnp.outer(v, v @ r), q - 2.0 * jnp.outer(q @ v, v)

    r, q = jax.lax.fori_loop(0, n, reflect, (a, jnp.eye(m, dtype=a.dtype)))
    return q[:, :n] * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0).astype(a.dtype)


def orthogonal(key: jax.Array, n: int, m: int | None = None, dtype: Any = jnp.float32) -> jax.Array:
    """`jax.random.orthogonal(key, n, m=m)` without LAPACK: [n, m] with orthonormal columns
    (n >= m) or rows (n < m), m defaulting to n."""
    m = n if m is None else m
    q = householder_q(jax.random.normal(key, (max(n, m), min(n, m)), dtype))
    return q.T if n < m else q


def orthogonal_init(scale: float = 1.0) -> Callable[..., jax.Array]:
    """`flax.linen.initializers.orthogonal(scale)` (column axis -1) without LAPACK, for a
    model of your own whose initialisation must not hang on CPU."""

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        if len(shape) < 2:
            raise ValueError("orthogonal_init needs a shape of at least 2 axes")
        columns = shape[-1]
        q = orthogonal(key, math.prod(shape) // columns, columns, dtype)
        return jnp.asarray(scale, dtype) * q.reshape(shape)

    return init
