"""Convolutions over one or two spatial axes, by `lax.conv` or by im2col, with the parameters of
`flax.linen.Conv` (kernel [*K, C_in, C_out], bias [C_out]), so a checkpoint runs with either.

Under `vmap` `lax.conv_general_dilated` becomes a grouped convolution, slow on XLA CPU; im2col
(patches times a kernel matrix) makes the members' convolutions one batched matmul
(benchmarks/conv.py). 'auto' is im2col on CPU, `lax` elsewhere. Padding follows `lax`: 'same'
gives ceil(L / stride) positions, the smaller half of the padding on the left.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.nn.dense import weight_gradient
from jaxnn.nn.lookup import lookup
from jaxnn.nn.precision import cast

PADDINGS = ("same", "valid")
# conv(x [B, *S, C_in], kernel [*K, C_in, C_out], bias [C_out], strides, padding)
#   -> [B, *S_out, C_out]
ConvFn = Callable[[jax.Array, jax.Array, jax.Array, tuple[int, ...], str], jax.Array]


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


def patches(
    x: jax.Array, kernel_shape: tuple[int, ...], strides: tuple[int, ...], padding: str
) -> jax.Array:
    """The windows a convolution reads: x [B, *S, C] -> [B, *S_out, prod(K) * C], window
    positions in row-major order, channels fastest (the order of a kernel [*K, C, F] reshaped
    to [prod(K) * C, F]).

    Built from prod(K) strided slices (no gather), so the backward pass is strided pads.
    """
    spatial = x.shape[1:-1]
    outs = [output_length(*axis, padding) for axis in zip(spatial, kernel_shape, strides)]
    pads = [_padding(*axis, padding) for axis in zip(spatial, kernel_shape, strides)]
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    windows = []
    for offsets in itertools.product(*(range(k) for k in kernel_shape)):
        index = tuple(
            slice(first, first + (out - 1) * stride + 1, stride)
            for first, out, stride in zip(offsets, outs, strides)
        )
        windows.append(x[(slice(None), *index, slice(None))])
    return jnp.concatenate(windows, axis=-1)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def conv_im2col(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, strides: tuple[int, ...], padding: str
) -> jax.Array:
    """x [B, *S, C_in] convolved with kernel [*K, C_in, C_out] as patches @ kernel matrix:
    [B, *S_out, C_out]. Its backward pass is matmuls too (`_im2col_bwd`)."""
    return _im2col_fwd(x, kernel, bias, strides, padding)[0]


Residuals = tuple[jax.Array, jax.Array, tuple[int, ...]]


def _im2col_fwd(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, strides: tuple[int, ...], padding: str
) -> tuple[jax.Array, Residuals]:
    kernel_shape, features = kernel.shape[:-2], kernel.shape[-1]
    windows = patches(x, kernel_shape, strides, padding)
    width = windows.shape[-1]
    flat = windows.reshape((-1, width))
    y = (flat @ kernel.reshape((width, features)) + bias).reshape((*windows.shape[:-1], features))
    return y, (flat, kernel, x.shape[1:-1])


def _im2col_bwd(
    strides: tuple[int, ...], padding: str, residuals: Residuals, dy: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The gradients as matmuls that contract prod(K) * C, which XLA CPU runs several times faster
    than the plain backward of patches @ kernel (`python benchmarks/conv.py --matmul-rates`): dx
    is the convolution of dy, dilated by the strides and padded by K - 1, with the kernel flipped
    and transposed (then the padding cut off); dW is `weight_gradient(patches, dy)`."""
    flat, kernel, spatial = residuals
    kernel_shape, channels, features = kernel.shape[:-2], kernel.shape[-2], kernel.shape[-1]
    outs = dy.shape[1:-1]
    flat_dy = dy.reshape((-1, features))
    d_kernel = weight_gradient(flat, flat_dy).reshape(kernel.shape)
    d_bias = flat_dy.sum(axis=0)
    pads = [_padding(*axis, padding) for axis in zip(spatial, kernel_shape, strides)]
    padded = [n + left + right for n, (left, right) in zip(spatial, pads)]
    # dy[o] lands at position K - 1 + o * stride of each axis: [B, *(S_pad + K - 1), C_out]
    spread = jax.lax.pad(
        dy,
        jnp.zeros((), dy.dtype),
        (
            (0, 0, 0),
            *(
                (k - 1, n - ((out - 1) * stride + 1), stride - 1)
                for k, n, out, stride in zip(kernel_shape, padded, outs, strides)
            ),
            (0, 0, 0),
        ),
    )
    windows = patches(spread, kernel_shape, (1,) * len(kernel_shape), "valid")
    flipped = kernel[tuple(slice(None, None, -1) for _ in kernel_shape)]
    flipped = jnp.swapaxes(flipped, -2, -1).reshape((-1, channels))
    dx_padded = (windows.reshape((-1, flipped.shape[0])) @ flipped).reshape(
        (dy.shape[0], *padded, channels)
    )
    crop = tuple(slice(left, left + n) for n, (left, _) in zip(spatial, pads))
    return dx_padded[(slice(None), *crop)], d_kernel, d_bias


