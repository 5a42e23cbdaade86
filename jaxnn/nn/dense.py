"""A Dense layer whose weight gradient is laid out for XLA CPU's fast matmul path.

The weight gradient x^T @ dy contracts the first axis of both operands, which XLA CPU runs at
about half the speed of its matmul library: the backward pass here materialises x^T behind an
optimisation barrier and multiplies in the fast layout. Parameters are `flax.linen.Dense`'s,
the gradients too up to float32 rounding; forward-mode differentiation (jvp) is not defined.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.nn.precision import cast


@jax.custom_vjp
def dense(x: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """x [B, I] @ kernel [I, O] + bias [O]."""
    return x @ kernel + bias


def _dense_fwd(
    x: jax.Array, kernel: jax.Array, bias: jax.Array
) -> tuple[jax.Array, tuple[jax.Array, jax.Array]]:
    return dense(x, kernel, bias), (x, kernel)


def weight_gradient(x: jax.Array, dy: jax.Array) -> jax.Array:
    """x^T @ dy for x [B, I] and dy [B, O]: the weight gradient of x @ W, with x^T materialised
    first (behind an optimisation barrier) so that the dot runs in XLA CPU's fast layout."""
    x_t = jax.lax.optimization_barrier(jnp.swapaxes(x, -1, -2))  # [I, B], kept materialised
    return x_t @ dy


def _dense_bwd(
    residuals: tuple[jax.Array, jax.Array], dy: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    x, kernel = residuals
    return dy @ kernel.T, weight_gradient(x, dy), dy.sum(axis=0)


dense.defvjp(_dense_fwd, _dense_bwd)


class Dense(nn.Module):
    """`flax.linen.Dense` (float32 params `kernel` [I, O] and `bias` [O]) computed by `dense`
    in `dtype` (flax's: inputs and parameters are cast to it, and the gradient reaches the
    float32 parameters through the cast)."""

    features: int
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", self.kernel_init, (x.shape[-1], self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        return dense(*(cast(a, self.dtype) for a in (x, kernel, bias)))
