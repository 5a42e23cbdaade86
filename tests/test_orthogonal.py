"""jaxnn.nn.orthogonal: the Householder orthogonal matrices equal LAPACK's for the same key."""

from __future__ import annotations

import flax.linen as nn
import jax
import numpy as np
import pytest

from jaxnn.nn.orthogonal import orthogonal, orthogonal_init


@pytest.mark.parametrize("shape", [(1, 1), (6, 6), (64, 64), (9, 4), (4, 9), (2, 3, 5)])
@pytest.mark.parametrize("seed", [0, 1])
def test_orthogonal_init_is_flaxs_orthogonal_without_lapack(shape, seed):
    key = jax.random.PRNGKey(seed)
    ours = orthogonal_init(0.7)(key, shape)
    np.testing.assert_allclose(ours, nn.initializers.orthogonal(0.7)(key, shape), atol=5e-6)
    text = jax.jit(lambda k: orthogonal_init(0.7)(k, shape)).lower(key).compile().as_text()
    assert "custom-call" not in text


def test_orthogonal_has_orthonormal_columns_or_rows_under_vmap():
    keys = jax.random.split(jax.random.PRNGKey(2), 3)
    tall = np.asarray(jax.vmap(lambda k: orthogonal(k, 7, 3))(keys))
    wide = np.asarray(jax.vmap(lambda k: orthogonal(k, 3, 7))(keys))
    for q in tall:
        np.testing.assert_allclose(q.T @ q, np.eye(3), atol=1e-6)
    for q in wide:
        np.testing.assert_allclose(q @ q.T, np.eye(3), atol=1e-6)
    assert not np.allclose(tall[0], tall[1])


def test_orthogonal_init_refuses_a_vector():
    with pytest.raises(ValueError, match="at least 2 axes"):
        orthogonal_init()(jax.random.PRNGKey(0), (5,))
