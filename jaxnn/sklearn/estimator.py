"""`MLPClassifier` and `MLPRegressor`: scikit-learn's MLP estimators, trained by jaxnn.

The constructor takes scikit-learn's parameters (same names, meanings and defaults where
jaxnn honours them; docs/sklearn.md lists each difference) and four of jaxnn's:

- `n_restarts` (default 8): K random starts trained together in one vmapped program; the one
  with the best validation score (accuracy, R2) on a split of `validation_fraction` of the
  samples is kept. `n_restarts=1` (without early stopping or a sweep) trains one network on
  every sample, exactly scikit-learn's setting.
- `sweep`: a jaxnn sweep (`"optimizer.learning_rate=[1e-3, 1e-2]"`, or a mapping) of numeric
  fields: every value times every random start, in the same program.
- `predict_with`: 'best' (the selected member) or 'ensemble' (the average of the members'
  probabilities or predictions, diverged members left out).
- `model`: a model family name (`jaxnn.MODEL_FAMILIES`) or a `flax.linen.Module` whose
  `__call__(x)` maps [B, n_features] to [B, n_outputs].
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_X_y, validate_data

from jaxnn.core.ensemble import members as run_members
from jaxnn.core.ensemble import select_best
from jaxnn.data import Dataset
from jaxnn.data.preprocessing import Preprocessing
from jaxnn.errors import ConfigError
from jaxnn.nn import mlp
from jaxnn.predict.predictor import Predictor, member_group
from jaxnn.sklearn import epochs
from jaxnn.sklearn.options import (
    ParameterError,
    Shapes,
    member_values,
    options_from,
    program_options,
    resolve_batch_size,
)

MAX_SEED = np.iinfo(np.int32).max
# Random starts by default, so that changing a script's import line is enough to get them;
# n_restarts=1 trains on every sample, as scikit-learn does.
DEFAULT_RESTARTS = 8
MIN_PREDICT_ROWS = 32


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: fit, the fitted attributes, prediction."""

    _task = ""  # 'classification' | 'regression'

    def _fit(self, x: Any, y: Any, x_val: Any = None, y_val: Any = None) -> _BaseMLP:
        options = options_from(self.get_params())
        warm = self.warm_start and hasattr(self, "_params")
        x, targets = self._validated(x, y, reset=not warm)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(MAX_SEED))
        if (x_val is None) != (y_val is None):
            raise ParameterError("X_val and y_val go together: give both or neither")
        if x_val is not None:
            # scikit-learn's convention (HistGradientBoosting's fit): a given validation set
            # replaces the split of validation_fraction.
            has_validation = True
            x_train, y_train = x, targets
            x_val, y_val = self._validated_val(x_val, y_val)
        else:
            has_validation = self.early_stopping or options.n_restarts > 1 or bool(options.sweep)
            x_train, y_train, x_val, y_val = self._split(x, targets, has_validation, rng)
        shapes = Shapes(
            task=self._task,
            feature_shape=tuple(x.shape[1:]),
            num_train=len(x_train),
            num_val=len(x_val),
            num_outputs=self._num_outputs(targets),
            batch_size=resolve_batch_size(self.batch_size, len(x_train)),
        )
        key = epochs.RunKey(options=program_options(options), shapes=shapes)
        try:
            run = epochs.compiled_run(key)
        except ConfigError as error:  # the sweep, or the model on these shapes
            raise ParameterError(str(error)) from error
        data = Dataset(
            name="sklearn",
            task=self._task,
            x_train=x_train,
            y_train=y_train,
            x_val=x_val,
            y_val=y_val,
            x_test=x_val,
            y_test=y_val,
            num_classes=shapes.num_outputs if self._task == "classification" else 0,
            num_outputs=shapes.num_outputs,
        )
        rules = epochs.Rules(
            tol=float(self.tol),
            n_iter_no_change=int(self.n_iter_no_change),
            early_stopping=self.early_stopping,
            adaptive=options.solver == "sgd" and options.learning_rate == "adaptive",
            verbose=bool(self.verbose),
        )
        initial = self._params if warm and self._run_key == key else None
        trained = epochs.train_members(
            run,
            data,
            jax.random.PRNGKey(seed),
            rules,
            has_validation=has_validation,
            hparams=member_values(options),
            initial_params=initial,
        )
        self._record(key, run, trained, has_validation)
        return self

    def _validated(self, x: Any, y: Any, *, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _num_outputs(self, targets: np.ndarray) -> int:
        raise NotImplementedError

    def _validated_val(self, x_val: Any, y_val: Any) -> tuple[np.ndarray, np.ndarray]:
        """X_val, y_val checked against the training data and encoded as the targets are."""
        x_val, y_val = check_X_y(
            x_val, y_val, dtype=(np.float64, np.float32), multi_output=self._task == "regression"
        )
        if x_val.shape[1:] != (self.n_features_in_,):
            raise ValueError(
                f"X_val has {x_val.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        return np.asarray(x_val, np.float32), self._encoded_targets(y_val)

    def _split(
        self, x: np.ndarray, targets: np.ndarray, has_validation: bool, rng: np.random.RandomState
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Train and validation arrays: scikit-learn's early-stopping split (stratified for a
        classifier where every class has two samples and both parts can hold every class), or
        all of x with a one-example stand-in for validation when nothing is selected or stopped
        on it."""
        if not has_validation:
            return x, targets, x[:1], targets[:1]
        num_val = math.ceil(self.validation_fraction * len(x))  # train_test_split's count
        stratify = None
        if self._task == "classification":
            counts = np.bincount(targets)
            if counts.min() >= 2 and min(num_val, len(x) - num_val) >= len(counts):
                stratify = targets
        try:
            x_train, x_val, y_train, y_val = train_test_split(
                x,
                targets,
                random_state=rng,
                test_size=self.validation_fraction,
                stratify=stratify,
            )
        except ValueError as error:
            raise ParameterError(
                f"validation_fraction={self.validation_fraction} of {len(x)} samples cannot be "
                f"split into training and validation samples ({error})"
            ) from error
        if self.early_stopping and len(x_val) < 2:
            raise ParameterError(
                "The validation set is too small. Increase 'validation_fraction' or the size "
                "of your dataset."
            )
        return x_train, y_train, x_val, y_val

    def _record(
        self, key: epochs.RunKey, run: epochs.CompiledRun, trained: epochs.Trained, has_val: bool
    ) -> None:
        """Sets the fitted attributes from the end of training."""
        diverged = trained.diverged
        best = select_best(
            {"score": trained.final_validation_score if has_val else np.zeros(len(diverged))},
            diverged,
            "score",
            greater_is_better=True,
        )
        if best is None:
            raise ParameterError(
                "every member diverged (its training loss became NaN or infinite); lower "
                "learning_rate_init"
            )
        self._run_key = key
        self._params = jax.device_get(trained.state.best_params)
        self._model_state = jax.device_get(trained.state.best_model_state)
        self._hparams = jax.device_get(trained.state.hparams)
        self._diverged = diverged
        self.best_member_ = best
        self.n_members_ = len(diverged)
        self.n_iter_ = int(trained.n_iter[best])
        self.t_ = self.n_iter_ * key.shapes.num_train
        self.loss_curve_ = list(trained.loss_curves[best])
        self.loss_ = self.loss_curve_[-1]
        self.best_loss_ = None if self.early_stopping else float(trained.best_loss[best])
        scores = trained.validation_scores
        self.validation_scores_ = None if scores is None else list(scores[best])
        self.best_validation_score_ = (
            None if scores is None else float(trained.best_validation_score[best])
        )
        self.n_layers_ = len(key.options.hidden) + 2
        self.n_outputs_ = key.shapes.num_outputs
        self.out_activation_ = "softmax" if self._task == "classification" else "identity"
        self.results_ = self._results_table(run, trained, best)
        self._predictor = self._make_predictor()
        if isinstance(key.options.model, str) and key.options.model == mlp.FAMILY.name:
            member = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[best]), self._params)
            layers = [f"{mlp.BODY_PREFIX}{i}" for i in range(len(key.options.hidden))]
            self.coefs_ = [member[name]["kernel"] for name in (*layers, mlp.HEAD)]
            self.intercepts_ = [member[name]["bias"] for name in (*layers, mlp.HEAD)]
        if self.n_iter_ == key.options.max_iter and not self.early_stopping:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.n_iter_}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _results_table(
        self, run: epochs.CompiledRun, trained: epochs.Trained, best: int
    ) -> dict[str, np.ndarray]:
        """One row per member, as columns (`pandas.DataFrame(est.results_)` reads it)."""
        spec_members = run_members(run.trainer.spec)
        table: dict[str, np.ndarray] = {
            "member": np.arange(len(spec_members)),
            "seed_index": np.asarray([m.seed_index for m in spec_members]),
        }
        for field in spec_members[0].swept:
            table[field] = np.asarray([m.swept[field] for m in spec_members])
        table |= {
            "diverged": trained.diverged.copy(),
            "n_iter": trained.n_iter.copy(),
            "final_loss": np.asarray([c[-1] if c else np.nan for c in trained.loss_curves]),
            "best_loss": trained.best_loss.copy(),
            "best_validation_score": trained.best_validation_score.copy(),
            "validation_score": trained.final_validation_score.copy(),
            "selected": np.arange(len(spec_members)) == best,
        }
        return table

    def _make_predictor(self) -> Predictor:
        """The fitted members as a `jaxnn.predict.Predictor` (inputs as given, labels decoded)."""
        trainer = epochs.compiled_run(self._run_key).trainer
        shapes = self._run_key.shapes
        preprocessing = Preprocessing(
            task=self._task,
            feature_shape=shapes.feature_shape,
            num_outputs=shapes.num_outputs,
            classes=getattr(self, "classes_", None),
        )
        return Predictor(
            [
                member_group(
                    trainer.program,
                    self._params,
                    self._hparams,
                    model_state=getattr(self, "_model_state", None),
                )
            ],
            preprocessing=preprocessing,
            diverged=self._diverged,
            best_member=self.best_member_,
            config=trainer.spec.config,
        )

    def _predicted(self, x: Any, *, probabilities: bool) -> np.ndarray:
        """The predictor's `predict_proba` or `predict` of x, from the members `predict_with`
        names (the best member, or the average of the non-diverged members)."""
        check_is_fitted(self, "_params")
        x = validate_data(self, x, reset=False, dtype=(np.float64, np.float32))
        member = int(self.best_member_) if self.predict_with == "best" else "ensemble"
        # Rows padded to a power of two: inputs of many sizes share a few compiled programs.
        rows = max(MIN_PREDICT_ROWS, 1 << (len(x) - 1).bit_length())
        padded = np.zeros((rows, *x.shape[1:]), np.float32)
        padded[: len(x)] = x
        answer = self._predictor.predict_proba if probabilities else self._predictor.predict
        return answer(padded, member=member)[: len(x)]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())  # a copy: the base class may give __dict__
        state.pop("_predictor", None)  # compiled functions; rebuilt from the weights
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "_params" in state:
            self._predictor = self._make_predictor()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """scikit-learn's `MLPClassifier`, trained by jaxnn: softmax outputs, cross entropy.

    Attributes (after fit), besides scikit-learn's (`classes_`, `n_features_in_`,
    `loss_curve_`, `validation_scores_`, `best_validation_score_`, `coefs_`, `intercepts_`,
    `n_iter_`, `out_activation_`, ...) which describe the selected member:
      best_member_: index of the member kept (or used first) for prediction.
      n_members_: n_restarts times the number of sweep values.
      results_: per-member results as columns (member, seed_index, swept fields, diverged,
        n_iter, final_loss, best_loss, best_validation_score, validation_score, selected).
    """

    _task = "classification"

    def __init__(
        self,
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        n_restarts: int = DEFAULT_RESTARTS,
        sweep: Any = None,
        predict_with: str = "best",
        model: Any = "mlp",
    ) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.n_restarts = n_restarts
        self.sweep = sweep
        self.predict_with = predict_with
        self.model = model

    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None) -> MLPClassifier:
        """Trains every member on X [n_samples, n_features] and labels y [n_samples].

        X_val, y_val: a validation set to select members and stop early on, in place of the
        split of `validation_fraction` (as HistGradientBoostingClassifier.fit takes them).
        """
        return self._fit(X, y, X_val, y_val)

    def _encoded_targets(self, y: np.ndarray) -> np.ndarray:
        unknown = np.setdiff1d(y, self.classes_)
        if len(unknown):
            raise ValueError(
                f"y_val has labels {list(unknown[:5])} that y lacks; y's classes are "
                f"{list(self.classes_)}"
            )
        return np.searchsorted(self.classes_, y).astype(np.int32)

    def _validated(self, x: Any, y: Any, *, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        x, y = validate_data(self, x, y, reset=reset, dtype=(np.float64, np.float32))
        check_classification_targets(y)
        classes, encoded = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            raise ParameterError(
                f"MLPClassifier needs samples of at least 2 classes in the data, but the data "
                f"contains only one class: {classes[0]!r}"
            )
        if reset or not hasattr(self, "classes_"):
            self.classes_ = classes
        elif not np.array_equal(classes, self.classes_):
            raise ParameterError(
                f"warm_start=True needs the classes of the previous fit ({list(self.classes_)}), "
                f"got {list(classes)}"
            )
        return np.asarray(x, np.float32), encoded.astype(np.int32)

    def _num_outputs(self, targets: np.ndarray) -> int:
        return len(self.classes_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities [n_samples, n_classes], columns in the order of `classes_`."""
        return self._predicted(X, probabilities=True)

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithms of `predict_proba` [n_samples, n_classes]."""
        return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels [n_samples], drawn from `classes_`."""
        return self._predicted(X, probabilities=False)


class MLPRegressor(RegressorMixin, _BaseMLP):
    """scikit-learn's `MLPRegressor`, trained by jaxnn: identity outputs, half squared error.

    Fitted attributes as `MLPClassifier`'s (no `classes_`).
    """

    _task = "regression"

    def __init__(
        self,
        loss: str = "squared_error",
        hidden_layer_sizes: Any = (100,),
        activation: str = "relu",
        *,
        solver: str = "adam",
        alpha: float = 0.0001,
        batch_size: Any = "auto",
        learning_rate: str = "constant",
        learning_rate_init: float = 0.001,
        power_t: float = 0.5,
        max_iter: int = 200,
        shuffle: bool = True,
        random_state: Any = None,
        tol: float = 1e-4,
        verbose: bool = False,
        warm_start: bool = False,
        momentum: float = 0.9,
        nesterovs_momentum: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        n_iter_no_change: int = 10,
        max_fun: int = 15000,
        n_restarts: int = DEFAULT_RESTARTS,
        sweep: Any = None,
        predict_with: str = "best",
        model: Any = "mlp",
    ) -> None:
        self.loss = loss
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.n_restarts = n_restarts
        self.sweep = sweep
        self.predict_with = predict_with
        self.model = model

    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None) -> MLPRegressor:
        """Trains every member on X [n_samples, n_features] and targets y [n_samples] or
        [n_samples, n_targets].

        X_val, y_val: a validation set to select members and stop early on, in place of the
        split of `validation_fraction` (as HistGradientBoostingRegressor.fit takes them).
        """
        return self._fit(X, y, X_val, y_val)

    def _encoded_targets(self, y: np.ndarray) -> np.ndarray:
        return np.asarray(y, np.float32).reshape(len(y), -1)

    def _validated(self, x: Any, y: Any, *, reset: bool) -> tuple[np.ndarray, np.ndarray]:
        x, y = validate_data(
            self,
            x,
            y,
            reset=reset,
            multi_output=True,
            y_numeric=True,
            dtype=(np.float64, np.float32),
        )
        return np.asarray(x, np.float32), self._encoded_targets(y)

    def _num_outputs(self, targets: np.ndarray) -> int:
        return targets.shape[1]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def predict(self, X: Any) -> np.ndarray:
        """Predictions [n_samples] (one target) or [n_samples, n_targets]."""
        return self._predicted(X, probabilities=False)
