"""The hashed dropout keep-mask: rate, independence, determinism, vmap."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn.nn import dropout_mask

SHAPE = (200, 500)


def _mask(seed: int, keep_prob=0.5, shape=SHAPE) -> np.ndarray:
    return np.asarray(dropout_mask.keep_mask(jax.random.key(seed), keep_prob, shape))


@pytest.mark.parametrize("keep_prob", [0.1, 0.5, 0.8, 0.97])
def test_keeps_the_asked_fraction(keep_prob):
    mask = _mask(0, keep_prob)
    assert mask.dtype == bool and mask.shape == SHAPE
    # 100,000 draws: the standard error is at most 0.0016.
    assert mask.mean() == pytest.approx(keep_prob, abs=0.006)


def test_edge_probabilities():
    assert _mask(1, 1.0).all()
    assert not _mask(1, 0.0).any()


def test_same_key_same_mask_and_different_keys_independent_masks():
    np.testing.assert_array_equal(_mask(2), _mask(2))
    first, second = _mask(2).astype(float), _mask(3).astype(float)
    # Independent fair coins agree half the time; also for every small shift of one mask
    # (a seed added to the index alone would make masks shifted copies of each other).
    flat_a, flat_b = first.ravel(), second.ravel()
    for shift in range(0, 64):
        agreement = np.mean(flat_a[shift:] == flat_b[: flat_b.size - shift])
        assert agreement == pytest.approx(0.5, abs=0.01)


def test_neighbouring_units_are_uncorrelated():
    mask = _mask(4).astype(float)
    for axis in (0, 1):
        a = np.take(mask, np.arange(mask.shape[axis] - 1), axis=axis)
        b = np.take(mask, np.arange(1, mask.shape[axis]), axis=axis)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] == pytest.approx(0.0, abs=0.02)


def test_vmapped_keys_and_traced_probability_match_one_at_a_time():
    keys = jax.random.split(jax.random.key(5), 3)
    probs = jnp.array([0.3, 0.5, 0.9])
    stacked = jax.jit(jax.vmap(lambda k, p: dropout_mask.keep_mask(k, p, (64, 32))))(keys, probs)
    for i in range(3):
        alone = dropout_mask.keep_mask(keys[i], float(probs[i]), (64, 32))
        np.testing.assert_array_equal(stacked[i], alone)
    assert not np.array_equal(stacked[0], stacked[1])
