"""1-D convolutions in two implementations with the same parameters: im2col and `lax.conv`.

Under `vmap` over ensemble members, `lax.conv_general_dilated` becomes a grouped convolution,
which XLA's CPU backend runs slowly. Written as patches (im2col) times a kernel matrix, the
members' convolutions become one batched matmul instead (benchmarks/conv.py measures both).
A GPU may prefer its own convolutions: `resolve_impl('auto')` picks im2col on CPU and `lax`
elsewhere. Both read a kernel [K, C_in, C_out] and a bias [C_out] (the layout of
`flax.linen.Conv`), so a checkpoint trained with one runs with the other.

Padding follows `lax`: 'valid' keeps the windows inside the input; 'same' gives ceil(L / stride)
positions, padding max((out - 1) * stride + K - L, 0) zeros, the smaller half on the left.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.nn.activations import lookup
from jaxnn.nn.dense import weight_gradient
from jaxnn.nn.precision import cast

PADDINGS = ("same", "valid")
# conv(x [B, L, C_in], kernel [K, C_in, C_out], bias [C_out], stride, padding) -> [B, L_out, C_out]
Conv1d = Callable[[jax.Array, jax.Array, jax.Array, int, str], jax.Array]


def output_length(length: int, kernel_size: int, stride: int, padding: str) -> int:
    """The number of positions a convolution leaves (0 when none)."""
    if padding == "same":
        return -(-length // stride)
    return max((length - kernel_size) // stride + 1, 0)


def _padding(length: int, kernel_size: int, stride: int, padding: str) -> tuple[int, int]:
    if padding == "valid":
        return (0, 0)
    total = max((output_length(length, kernel_size, stride, padding) - 1) * stride
                + kernel_size - length, 0)  # fmt: skip
    return (total // 2, total - total // 2)


def patches(x: jax.Array, kernel_size: int, stride: int, padding: str) -> jax.Array:
    """The windows a convolution reads: x [B, L, C] -> [B, L_out, K * C] (position-major).

    Built from K strided slices (no gather), so the backward pass is K strided pads.
    """
    length = x.shape[1]
    out = output_length(length, kernel_size, stride, padding)
    x = jnp.pad(x, ((0, 0), _padding(length, kernel_size, stride, padding), (0, 0)))
    span = (out - 1) * stride + 1
    windows = [x[:, k : k + span : stride, :] for k in range(kernel_size)]
    return jnp.concatenate(windows, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def conv1d_im2col(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int, padding: str
) -> jax.Array:
    """x [B, L, C_in] convolved with kernel [K, C_in, C_out] as patches @ kernel matrix.

    Its backward pass is matmuls of the same fast shapes (see `_im2col_bwd`).

    Returns:
      [B, L_out, C_out].
    """
    return _im2col_fwd(x, kernel, bias, stride, padding)[0]


def _im2col_fwd(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int, padding: str
) -> tuple[jax.Array, tuple[jax.Array, jax.Array, int]]:
    kernel_size, _, features = kernel.shape
    windows = patches(x, kernel_size, stride, padding)
    batch, out, width = windows.shape
    flat = windows.reshape((batch * out, width))
    y = (flat @ kernel.reshape((width, features)) + bias).reshape((batch, out, features))
    return y, (flat, kernel, x.shape[1])


def _im2col_bwd(
    stride: int, padding: str, residuals: tuple[jax.Array, jax.Array, int], dy: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The gradients as matmuls that contract K * C (never the C_out alone), which XLA CPU runs
    several times faster: on this project's CPU a [4000, 32] @ [32, 160] matmul (dy times the
    kernel matrix transposed, the plain backward of patches @ kernel) ran at 48 GFLOP/s against
    233 for [4000, 160] @ [160, 32] (`python benchmarks/conv.py --matmul-rates`).

    dx is the convolution of dy, dilated by the stride and padded by K - 1, with the kernel
    flipped along its positions and transposed: patches of dy [B * L_pad, K * C_out] times a
    [K * C_out, C_in] matrix, then the padding cut off. dW is patches^T @ dy
    (`jaxnn.nn.dense.weight_gradient`, in the fast layout).
    """
    flat, kernel, length = residuals
    kernel_size, channels, features = kernel.shape
    batch, out = dy.shape[0], dy.shape[1]
    flat_dy = dy.reshape((batch * out, features))
    d_kernel = weight_gradient(flat, flat_dy).reshape(kernel.shape)
    d_bias = flat_dy.sum(axis=0)
    left, right = _padding(length, kernel_size, stride, padding)
    padded_length = length + left + right
    dilated = (out - 1) * stride + 1
    spread = jax.lax.pad(
        dy,
        jnp.zeros((), dy.dtype),
        ((0, 0, 0), (kernel_size - 1, padded_length - dilated, stride - 1), (0, 0, 0)),
    )  # [B, L_pad + K - 1, C_out]: dy[o] at position K - 1 + o * stride
    windows = patches(spread, kernel_size, 1, "valid")  # [B, L_pad, K * C_out]
    flipped = jnp.swapaxes(kernel[::-1], 1, 2).reshape((kernel_size * features, channels))
    dx_padded = windows.reshape((-1, kernel_size * features)) @ flipped
    dx = dx_padded.reshape((batch, padded_length, channels))[:, left : left + length]
    return dx, d_kernel, d_bias