conv_im2col.defvjp(_im2col_fwd, _im2col_bwd)


def conv_lax(
    x: jax.Array, kernel: jax.Array, bias: jax.Array, strides: tuple[int, ...], padding: str
) -> jax.Array:
    """x [B, *S, C_in] convolved with kernel [*K, C_in, C_out] by `lax.conv_general_dilated`:
    [B, *S_out, C_out]."""
    kernel_shape = kernel.shape[:-2]
    axes = "DHW"[-len(kernel_shape) :]
    y = jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=strides,
        padding=[_padding(*axis, padding) for axis in zip(x.shape[1:-1], kernel_shape, strides)],
        dimension_numbers=(f"N{axes}C", f"{axes}IO", f"N{axes}C"),
    )
    return y + bias


CONV_IMPLS: dict[str, ConvFn] = {"im2col": conv_im2col, "lax": conv_lax}
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


class Conv(nn.Module):
    """A convolution of x [B, *S, C_in] over its one or two spatial axes: [B, *S_out, features].
    Float32 parameters `kernel` [*kernel_size, C_in, features] and `bias` [features], as
    `flax.linen.Conv`'s, cast to `dtype` for the computation; `strides` () is 1 on every axis."""

    features: int
    kernel_size: tuple[int, ...]
    strides: tuple[int, ...] = ()
    padding: str = "same"
    impl: str = "auto"
    use_bias: bool = True
    kernel_init: Any = nn.initializers.lecun_normal()
    bias_init: Any = nn.initializers.zeros
    dtype: Any = jnp.float32  # of the computation; the parameters are float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        shape = (*self.kernel_size, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        bias = (
            self.param("bias", self.bias_init, (self.features,), jnp.float32)
            if self.use_bias
            else jnp.zeros((self.features,), jnp.float32)
        )
        conv = CONV_IMPLS[resolve_impl(self.impl)]
        x, kernel, bias = (cast(a, self.dtype) for a in (x, kernel, bias))
        return conv(x, kernel, bias, self.strides or (1,) * len(self.kernel_size), self.padding)


def pool(x: jax.Array, kind: str, window: tuple[int, ...]) -> jax.Array:
    """Non-overlapping pooling of x [B, *S, C] over windows of `window` positions per spatial
    axis (a remainder is dropped): [B, *(S // window), C]. kind is 'none' (x unchanged), 'max'
    or 'avg'."""
    if kind == "none":
        return x
    outs = [n // w for n, w in zip(x.shape[1:-1], window, strict=True)]
    x = x[(slice(None), *(slice(0, out * w) for out, w in zip(outs, window)), slice(None))]
    split = [size for out, w in zip(outs, window) for size in (out, w)]
    windows = x.reshape((x.shape[0], *split, x.shape[-1]))
    axes = tuple(2 + 2 * i for i in range(len(window)))
    return lookup(POOLS, kind, "model.pool")(windows, axes)


POOLS: dict[str, Callable[[jax.Array, tuple[int, ...]], jax.Array] | None] = {
    "none": None,
    "max": lambda windows, axes: jnp.max(windows, axis=axes),
    "avg": lambda windows, axes: jnp.mean(windows, axis=axes),
}


def pooled_length(length: int, kind: str, size: int) -> int:
    """The positions `pool` leaves on an axis of `length` with windows of `size`."""
    return length if kind == "none" else length // size
