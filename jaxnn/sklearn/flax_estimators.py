"""`FlaxClassifier` and `FlaxRegressor`: any `flax.linen` module as a scikit-learn estimator.

The user's module is the network's body, `__call__(x)` from [B, n_features] to features
[B, H]; jaxnn adds the output layer the task needs (a Dense layer named `head` with one
logistic output for two classes, a softmax over more, one output per target) and trains it
as `MLPClassifier` trains its network, with the same parameters (docs/sklearn.md).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from jaxnn.sklearn.estimator import DEFAULT_RESTARTS, BaseNetwork
from jaxnn.sklearn.options import MLPOptions, ParameterError, options_from
from jaxnn.sklearn.tasks import Classifier, Regressor


class WithHead(nn.Module):
    """The user's body, then a Dense output layer `head` of `num_outputs` raw outputs."""

    body: nn.Module
    num_outputs: int

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        features = self.body(x)
        features = features.reshape((features.shape[0], -1))
        return nn.Dense(self.num_outputs, name="head")(features)


class _FlaxOptions(BaseNetwork):
    """The options of a Flax estimator: scikit-learn's, with the module as the network."""

    def _options(self) -> MLPOptions:
        params = self.get_params()
        module = params.pop("module")
        if not isinstance(module, nn.Module):
            raise ParameterError(f"module must be a flax.linen.Module, got {type(module).__name__}")
        return options_from(
            {**params, "hidden_layer_sizes": (1,), "activation": "relu", "model": module}
        )

    def _module(self, options: MLPOptions, num_outputs: int) -> nn.Module:
        # A clone: Flax adopts a submodule (sets its parent and name), which would change the
        # estimator's parameter.
        return WithHead(body=options.model.clone(), num_outputs=num_outputs)


class FlaxClassifier(_FlaxOptions, Classifier):
    """A classifier whose body is the user's Flax module (module docstring)."""

    def __init__(
        self,
        module: Any = None,
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
        select_by: str = "auto",
    ) -> None:
        self.module = module
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
        self.select_by = select_by


class FlaxRegressor(_FlaxOptions, Regressor):
    """A regressor whose body is the user's Flax module (module docstring)."""

    def __init__(
        self,
        module: Any = None,
        *,
        loss: str = "squared_error",
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
        select_by: str = "auto",
    ) -> None:
        self.module = module
        self.loss = loss
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
        self.select_by = select_by