conv1d_im2col.defvjp(_im2col_fwd, _im2col_bwd)


def conv1d_lax(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, stride: int, padding: str
) -> jax.Array:
    """x [B, L, C_in] convolved with kernel [K, C_in, C_out] by `lax.conv_general_dilated`.

    Returns:
      [B, L_out, C_out].
    """
    length, kernel_size = x.shape[1], kernel.shape[0]
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride,),
        padding=[_padding(length, kernel_size, stride, padding)],
        dimension_numbers=("NWC", "WIO", "NWC"),
    )
    return y + bias


CONV_IMPLS: dict[str, Conv1d] = {"im2col": conv1d_im2col, "lax": conv1d_lax}
CONV_IMPL_CHOICES = ("auto", *CONV_IMPLS)


def resolve_impl(name: str, backend: str | None = None) -> str:
    """The implementation `name` stands for: 'auto' is im2col on CPU, lax on other backends.

    Raises:
      ConfigError: an unknown name (the message lists the known ones).
    """
    if name == "auto":
        return "im2col" if (backend or jax.default_backend()) == "cpu" else "lax"
    lookup(CONV_IMPLS, name, "model.conv_impl")
    return name


class Conv1D(nn.Module):
    """A 1-D convolution over the positions of x [B, L, C_in] -> [B, L_out, features].

    Parameters `kernel` [K, C_in, features] and `bias` [features], as `flax.linen.Conv`,
    float32; `dtype` is the dtype of the computation (inputs, kernel and bias are cast to it).
    """

    features: int
    kernel_size: int
    stride: int = 1
    padding: str = "same"
    impl: str = "auto"
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros
    dtype: Any = jnp.float32  # of the computation; the parameters are float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel", self.kernel_init, (self.kernel_size, x.shape[-1], self.features), jnp.float32
        )
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        conv = CONV_IMPLS[resolve_impl(self.impl)]
        x, kernel, bias = (cast(a, self.dtype) for a in (x, kernel, bias))
        return conv(x, kernel, bias, self.stride, self.padding)


def pool1d(x: jax.Array, kind: str, size: int) -> jax.Array:
    """Non-overlapping pooling of x [B, L, C] over windows of `size` positions (a remainder
    is dropped): [B, L // size, C]. kind is 'none' (x unchanged), 'max' or 'avg'."""
    if kind == "none":
        return x
    batch, length, channels = x.shape
    out = length // size
    windows = x[:, : out * size, :].reshape((batch, out, size, channels))
    return lookup(POOLS, kind, "model.pool")(windows)


POOLS: dict[str, Callable[[jax.Array], jax.Array] | None] = {
    "none": None,
    "max": lambda windows: jnp.max(windows, axis=2),
    "avg": lambda windows: jnp.mean(windows, axis=2),
}


def pooled_length(length: int, kind: str, size: int) -> int:
    """The positions `pool1d` leaves."""
    return length if kind == "none" else length // size
