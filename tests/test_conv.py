"""jaxnn.nn.conv: im2col and lax.conv give the same convolution in 1-D and 2-D (strides,
padding, vmap, gradients), which is numpy's and lax.conv_general_dilated's; im2col's own
backward pass against finite differences; pooling; the implementation picked per backend."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.errors import ConfigError
from jaxnn.nn import conv

CASES = [
    # (length, kernel, stride, padding)
    (40, 5, 1, "same"),
    (40, 5, 2, "same"),
    (40, 4, 3, "same"),
    (9, 9, 1, "same"),
    (40, 5, 1, "valid"),
    (13, 4, 3, "valid"),
    (7, 7, 2, "valid"),
]


def _inputs(length: int, kernel_size: int, *, members: int = 0, seed: int = 0):
    rng = np.random.default_rng(seed)
    lead = (members,) if members else ()
    x = rng.normal(size=(*lead, 3, length, 2)).astype(np.float32)
    kernel = rng.normal(size=(*lead, kernel_size, 2, 4)).astype(np.float32)
    bias = rng.normal(size=(*lead, 4)).astype(np.float32)
    return x, kernel, bias


@pytest.mark.parametrize(("length", "kernel_size", "stride", "padding"), CASES)
def test_im2col_and_lax_agree_with_lax_padding(length, kernel_size, stride, padding):
    x, kernel, bias = _inputs(length, kernel_size)
    im2col = conv.conv_im2col(x, kernel, bias, (stride,), padding)
    lax = conv.conv_lax(x, kernel, bias, (stride,), padding)
    reference = jax.lax.conv_general_dilated(
        x, kernel, (stride,), padding.upper(), dimension_numbers=("NWC", "WIO", "NWC")
    )
    out = conv.output_length(length, kernel_size, stride, padding)
    assert im2col.shape == lax.shape == (3, out, 4)
    np.testing.assert_allclose(im2col, lax, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(lax, reference + bias, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("length", "kernel_size", "stride", "padding"), CASES)
def test_im2col_and_lax_agree_under_vmap_in_values_and_gradients(
    length, kernel_size, stride, padding
):
    x, kernel, bias = _inputs(length, kernel_size, members=3, seed=1)

    def loss(impl):
        def member(x, kernel, bias):
            return jnp.sum(jnp.tanh(impl(x, kernel, bias, (stride,), padding)) ** 2)

        return jax.jit(jax.vmap(jax.value_and_grad(member, argnums=(0, 1, 2))))

    (v1, g1), (v2, g2) = (loss(impl)(x, kernel, bias) for impl in conv.CONV_IMPLS.values())
    np.testing.assert_allclose(v1, v2, rtol=1e-5)
    for a, b in zip(g1, g2, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", sorted(conv.CONV_IMPLS))
def test_one_channel_convolution_is_numpys(impl):
    rng = np.random.default_rng(2)
    signal = rng.normal(size=17).astype(np.float32)
    weights = rng.normal(size=5).astype(np.float32)
    x, kernel, bias = signal[None, :, None], weights[:, None, None], np.zeros(1, np.float32)
    run = conv.CONV_IMPLS[impl]
    # A convolution layer is a cross-correlation: numpy's convolution with the kernel reversed.
    valid = np.convolve(signal, weights[::-1], mode="valid")
    same = np.convolve(signal, weights[::-1], mode="same")
    np.testing.assert_allclose(run(x, kernel, bias, (1,), "valid")[0, :, 0], valid, rtol=1e-5)
    same_out = run(x, kernel, bias, (1,), "same")[0, :, 0]
    np.testing.assert_allclose(same_out, same, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run(x, kernel, bias, (3,), "valid")[0, :, 0], valid[::3], rtol=1e-5)


def test_a_layer_runs_with_the_other_implementations_parameters():
    x = jax.random.normal(jax.random.key(1), (2, 12, 3))
    layers = {impl: conv.Conv(4, (3,), (2,), impl=impl) for impl in conv.CONV_IMPLS}
    params = layers["im2col"].init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, layers["lax"].init(jax.random.key(0), x)
    )
    assert jax.tree.map(jnp.shape, params) == {"params": {"kernel": (3, 3, 4), "bias": (4,)}}
    out = {impl: layer.apply(params, x) for impl, layer in layers.items()}
    assert out["im2col"].shape == (2, 6, 4)
    np.testing.assert_allclose(out["im2col"], out["lax"], rtol=1e-5, atol=1e-5)


def test_auto_picks_im2col_on_cpu_and_lax_elsewhere():
    assert conv.resolve_impl("auto", "cpu") == "im2col"
    assert conv.resolve_impl("auto", "gpu") == "lax"
    assert conv.resolve_impl("lax", "cpu") == "lax"
    with pytest.raises(ConfigError, match=r"model\.conv_impl: unknown 'cudnn'"):
        conv.resolve_impl("cudnn")


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_pooling_takes_non_overlapping_windows(kind):
    x = np.arange(2 * 7 * 3, dtype=np.float32).reshape(2, 7, 3) ** 1.5
    pooled = conv.pool(jnp.asarray(x), kind, (3,))
    windows = x[:, :6].reshape(2, 2, 3, 3)
    expected = windows.max(axis=2) if kind == "max" else windows.mean(axis=2)
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
    assert conv.pooled_length(7, kind, 3) == 2 and conv.pooled_length(7, "none", 3) == 7


# --- 2-D (images): [B, H, W, C] with kernels [KH, KW, C_in, C_out], flax.linen.Conv's layout --

CASES_2D = [
    # (height, width, kernel, strides, padding)
    ((8, 8), (3, 3), (1, 1), "same"),
    ((9, 7), (3, 2), (2, 1), "same"),
    ((8, 8), (1, 1), (2, 2), "same"),
    ((10, 9), (4, 3), (3, 2), "valid"),
]


def _images(spatial, kernel_shape, *, members: int = 0, seed: int = 0, dtype=np.float32):
    rng = np.random.default_rng(seed)
    lead = (members,) if members else ()
    x = rng.normal(size=(*lead, 2, *spatial, 3)).astype(dtype)
    kernel = rng.normal(size=(*lead, *kernel_shape, 3, 4)).astype(dtype)
    bias = rng.normal(size=(*lead, 4)).astype(dtype)
    return x, kernel, bias


@pytest.mark.parametrize(("spatial", "kernel_shape", "strides", "padding"), CASES_2D)
def test_2d_im2col_and_lax_are_lax_conv_general_dilated(spatial, kernel_shape, strides, padding):
    x, kernel, bias = _images(spatial, kernel_shape)
    reference = (
        jax.lax.conv_general_dilated(
            x, kernel, strides, padding.upper(), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        + bias
    )
    for impl in conv.CONV_IMPLS.values():
        np.testing.assert_allclose(impl(x, kernel, bias, strides, padding), reference,
                                   rtol=1e-4, atol=1e-4)  # fmt: skip


@pytest.mark.parametrize(("spatial", "kernel_shape", "strides", "padding"), CASES_2D)
def test_2d_im2col_gradients_match_finite_differences(spatial, kernel_shape, strides, padding):
    with jax.enable_x64(True):
        x, kernel, bias = (jnp.asarray(a) for a in _images(spatial, kernel_shape, seed=3,
                                                               dtype=np.float64))  # fmt: skip
        weights = jnp.asarray(np.random.default_rng(4).normal(size=(64,)))

        def loss(x, kernel, bias):
            y = conv.conv_im2col(x, kernel, bias, strides, padding)
            return jnp.sum(jnp.tanh(y).ravel() * jnp.resize(weights, y.size))

        analytic = jax.grad(loss, argnums=(0, 1, 2))(x, kernel, bias)
        eps = 1e-6
        for index, (value, grad) in enumerate(zip((x, kernel, bias), analytic, strict=True)):
            flat = value.ravel()
            for i in np.random.default_rng(index).choice(
                flat.size, size=min(12, flat.size), replace=False
            ):
                step = jnp.zeros_like(flat).at[i].set(eps).reshape(value.shape)
                args = [x, kernel, bias]
                args[index] = value + step
                up = loss(*args)
                args[index] = value - step
                numeric = (up - loss(*args)) / (2 * eps)
                np.testing.assert_allclose(grad.ravel()[i], numeric, rtol=1e-5, atol=1e-8)


def test_2d_implementations_agree_under_vmap_in_gradients():
    x, kernel, bias = _images((8, 7), (3, 3), members=3, seed=5)

    def grads(impl):
        def member(x, kernel, bias):
            return jnp.sum(jnp.tanh(impl(x, kernel, bias, (2, 1), "same")) ** 2)

        return jax.jit(jax.vmap(jax.grad(member, argnums=(0, 1, 2))))(x, kernel, bias)

    for a, b in zip(*(grads(impl) for impl in conv.CONV_IMPLS.values()), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_a_2d_layer_has_flax_convs_parameters_and_outputs():
    import flax.linen as nn

    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 3))
    ours = conv.Conv(5, (3, 3), (2, 2))
    params = ours.init(jax.random.key(0), x)
    theirs = nn.Conv(5, (3, 3), strides=(2, 2), padding="SAME")
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(
        jnp.shape, theirs.init(jax.random.key(0), x)
    )
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", ["max", "avg"])
def test_2d_pooling_takes_non_overlapping_windows(kind):
    x = np.arange(2 * 5 * 7 * 3, dtype=np.float32).reshape(2, 5, 7, 3) ** 1.5
    pooled = conv.pool(jnp.asarray(x), kind, (2, 3))
    windows = x[:, :4, :6].reshape(2, 2, 2, 2, 3, 3)
    expected = windows.max(axis=(2, 4)) if kind == "max" else windows.mean(axis=(2, 4))
    np.testing.assert_allclose(pooled, expected, rtol=1e-6)
