"""Restart statistics: how the results of K random starts are spread, and how many starts pay."""

from __future__ import annotations

import math

import numpy as np


def expected_best_of_k(values: np.ndarray, k: int) -> float:
    """Expected minimum of k results drawn without replacement from the K observed ones.

    The standard order-statistics estimator: with the results sorted ascending,
    v_(1) <= ... <= v_(K), the i-th smallest is the best of a random k-subset with probability
    C(K - i, k - 1) / C(K, k), so E[best of k] = sum_i v_(i) C(K - i, k - 1) / C(K, k).
    `values`: float [K] finite results (lower is better); 1 <= k <= K.
    """
    ordered = np.sort(np.asarray(values, np.float64))
    num = len(ordered)
    if not 1 <= k <= num:
        raise ValueError(f"k must be in [1, {num}], got {k}")
    total = math.comb(num, k)
    weights = np.array([math.comb(num - i, k - 1) / total for i in range(1, num + 1)])
    return float(np.dot(weights, ordered))


def restart_stats(val_losses: np.ndarray, *, tolerance: float) -> dict[str, object]:
    """Quantiles, the fraction of starts near the best (loss <= best + |best| * tolerance) and
    the expected best-of-k curve of val_losses, float [K], of the non-diverged members."""
    losses = np.asarray(val_losses, np.float64)
    losses = losses[np.isfinite(losses)]
    if losses.size == 0:
        return {"num_finite": 0}
    best = float(losses.min())
    quantiles = {
        f"q{int(q * 100):02d}": float(np.quantile(losses, q))
        for q in (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)
    }
    return {
        "num_finite": int(losses.size),
        "val_loss_quantiles": quantiles,
        "val_loss_mean": float(losses.mean()),
        "val_loss_std": float(losses.std()),
        "tolerance": tolerance,
        "fraction_within_tolerance": float(np.mean(losses <= best + abs(best) * tolerance)),
        "expected_best_of_k": [expected_best_of_k(losses, k) for k in range(1, losses.size + 1)],
    }
