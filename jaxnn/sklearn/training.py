"""The members' training on the host side: scikit-learn's rules applied to every member.

Between two epochs the host reads each member's loss and validation score (what the epoch
program computed) and applies `BaseMultilayerPerceptron._fit_stochastic`'s rules to each member
on its own: a member stops when its training loss (or, with early stopping, its validation
score) has not improved by `tol` for more than `n_iter_no_change` epochs; sgd's `adaptive`
rate divides that member's learning rate by 5 instead until it is at most 1e-6, `invscaling`
sets it to `learning_rate_init / (t + 1) ** power_t`; early stopping keeps the weights of the
member's best validation score. `Members` is what a fit leaves for the next one (warm_start)
and for `partial_fit`: the weights, the optimiser state and each member's bookkeeping.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxnn.sklearn import engine as programs
from jaxnn.sklearn.options import MLPOptions

MIN_ADAPTIVE_LR = 1e-6
ADAPTIVE_DIVISOR = 5.0


@dataclasses.dataclass
class Members:
    """The K members' state, kept on the estimator between fits.

    Attributes:
      params: stacked parameters [K, ...] (device).
      opt_state: the stochastic solvers' optimiser state [K, ...] or None.
      order_keys: uint32 [K, 2]: each member's key of its epochs' orders.
      initial_learning_rate: float [K]: each member's learning_rate_init.
      epochs: int [K]: epochs each member trained in all (the index of its next order).
      learning_rate: float [K]: sgd's current rate of each member.
      alpha, momentum: float [K].
      loss_curves, validation_scores: per member, one value per epoch.
      best_loss, best_score: float [K].
      no_improvement: int [K]: scikit-learn's `_no_improvement_count`.
      n_iter: int [K]: epochs (or L-BFGS iterations) of the last fit.
      samples_seen: int [K]: scikit-learn's `t_`.
      best_params: the weights of each member's best validation score (early stopping).
      converged: bool [K] (L-BFGS).
    """

    params: Any
    opt_state: Any
    order_keys: jax.Array
    initial_learning_rate: np.ndarray
    epochs: np.ndarray
    learning_rate: np.ndarray
    alpha: np.ndarray
    momentum: np.ndarray
    loss_curves: list[list[float]]
    validation_scores: list[list[float]]
    best_loss: np.ndarray
    best_score: np.ndarray
    no_improvement: np.ndarray
    n_iter: np.ndarray
    samples_seen: np.ndarray
    best_params: Any = None
    converged: Any = None

    @classmethod
    def fresh(cls, params: Any, order_keys: jax.Array, values: dict[str, np.ndarray]) -> Members:
        num = len(values["alpha"])
        return cls(
            params=params,
            opt_state=None,
            order_keys=order_keys,
            initial_learning_rate=values["learning_rate"].astype(np.float64),
            epochs=np.zeros(num, np.int64),
            learning_rate=values["learning_rate"].astype(np.float64),
            alpha=values["alpha"].astype(np.float64),
            momentum=values["momentum"].astype(np.float64),
            loss_curves=[[] for _ in range(num)],
            validation_scores=[[] for _ in range(num)],
            best_loss=np.full(num, np.inf),
            best_score=np.full(num, -np.inf),
            no_improvement=np.zeros(num, np.int64),
            n_iter=np.zeros(num, np.int64),
            samples_seen=np.zeros(num, np.int64),
            best_params=params,
        )

    @property
    def size(self) -> int:
        return len(self.alpha)


def _f32(values: np.ndarray) -> jax.Array:
    # Cast on the host: a cast of a device array would compile a program of its own.
    return jax.device_put(np.asarray(values, np.float32))


def train_stochastic(
    engine: programs.Engine,
    members: Members,
    data: tuple[jax.Array, ...],
    options: MLPOptions,
    *,
    incremental: bool,
    has_validation: bool,
) -> None:
    """Trains the members (in place) for at most `max_iter` epochs, or one (`incremental`)."""
    epoch = programs.epoch_fn(engine)
    num = members.size
    num_train = int(data[0].shape[0])
    if members.opt_state is None or not incremental:
        # A fit starts a fresh optimiser, as scikit-learn's (also under warm_start).
        members.opt_state = programs.optimizer_init_fn(engine)(
            members.params, _f32(members.momentum)
        )
        members.learning_rate = members.initial_learning_rate.copy()
    members.n_iter = np.zeros(num, np.int64)
    sgd = options.solver == "sgd"
    done = np.zeros(num, bool)
    for _ in range(1 if incremental else options.max_iter):
        active = ~done
        params, opt_state, loss, scores = epoch(
            members.params,
            members.opt_state,
            members.order_keys,
            jax.device_put(members.epochs.astype(np.int32)),
            _f32(members.learning_rate),
            _f32(members.alpha),
            _f32(members.momentum),
            jax.device_put(active),
            data,
        )
        members.params, members.opt_state = params, opt_state
        loss, scores = (np.asarray(v, np.float64) for v in jax.device_get((loss, scores)))
        members.n_iter += active
        members.epochs += active
        members.samples_seen += active * num_train
        improved = np.zeros(num, bool)
        for i in np.flatnonzero(active):
            members.loss_curves[i].append(float(loss[i]))
            if has_validation:
                members.validation_scores[i].append(float(scores[i]))
            if options.early_stopping:
                # Each rule compares with the best before this epoch, as scikit-learn does.
                worse = scores[i] < members.best_score[i] + options.tol
                improved[i] = scores[i] > members.best_score[i]
                members.best_score[i] = max(members.best_score[i], scores[i])
            else:
                worse = loss[i] > members.best_loss[i] - options.tol
                members.best_loss[i] = min(members.best_loss[i], loss[i])
            members.no_improvement[i] = members.no_improvement[i] + 1 if worse else 0
        if options.verbose:
            shown = int(np.flatnonzero(active)[np.argmin(loss[active])])
            print(f"Iteration {members.n_iter[shown]}, loss = {loss[shown]:.8f}")
            if options.early_stopping:
                print(f"Validation score: {scores[shown]:f}")
        if sgd and options.learning_rate == "invscaling":
            for i in np.flatnonzero(active):
                # Python's pow on the int, as scikit-learn's iteration_ends: the same float.
                seen = int(members.samples_seen[i])
                start = float(members.initial_learning_rate[i])
                members.learning_rate[i] = start / pow(seen + 1, options.power_t)
        stop = active & ~np.isfinite(loss)
        for i in np.flatnonzero(active & (members.no_improvement > options.n_iter_no_change)):
            adaptive = sgd and options.learning_rate == "adaptive"
            if adaptive and members.learning_rate[i] > MIN_ADAPTIVE_LR:
                members.learning_rate[i] /= ADAPTIVE_DIVISOR
                members.no_improvement[i] = 0
            else:
                stop[i] = True
        if options.early_stopping and improved.any():
            members.best_params = programs.keep_where(
                jax.device_put(improved), members.params, members.best_params
            )
        done |= stop
        if done.all():
            break
    if not options.early_stopping:
        members.best_params = members.params


def train_lbfgs(
    engine: programs.Engine, members: Members, data: tuple[jax.Array, ...], options: MLPOptions
) -> None:
    """Runs every member's L-BFGS (in place) from its current weights."""
    x, y, w = data[:3]
    params, loss, n_iter, converged = programs.lbfgs_fn(engine)(
        members.params,
        _f32(members.alpha),
        x,
        y,
        w,
        np.int32(options.max_iter),
        np.int32(options.max_fun),
        np.float32(options.tol),
    )
    loss, n_iter, converged = (np.asarray(v) for v in jax.device_get((loss, n_iter, converged)))
    members.params = members.best_params = params
    members.n_iter = n_iter.astype(np.int64)
    members.converged = converged
    for i in range(members.size):
        members.loss_curves[i].append(float(loss[i]))
    members.best_loss = np.minimum(members.best_loss, loss.astype(np.float64))
    if options.verbose:
        best = int(np.nanargmin(np.where(np.isfinite(loss), loss, np.inf)))
        print(f"L-BFGS: {members.n_iter[best]} iterations, loss = {loss[best]:.8f}")
