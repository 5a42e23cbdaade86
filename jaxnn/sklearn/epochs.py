"""The estimators' training: jaxnn's vmapped chunk, one epoch per chunk, with scikit-learn's
rules applied to every member between epochs.

Between two epochs the host reads each member's loss and validation score (what the chunk
already computed) and applies `MLPClassifier._fit_stochastic`'s rules to each member on its
own: a member stops when its training loss (or, with early stopping, its validation score) has
not improved by `tol` for more than `n_iter_no_change` epochs; `learning_rate='adaptive'`
divides that member's learning rate by 5 instead until it is at most 1e-6; early stopping keeps
the weights of the member's best validation score. The members' programs are compiled once per
`RunKey` (the checked options and the data's shapes, with the members' numeric values left
out) and kept, so refitting the same shapes (cross-validation folds, a grid search over alpha
or the learning rate, a refit) compiles nothing.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import validation
from jaxnn.core import ensemble, train
from jaxnn.data import Dataset
from jaxnn.nn.components import Components
from jaxnn.sklearn.options import MLPOptions, Shapes, to_config
from jaxnn.sklearn.solver import half_squared_error, make_solver

# scikit-learn's adaptive schedule stops once the learning rate is at most this.
MIN_ADAPTIVE_LR = 1e-6
ADAPTIVE_DIVISOR = 5.0
# Programs kept per process (one per options and data shapes).
CACHED_RUNS = 32


@dataclasses.dataclass(frozen=True)
class RunKey:
    """Everything the compiled programs of a fit depend on."""

    options: MLPOptions
    shapes: Shapes


@dataclasses.dataclass(frozen=True)
class Rules:
    """scikit-learn's host-side rules of one fit."""

    tol: float
    n_iter_no_change: int
    early_stopping: bool
    adaptive: bool  # learning_rate='adaptive' with solver='sgd'
    verbose: bool


def stub_dataset(shapes: Shapes) -> Dataset:
    """A dataset of zeros with the shapes of a fit: what building a program reads."""
    classification = shapes.task == "classification"

    def split(num: int) -> tuple[np.ndarray, np.ndarray]:
        x = np.zeros((num, *shapes.feature_shape), np.float32)
        if classification:
            return x, np.zeros((num,), np.int32)
        return x, np.zeros((num, shapes.num_outputs), np.float32)

    (x_train, y_train), (x_val, y_val) = split(shapes.num_train), split(shapes.num_val)
    return Dataset(
        name="sklearn",
        task=shapes.task,
        x_train=x_train,
        y_train=y_train,
        x_val=x_val,
        y_val=y_val,
        x_test=x_val,
        y_test=y_val,
        num_classes=shapes.num_outputs if classification else 0,
        num_outputs=shapes.num_outputs,
    )


class CompiledRun:
    """The trainer of one RunKey, with its epoch chunk compiled on first use."""

    def __init__(self, key: RunKey) -> None:
        options, shapes = key.options, key.shapes
        components = Components.of(
            model=None if isinstance(options.model, str) else options.model,
            loss=half_squared_error if shapes.task == "regression" else None,
            optimizer=make_solver(options, shapes),
        )
        config = to_config(options, shapes)
        spec = validation.validate(config, components).single_program("jaxnn.sklearn")
        self.trainer = ensemble.make_trainer(spec, stub_dataset(shapes), jax.random.PRNGKey(0))
        self._compiled: Any = None

    def chunk(self, state: train.TrainState, data: Any) -> Callable[..., Any]:
        """The epoch chunk, compiled ahead of time on its first call."""
        if self._compiled is None:
            self._compiled = self.trainer.chunk_fn.lower(
                state, data, jnp.asarray(0, jnp.int32), self.trainer.order_key
            ).compile()
        return self._compiled


@functools.lru_cache(maxsize=CACHED_RUNS)
def compiled_run(key: RunKey) -> CompiledRun:
    """The CompiledRun of `key`, built once per process."""
    return CompiledRun(key)


