"""What jaxnn.sklearn's estimators share: fitting, warm starts, fitted attributes, prediction.

A fit trains K members (`n_restarts` times the values of `sweep`) in one vmapped program
(`jaxnn.sklearn.engine`) under scikit-learn's rules (`jaxnn.sklearn.training`) and keeps one:
with a validation set (early stopping, `X_val=`, `select_by='validation'`) the best validation
score, otherwise the lowest training loss (every member then trains on every sample). The
fitted attributes describe that member. Training runs in float32 (float64 under JAX's x64 mode
for a float64 input); `coefs_`, `intercepts_` and the outputs have the input's dtype.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import warnings
from typing import Any, Self

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state, column_or_1d
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from jaxnn.core import compile_cache
from jaxnn.nn import precision
from jaxnn.sklearn import engine as programs
from jaxnn.sklearn import training
from jaxnn.sklearn.network import SklearnMLP
from jaxnn.sklearn.options import (
    STOCHASTIC_SOLVERS,
    MLPOptions,
    ParameterError,
    member_values,
    options_from,
    resolve_batch_size,
    seed_indices,
)

# How every X is checked (scikit-learn's validate_data).
CHECK_X: dict[str, Any] = {"accept_sparse": ["csr", "csc"], "dtype": (np.float64, np.float32)}
MAX_SEED = np.iinfo(np.int32).max
# Random starts by default, so that changing a script's import line is enough to get them.
DEFAULT_RESTARTS = 8
MIN_PREDICT_ROWS = 32
# A sparse X is densified in blocks of rows, and refused when its dense form is larger.
MAX_DENSE_BYTES = 2 << 30
DENSIFY_ROWS = 4096
# A part of the data: (x [N, F], targets [N, O], sample weights [N]).
Part = tuple[np.ndarray, np.ndarray, np.ndarray]


def compute_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype training runs in for inputs of `dtype`: float64 only under JAX's x64 mode."""
    if dtype == np.float64 and precision.x64_enabled():
        return np.dtype(np.float64)
    return np.dtype(np.float32)


def dense(x: Any, dtype: np.dtype) -> np.ndarray:
    """x as a dense array of `dtype`; a sparse matrix is densified a block of rows at a time.

    Raises:
      ParameterError: the dense form of a sparse x would exceed MAX_DENSE_BYTES.
    """
    if not sp.issparse(x):
        return np.asarray(x, dtype)
    size = x.shape[0] * x.shape[1] * np.dtype(dtype).itemsize
    if size > MAX_DENSE_BYTES:
        raise ParameterError(
            f"a sparse X of shape {x.shape} takes {size / 2**30:.1f} GiB dense, over "
            f"jaxnn.sklearn's bound of {MAX_DENSE_BYTES / 2**30:.0f} GiB: reduce its features "
            "first (e.g. sklearn.decomposition.TruncatedSVD)"
        )
    out = np.empty(x.shape, dtype)
    rows = sp.csr_matrix(x)
    for start in range(0, x.shape[0], DENSIFY_ROWS):
        out[start : start + DENSIFY_ROWS] = rows[start : start + DENSIFY_ROWS].toarray()
    return out


def _last(curves: list[list[float]]) -> np.ndarray:
    """float64 [K]: each member's last value of its curve, NaN for an empty one."""
    return np.asarray([c[-1] if c else np.nan for c in curves], np.float64)


@functools.cache
def _persistent_cache() -> None:
    """JAX's persistent compilation cache, turned on at the first fit of the process."""
    compile_cache.enable()


