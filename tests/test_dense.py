"""The Dense layer with the CPU-friendly weight gradient equals flax.linen.Dense."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.nn.dense import Dense, dense


def _inputs():
    x = jax.random.normal(jax.random.key(0), (32, 7))
    dy = jax.random.normal(jax.random.key(1), (32, 5))
    return x, dy


def test_same_parameters_and_outputs_as_flax_dense():
    x, _ = _inputs()
    init = nn.initializers.he_normal()
    ours, theirs = Dense(5, kernel_init=init), nn.Dense(5, kernel_init=init)
    params = ours.init(jax.random.key(2), x)
    np.testing.assert_array_equal(
        params["params"]["kernel"], theirs.init(jax.random.key(2), x)["params"]["kernel"]
    )
    np.testing.assert_allclose(ours.apply(params, x), theirs.apply(params, x), rtol=1e-6)


def test_gradients_equal_the_plain_formula_also_under_vmap():
    x, dy = _inputs()
    kernel = jax.random.normal(jax.random.key(3), (7, 5))
    bias = jax.random.normal(jax.random.key(4), (5,))

    def plain(x, kernel, bias, dy):
        return jnp.sum(jnp.tanh(x @ kernel + bias) * dy)

    def ours(x, kernel, bias, dy):
        return jnp.sum(jnp.tanh(dense(x, kernel, bias)) * dy)

    # Through a tanh every gradient depends on all of x, kernel and bias.
    expected = jax.grad(plain, argnums=(0, 1, 2))(x, kernel, bias, dy)
    got = jax.grad(ours, argnums=(0, 1, 2))(x, kernel, bias, dy)
    for a, b in zip(got, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # Stacked members, as in an ensemble, that differ in every argument: each member's
    # gradients are its own plain ones (a member mixed up with another fails).
    members = 3
    keys = jax.random.split(jax.random.key(5), 4)
    xs = jax.random.normal(keys[0], (members, 32, 7))
    kernels = jax.random.normal(keys[1], (members, 7, 5))
    biases = jax.random.normal(keys[2], (members, 5))
    dys = jax.random.normal(keys[3], (members, 32, 5))
    stacked = jax.jit(jax.vmap(jax.grad(ours, argnums=(0, 1, 2))))(xs, kernels, biases, dys)
    for i in range(members):
        alone = jax.grad(plain, argnums=(0, 1, 2))(xs[i], kernels[i], biases[i], dys[i])
        for a, b in zip(stacked, alone, strict=True):
            np.testing.assert_allclose(a[i], b, rtol=1e-4, atol=1e-4)