@dataclasses.dataclass
class Trained:
    """The end of a fit: every member's final weights and its scikit-learn bookkeeping.

    Attributes:
      state: the K members (every leaf [K, ...]); `best_params` holds the weights each member
        ends with (its best-validation ones under early stopping), `best_model_state` their
        model state.
      history: per epoch, metric -> float64 [K] (jaxnn's evaluation rows, `step` included).
      loss_curves: per member, its loss of every epoch it trained (with the L2 term).
      validation_scores: per member, its validation score of every epoch (None: no split).
      n_iter: int [K] epochs each member trained.
      best_loss: float [K] lowest training loss of each member.
      best_validation_score: float [K] best validation score (NaN: no validation split).
      final_validation_score: float [K] validation score of the weights kept.
      diverged: bool [K].
      train_s: seconds of training (the first fit of a RunKey also compiles, in compile_s).
    """

    state: train.TrainState
    history: list[dict[str, np.ndarray]]
    loss_curves: list[list[float]]
    validation_scores: list[list[float]] | None
    n_iter: np.ndarray
    best_loss: np.ndarray
    best_validation_score: np.ndarray
    final_validation_score: np.ndarray
    diverged: np.ndarray
    compile_s: float
    train_s: float


@jax.jit
def _squared_weights(params: Any) -> jax.Array:
    """Sum of squared weight-matrix entries of every member: float32 [M]."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    kernels = [leaf for path, leaf in leaves if getattr(path[-1], "key", None) == "kernel"]
    if not kernels:
        return jnp.zeros(jax.tree_util.tree_leaves(params)[0].shape[:1], jnp.float32)
    return sum(jnp.sum(k.reshape(k.shape[0], -1) ** 2, axis=1) for k in kernels)


@jax.jit
def _keep_where(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per member (mask bool [M]): the leaves of `new` where mask, else those of `old`."""

    def pick(a: jax.Array, b: jax.Array) -> jax.Array:
        return jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)

    return jax.tree_util.tree_map(pick, new, old)


def _host(values: Any) -> np.ndarray:
    return np.asarray(jax.device_get(values))