class BaseNetwork(BaseEstimator):
    """The training and prediction of every jaxnn.sklearn estimator (see the module docstring).

    Subclasses give the task (`_task`), the module (`_module`), the targets' encoding
    (`_targets`) and the output layer (`_output`).
    """

    _task = ""  # 'classification' | 'regression'
    _members: training.Members  # set by a fit

    # -- what subclasses define -------------------------------------------------------------

    def _options(self) -> MLPOptions:
        return options_from(self.get_params())

    def _module(self, options: MLPOptions, num_outputs: int) -> nn.Module:
        if isinstance(options.model, str):
            return SklearnMLP(options.hidden, options.activation, num_outputs)
        return options.model

    def _targets(self, y: Any, *, incremental: bool) -> Any:
        """y (checked by `_fit`) encoded as [n, n_outputs]."""
        raise NotImplementedError

    def _validation_targets(self, y: Any) -> Any:
        """y_val encoded as the fit's targets."""
        raise NotImplementedError

    def _output(self, options: MLPOptions) -> str:
        raise NotImplementedError

    # -- fitting ----------------------------------------------------------------------------

    def fit(
        self, X: Any, y: Any, sample_weight: Any = None, *, X_val: Any = None, y_val: Any = None
    ) -> Self:
        """Trains every member on X [n_samples, n_features] (dense or sparse) and y: labels
        [n_samples] or a multilabel indicator [n_samples, n_labels] (classifier), targets
        [n_samples] or [n_samples, n_targets] (regressor).

        sample_weight: [n_samples] weights of the samples in the loss and the validation score.
        X_val, y_val: a validation set to select members and stop early on, in place of the
        split of `validation_fraction` (as HistGradientBoostingClassifier.fit takes them).
        """
        return self._fit(X, y, sample_weight, x_val=X_val, y_val=y_val)

    def _fit(
        self,
        x: Any,
        y: Any,
        sample_weight: Any = None,
        *,
        incremental: bool = False,
        x_val: Any = None,
        y_val: Any = None,
    ) -> Self:
        options = self._options()
        _persistent_cache()
        if incremental and options.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        continuing = hasattr(self, "_members") and (incremental or options.warm_start)
        numeric = self._task == "regression"
        x, y = validate_data(
            self, x, y, multi_output=True, y_numeric=numeric, reset=not continuing, **CHECK_X
        )
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        dtype = compute_dtype(x.dtype)
        targets = np.asarray(self._targets(y, incremental=incremental), dtype)
        self._dtype = np.dtype(x.dtype)
        x = dense(x, dtype)
        weights = _check_sample_weight(sample_weight, x, dtype=dtype)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(MAX_SEED))
        train, val, has_validation = self._parts(
            (x, targets, weights), options, rng, x_val=x_val, y_val=y_val
        )
        engine = self._engine(options, targets.shape[1], len(train[0]))
        if continuing:
            placed = self._members.placed
        else:
            starts = seed_indices(options)
            placed = training.members_placement(engine, len(starts), *train[0].shape)
        data = tuple(placed.put_shared(a) for a in (*train, *val))
        if not continuing:
            # Member k's start depends on the seed and k alone.
            stochastic = options.solver in STOCHASTIC_SOLVERS
            params, order_keys = training.start_members(
                engine, placed, seed, starts, train[0][:1], data, compile_epoch=stochastic
            )
            given = self._coefs_given(params) if incremental else None
            if given is not None:
                params = placed.put_members(given)
            values = member_values(options)
            self._members = training.Members.fresh(placed, params, order_keys, values)
            self._engine_, self._seed = engine, seed
        elif dataclasses.replace(engine, batch_size=0) != dataclasses.replace(
            self._engine_, batch_size=0
        ):
            raise ParameterError(
                "warm_start and partial_fit continue the last fit, whose network or solver was "
                "another; set warm_start=False (or call fit) to start again"
            )
        self._engine_ = engine
        if options.solver == "lbfgs":
            training.train_lbfgs(
                engine, self._members, data, options, has_validation=has_validation
            )
        else:
            training.train_stochastic(
                engine,
                self._members,
                data,
                options,
                incremental=incremental,
                has_validation=has_validation,
            )
        self.n_outputs_ = int(targets.shape[1])
        self._record(options, has_validation, incremental, len(train[0]))
        return self

    def _parts(
        self, train: Part, options: MLPOptions, rng: np.random.RandomState, x_val: Any, y_val: Any
    ) -> tuple[Part, Part, bool]:
        """The training part, the validation part (X_val and y_val, scikit-learn's early-stopping
        split, or a one-row stand-in) and whether the fit has a validation set."""
        given = x_val is not None or y_val is not None
        if given and (x_val is None or y_val is None):
            raise ParameterError("X_val and y_val go together: give both or neither")
        has_validation = given or options.early_stopping or options.select_by == "validation"
        x, targets, _ = train
        val: Part
        if given:
            x_val = validate_data(self, x_val, reset=False, **CHECK_X)
            val_targets = self._validation_targets(y_val)
            x_val = dense(x_val, x.dtype)
            val = (x_val, np.asarray(val_targets, x.dtype), np.ones(len(x_val), x.dtype))
        elif has_validation:
            train, val = self._split(train, options.validation_fraction, rng)
        else:
            val = (x[:1], targets[:1], np.ones(1, x.dtype))
        return train, val, has_validation

    def _engine(self, options: MLPOptions, num_outputs: int, num_train: int) -> programs.Engine:
        return programs.Engine(
            module=self._module(options, num_outputs),
            output=self._output(options),
            solver=options.solver,
            nesterov=options.nesterov,
            beta_1=options.beta_1,
            beta_2=options.beta_2,
            epsilon=options.epsilon,
            batch_size=resolve_batch_size(options.batch_size, num_train),
            task=self._task,
        )

    def _coefs_given(self, params: Any) -> Any:
        """Stacked parameters from `coefs_` / `intercepts_` set by hand before the first
        partial_fit (scikit-learn starts from them), when their shapes fit the network."""
        coefs, intercepts = getattr(self, "coefs_", None), getattr(self, "intercepts_", None)
        if coefs is None or intercepts is None:
            return None
        if set(params) != {f"layer_{i}" for i in range(len(coefs))}:
            return None
        given = {}
        for i, (kernel, bias) in enumerate(zip(coefs, intercepts, strict=True)):
            layer = params[f"layer_{i}"]
            kernel = np.asarray(kernel, np.float32).reshape(layer["kernel"].shape[1:])
            bias = np.asarray(bias, np.float32).reshape(layer["bias"].shape[1:])
            given[f"layer_{i}"] = {
                "kernel": np.broadcast_to(kernel, layer["kernel"].shape),
                "bias": np.broadcast_to(bias, layer["bias"].shape),
            }
        return given

    def _split(self, train: Part, fraction: float, rng: np.random.RandomState) -> tuple[Part, Part]:
        """scikit-learn's early-stopping split (stratified for one classifier output)."""
        targets = train[1]
        one_label = self._task == "classification" and targets.shape[1] == 1
        x_train, x_val, y_train, y_val, w_train, w_val = train_test_split(
            *train,
            random_state=rng,
            test_size=fraction,
            stratify=targets.astype(bool) if one_label else None,
        )
        if len(x_val) < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size "
                "of your dataset."
            )
        return (x_train, y_train, w_train), (x_val, y_val, w_val)

    def _record(
        self, options: MLPOptions, has_validation: bool, incremental: bool, num_train: int
    ) -> None:
        """Selects the member and sets the fitted attributes from it."""
        members = self._members
        eligible = programs.all_finite(members.best_params)
        if not eligible.any():
            raise ValueError(
                "Solver produced non-finite parameter weights. The input data may contain "
                "large values and need to be preprocessed."
            )
        best = self._select(options, has_validation, eligible)
        self._eligible = eligible
        self.best_member_ = best
        self.n_members_ = members.size
        self.n_iter_ = int(members.n_iter[best])
        self.loss_ = members.loss_curves[best][-1]
        stochastic = options.solver in STOCHASTIC_SOLVERS
        if stochastic:
            self.t_ = int(members.samples_seen[best])
            self.loss_curve_ = list(members.loss_curves[best])
            self.best_loss_ = None if options.early_stopping else float(members.best_loss[best])
            self._no_improvement_count = int(members.no_improvement[best])
            self._optimizer = types.SimpleNamespace(
                learning_rate=float(members.learning_rate[best])
            )
        else:
            self.t_ = num_train * self.n_iter_
        scores = members.validation_scores[best] if has_validation else None
        self.validation_scores_ = None if scores is None else list(scores)
        self.best_validation_score_ = None if scores is None else max(scores, default=None)
        self.out_activation_ = self._engine_.output
        self.results_ = self._results_table(options, best)
        if isinstance(options.model, str):  # scikit-learn's network: layer_0, layer_1, ...
            member = jax.tree_util.tree_map(lambda a: np.asarray(a)[best], members.best_params)
            layers = [member[f"layer_{i}"] for i in range(len(member))]
            self.n_layers_ = len(layers) + 1
            self.coefs_ = [layer["kernel"].astype(self._dtype) for layer in layers]
            self.intercepts_ = [layer["bias"].astype(self._dtype) for layer in layers]
        if incremental:
            return
        if stochastic and self.n_iter_ == options.max_iter:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({options.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )
        if not stochastic and not members.converged[best]:
            warnings.warn(
                f"lbfgs failed to converge after {self.n_iter_} iteration(s) (status=1):\n"
                "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT\n\nIncrease the number of "
                "iterations (max_iter) or scale the data.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _select(self, options: MLPOptions, has_validation: bool, eligible: np.ndarray) -> int:
        """The selected member among the eligible (finite) ones: the best validation score
        with a validation set, else the lowest final training loss (the first eligible member
        when none has a finite one)."""
        members = self._members
        if not has_validation:
            quality = -_last(members.loss_curves)
        elif options.early_stopping:
            quality = members.best_score
        else:
            quality = _last(members.validation_scores)
        quality = np.where(eligible & np.isfinite(quality), quality, -np.inf)
        return int(np.argmax(quality)) if np.isfinite(quality).any() else int(np.argmax(eligible))

    def _results_table(self, options: MLPOptions, best: int) -> dict[str, np.ndarray]:
        """One row per member, as columns (`pandas.DataFrame(est.results_)` reads it)."""
        members = self._members
        return {
            "member": np.arange(members.size),
            "seed_index": seed_indices(options),
            **{name: getattr(members, name).copy() for name, _ in options.sweep},
            "diverged": ~self._eligible,
            "n_iter": members.n_iter.copy(),
            "final_loss": _last(members.loss_curves),
            "best_loss": members.best_loss.copy(),
            "best_validation_score": np.where(
                np.isfinite(members.best_score), members.best_score, np.nan
            ),
            "validation_score": _last(members.validation_scores),
            "selected": np.arange(members.size) == best,
        }

    def _loss_grad_lbfgs(
        self, packed: np.ndarray, X: Any, y: Any, sample_weight: Any = None, *unused: Any
    ) -> tuple[float, np.ndarray]:
        """scikit-learn's private objective of the packed weights (every `coefs_` raveled, then
        every `intercepts_`) and its gradient, in float64, for code that calls it."""
        del unused
        shapes = [np.shape(c) for c in self.coefs_] + [np.shape(b) for b in self.intercepts_]
        with jax.enable_x64(True):
            ends = np.cumsum([int(np.prod(shape)) for shape in shapes])[:-1]
            parts = np.split(np.asarray(packed, np.float64), ends)
            pieces = [jnp.asarray(p).reshape(s) for p, s in zip(parts, shapes, strict=True)]
            layers = len(self.coefs_)
            params = {
                f"layer_{i}": {"kernel": pieces[i], "bias": pieces[layers + i]}
                for i in range(layers)
            }
            x = jnp.asarray(dense(X, np.dtype(np.float64)))
            targets = jnp.asarray(np.asarray(y, np.float64).reshape(len(x), -1))
            weights = jnp.ones(len(x)) if sample_weight is None else jnp.asarray(sample_weight)
            value, grads = programs.objective_and_grad_fn(self._engine_)(
                params, x, targets, weights, jnp.float64(self.alpha)
            )
            names = [f"layer_{i}" for i in range(layers)]
            flat = [grads[n]["kernel"].ravel() for n in names] + [grads[n]["bias"] for n in names]
            return float(value), np.asarray(jnp.concatenate(flat))

    # -- prediction -------------------------------------------------------------------------

    def _predictions(self, x: Any) -> np.ndarray:
        """The output layer's values [n_samples, n_outputs] (probabilities or predictions)
        of the member `predict_with` names, or the average of the finite members."""
        check_is_fitted(self, "_members")
        x = validate_data(self, x, reset=False, **CHECK_X)
        x = dense(x, compute_dtype(self._dtype))
        best = self.predict_with == "best"
        chosen = np.asarray([self.best_member_]) if best else np.flatnonzero(self._eligible)
        params = jax.tree_util.tree_map(lambda a: np.asarray(a)[chosen], self._members.best_params)
        # Rows padded to a power of two: inputs of many sizes share a few compiled programs.
        rows = max(MIN_PREDICT_ROWS, 1 << (len(x) - 1).bit_length())
        padded = np.zeros((rows, *x.shape[1:]), x.dtype)
        padded[: len(x)] = x
        outputs = np.asarray(programs.predict_fn(self._engine_)(params, padded))
        return outputs.mean(axis=0)[: len(x)].astype(self._dtype)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags
