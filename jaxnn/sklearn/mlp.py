"""`MLPClassifier` and `MLPRegressor`: scikit-learn's MLP estimators, trained by jaxnn.

The constructor takes scikit-learn's parameters (same names, meanings and defaults) and jaxnn's
`n_restarts` (random starts trained together in one vmapped program), `sweep` (values of
`learning_rate_init`, `alpha` or `momentum`, each times every start), `select_by` ('auto',
'validation', 'loss'), `predict_with` ('best', 'ensemble') and `model` ('mlp' or a
`flax.linen.Module` mapping [B, n_features] to [B, n_outputs] raw outputs). docs/sklearn.md
says what jaxnn does with each parameter.
"""

from __future__ import annotations

from typing import Any

from jaxnn.sklearn.estimator import DEFAULT_RESTARTS
from jaxnn.sklearn.tasks import Classifier, Regressor


class MLPClassifier(Classifier):
    """scikit-learn's `MLPClassifier`, trained by jaxnn (module docstring).

    Attributes (after fit), besides scikit-learn's (`classes_`, `coefs_`, `intercepts_`,
    `loss_curve_`, `n_iter_`, `validation_scores_`, ...), which describe the selected member:
      best_member_: index of the member kept for prediction.
      n_members_: n_restarts times the number of sweep values.
      results_: per-member results as columns (member, seed_index, swept values, diverged,
        n_iter, final_loss, best_loss, best_validation_score, validation_score, selected).
    """

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
        select_by: str = "auto",
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
        self.select_by = select_by
        self.model = model


class MLPRegressor(Regressor):
    """scikit-learn's `MLPRegressor`, trained by jaxnn: half squared error (or Poisson).

    Fitted attributes as `MLPClassifier`'s (no `classes_`).
    """

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
        select_by: str = "auto",
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
        self.select_by = select_by
        self.model = model
