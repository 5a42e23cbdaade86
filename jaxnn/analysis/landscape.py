"""Loss landscapes: the loss on the line between two solutions (`interpolate`, `barrier_height`,
Frankle et al., 2020), 2-D slices through three solutions (`plane_through`) or around one along
filter-normalised random directions (`random_plane`, Li et al., 2018). Each evaluates with one
member's apply function and hyperparameters (no dropout): the weights compared must come from one
structural variant (`jaxnn.core.variants.landscape_members`).
"""

from __future__ import annotations

import dataclasses
import functools
import operator
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.core import ensemble, train
from jaxnn.core.program import Params
from jaxnn.data import device

Evaluator = Callable[[Params], dict[str, jax.Array]]


def evaluator(result: ensemble.EnsembleResult, member: int, split: device.SplitData) -> Evaluator:
    """A pure function params -> {'loss', 'accuracy' or 'r2'} on a whole split (e.g.
    `device.device_data(data).val`), with `member`'s apply function and hyperparameters."""
    state = ensemble.member_state(result.state, member)

    def evaluate(params: Params) -> dict[str, jax.Array]:
        metrics = train.evaluate(state, params, split, result.program)
        return {k: v for k, v in metrics.items() if k != "rmse"}

    return evaluate


def member_params(result: ensemble.EnsembleResult, member: int) -> Params:
    """One member's best-validation weights."""
    return jax.tree_util.tree_map(lambda leaf: leaf[member], result.state.best_params)


def _combine(base: Params, directions: list[Params], coefficients: jax.Array) -> Params:
    def leaf(b: jax.Array, *ds: jax.Array) -> jax.Array:
        return b + sum(c * d for c, d in zip(coefficients, ds, strict=True))

    return jax.tree_util.tree_map(leaf, base, *directions)


def _sub(a: Params, b: Params) -> Params:
    return jax.tree_util.tree_map(jnp.subtract, a, b)


def _dot(a: Params, b: Params) -> jax.Array:
    products = [jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)]
    return functools.reduce(operator.add, products)


def _evaluate_points(
    evaluate: Evaluator, base: Params, directions: list[Params], points: jax.Array
) -> dict[str, np.ndarray]:
    """Metrics at base + sum_j points[p, j] * directions[j] for every point p: metric -> [P]."""

    @jax.jit
    def at_all(points: jax.Array) -> dict[str, jax.Array]:
        return jax.lax.map(lambda c: evaluate(_combine(base, directions, c)), points)

    return {k: np.asarray(v, np.float64) for k, v in at_all(points).items()}


def interpolate(
    evaluate: Evaluator, params_a: Params, params_b: Params, alphas: np.ndarray
) -> dict[str, np.ndarray]:
    """Metrics along (1 - alpha) * a + alpha * b, alphas float [A] (outside [0, 1] extrapolates):
    {'alpha': [A], 'loss': [A], 'accuracy' or 'r2': [A]}."""
    alphas = np.asarray(alphas, np.float32)
    # a + alpha (b - a) is exact at alpha = 0; at alpha = 1 use b itself so both ends reproduce
    # the members' own metrics bit for bit.
    values = _evaluate_points(
        evaluate, params_a, [_sub(params_b, params_a)], jnp.asarray(alphas)[:, None]
    )
    ends = np.flatnonzero(alphas == 1.0)
    if ends.size:
        at_b = {k: float(v) for k, v in jax.jit(evaluate)(params_b).items()}
        for name, value in at_b.items():
            values[name][ends] = value
    return {"alpha": alphas.astype(np.float64), **values}


def barrier_height(alphas: np.ndarray, losses_on_line: np.ndarray) -> float:
    """max_alpha [L(alpha) - ((1 - alpha) L(0) + alpha L(1))], with alphas[0] = 0, alphas[-1] = 1:
    about 0 when the two solutions are linearly connected."""
    alphas = np.asarray(alphas, np.float64)
    values = np.asarray(losses_on_line, np.float64)
    if alphas[0] != 0.0 or alphas[-1] != 1.0:
        raise ValueError("barrier_height needs alphas from 0 to 1")
    chord = (1 - alphas) * values[0] + alphas * values[-1]
    return float(np.max(values - chord))


@dataclasses.dataclass
class Plane:
    """Metrics on a grid of a 2-D slice: x [X], y [Y], metric -> [Y, X], and marked points."""

    x: np.ndarray
    y: np.ndarray
    metrics: dict[str, np.ndarray]
    points: dict[str, tuple[float, float]]  # label -> (x, y) of the solutions in the plane


def _grid(
    base: Params, directions: list[Params], evaluate: Evaluator, xs: np.ndarray, ys: np.ndarray
) -> dict[str, np.ndarray]:
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2).astype(np.float32)
    values = _evaluate_points(evaluate, base, directions, jnp.asarray(grid))
    return {k: v.reshape(len(ys), len(xs)) for k, v in values.items()}


def plane_through(
    evaluate: Evaluator,
    params: tuple[Params, Params, Params],
    *,
    resolution: int = 21,
    margin: float = 0.5,
) -> Plane:
    """The 2-D slice through solutions (a, b, c): a at (0, 0), b at (1, 0), c at (c_x, 1) in the
    orthogonalised basis u = b - a, v = (c - a) minus its projection on u; `resolution` grid
    points per axis, reaching `margin` (plane units) beyond the three solutions."""
    a, b, c = params
    u = _sub(b, a)
    w = _sub(c, a)
    projection = _dot(w, u) / _dot(u, u)
    v = jax.tree_util.tree_map(lambda wl, ul: wl - projection * ul, w, u)
    c_x = float(projection)
    xs = np.linspace(min(0.0, c_x) - margin, max(1.0, c_x) + margin, resolution)
    ys = np.linspace(-margin, 1.0 + margin, resolution)
    metrics = _grid(a, [u, v], evaluate, xs, ys)
    return Plane(xs, ys, metrics, {"a": (0.0, 0.0), "b": (1.0, 0.0), "c": (c_x, 1.0)})


def filter_normalized_direction(key: jax.Array, params: Params) -> Params:
    """A random direction: Gaussian kernel columns [in, out] rescaled to the norms of the
    weights' columns (per output unit); biases, scalars and PReLU slopes 0."""
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for leaf_key, leaf in zip(keys, leaves, strict=True):
        if leaf.ndim < 2:
            out.append(jnp.zeros_like(leaf))
            continue
        direction = jax.random.normal(leaf_key, leaf.shape, leaf.dtype)
        scale = jnp.linalg.norm(leaf, axis=0, keepdims=True) / (
            jnp.linalg.norm(direction, axis=0, keepdims=True) + 1e-10
        )
        out.append(direction * scale)
    return jax.tree.unflatten(treedef, out)


def random_plane(
    evaluate: Evaluator, params: Params, key: jax.Array, *, resolution: int = 21
) -> Plane:
    """The 2-D slice around `params` along two filter-normalised random directions: `resolution`
    grid points per axis, each spanning [-1, 1]."""
    directions = [filter_normalized_direction(k, params) for k in jax.random.split(key)]
    xs = np.linspace(-1.0, 1.0, resolution)
    metrics = _grid(params, directions, evaluate, xs, xs)
    return Plane(xs, xs, metrics, {"solution": (0.0, 0.0)})