def train_members(
    run: CompiledRun,
    data: Dataset,
    key: jax.Array,
    rules: Rules,
    *,
    has_validation: bool,
    hparams: dict[str, float],
    initial_params: Any = None,
) -> Trained:
    """Trains every member for at most `max_iter` epochs under scikit-learn's rules.

    Args:
      run: the compiled run of the fit's RunKey.
      data: the fit's arrays (train, and the validation split or a one-example stand-in).
      key: the root key; member keys are `fold_in(key, seed_index)`.
      rules: the host-side rules.
      has_validation: whether `data.x_val` is a real validation split.
      hparams: hparam name -> the fit's value, for every member (a swept field keeps the
        sweep's values); the program was built with stand-ins (`options.program_options`).
      initial_params: stacked params [K, ...] to start from (warm_start), or None.
    """
    trainer = run.trainer
    placement = trainer.placement
    program = trainer.program
    num_members = len(trainer.members)
    state = ensemble.init_members(trainer, key)
    swept = {trainer.spec.numeric_fields()[field].hparam for field in trainer.spec.sweep.numeric}
    values = {name: v for name, v in hparams.items() if name in state.hparams and name not in swept}
    state = state.replace(
        hparams={
            **state.hparams,
            **{name: jnp.full_like(state.hparams[name], v) for name, v in values.items()},
        }
    )
    if initial_params is not None:
        state = state.replace(params=initial_params, best_params=initial_params)
    state = placement.place_state(state)
    placed_data = placement.place_data(data)
    started = time.perf_counter()
    chunk = run.chunk(state, placed_data)
    compile_s = time.perf_counter() - started

    metric = "val_accuracy" if program.task == "classification" else "val_r2"
    alpha = _host(state.hparams["weight_decay"])[:num_members]
    learning_rate = _host(state.hparams["learning_rate"]).astype(np.float32)
    spe, num_train = program.steps_per_epoch, program.num_train
    loss_curves: list[list[float]] = [[] for _ in range(num_members)]
    scores: list[list[float]] = [[] for _ in range(num_members)]
    best_loss = np.full(num_members, np.inf)
    best_score = np.full(num_members, -np.inf)
    no_improvement = np.zeros(num_members, np.int64)
    n_iter = np.zeros(num_members, np.int64)
    best_params, best_model_state = state.params, state.model_state
    history: list[dict[str, np.ndarray]] = []
    padding = np.zeros(placement.num_padding, bool)
    penalised = bool(np.any(alpha > 0))
    done = _host(state.stopped | state.diverged)[:num_members]
    started = time.perf_counter()
    for epoch in range(program.total_steps // spe):
        active = ~done
        state, metrics = chunk(state, placed_data, jnp.asarray(epoch * spe, jnp.int32), None)
        squares = _squared_weights(state.params) if penalised else None
        # One transfer per epoch: the metrics, the divergence flags and the weights' norms.
        metrics, diverged, squares = jax.device_get((metrics, state.diverged, squares))
        metrics = placement.real_metrics(
            {k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in metrics.items()}
        )
        history.append({"step": np.array([(epoch + 1) * spe]), **metrics})
        loss = metrics["batch_loss"]
        if penalised:
            loss = loss + 0.5 * alpha * spe * np.asarray(squares)[:num_members] / num_train
        trained = active & np.isfinite(loss)
        n_iter += trained
        improved = np.zeros(num_members, bool)
        for i in np.flatnonzero(trained):
            loss_curves[i].append(float(loss[i]))
            score = float(metrics[metric][i])
            # Each rule compares with the best before this epoch, as scikit-learn does.
            if rules.early_stopping:
                worse = score < best_score[i] + rules.tol
            else:
                worse = loss[i] > best_loss[i] - rules.tol
            no_improvement[i] = no_improvement[i] + 1 if worse else 0
            best_loss[i] = min(best_loss[i], loss[i])
            if has_validation:
                scores[i].append(score)
                improved[i] = score > best_score[i]
                best_score[i] = max(best_score[i], score)
        if rules.verbose and trained.any():
            print(f"Iteration {epoch + 1}, loss = {np.min(loss[trained]):.8f}", end="")
            print(f" (lowest of {int(trained.sum())} members)" if num_members > 1 else "")
        stop = active & ~np.isfinite(loss)
        rate_changed = False
        for i in np.flatnonzero(trained & (no_improvement > rules.n_iter_no_change)):
            if rules.adaptive and learning_rate[i] > MIN_ADAPTIVE_LR:
                learning_rate[i] /= ADAPTIVE_DIVISOR
                no_improvement[i] = 0
                rate_changed = True
            else:
                stop[i] = True
        if rules.early_stopping and improved.any():
            best_params, best_model_state = _keep_where(
                np.concatenate([improved, padding]),
                (state.params, state.model_state),
                (best_params, best_model_state),
            )
        if stop.any() or rate_changed:
            state = _between_epochs(
                state, np.concatenate([stop, padding]), learning_rate, placement
            )
        done = done | stop | np.asarray(diverged)[:num_members]
        if done.all():
            break
    train_s = time.perf_counter() - started

    kept = best_params if rules.early_stopping else state.params
    kept_state = best_model_state if rules.early_stopping else state.model_state
    state = placement.result_state(state.replace(best_params=kept, best_model_state=kept_state))
    final_scores = np.asarray([s[-1] if s else np.nan for s in scores])
    return Trained(
        state=state,
        history=history,
        loss_curves=loss_curves,
        validation_scores=scores if has_validation else None,
        n_iter=n_iter,
        best_loss=best_loss,
        best_validation_score=best_score if has_validation else np.full(num_members, np.nan),
        final_validation_score=best_score if rules.early_stopping else final_scores,
        diverged=_host(state.diverged),
        compile_s=compile_s,
        train_s=train_s,
    )


def _between_epochs(
    state: train.TrainState, stop: np.ndarray, learning_rate: np.ndarray, placement: Any
) -> train.TrainState:
    """The state with members stopped and learning rates set, placed as it was."""
    hparams = {**state.hparams, "learning_rate": jnp.asarray(learning_rate, jnp.float32)}
    updated = state.replace(stopped=state.stopped | jnp.asarray(stop), hparams=hparams)
    if placement.mesh is None:
        return updated
    return jax.device_put(updated, placement.state_shardings(updated))
