"""From a scikit-learn MLP's constructor parameters to one jaxnn run: the checks and the config.

`options_from` checks the parameters once, at `fit` (scikit-learn estimators never check in
`__init__` or `set_params`), into an `MLPOptions` value; `to_config` turns that value and the
shapes of the data into the jaxnn config of the run. Both are pure: the same parameters and
shapes give the same config, so a second fit of the same shapes reuses the compiled program.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from jaxnn.config.schema import default_config
from jaxnn.errors import ConfigError
from jaxnn.nn.activations import ACTIVATIONS as JAXNN_ACTIVATIONS

# scikit-learn's activation names -> jaxnn's (jaxnn's own names are accepted as they are).
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
PREDICT_WITH = ("best", "ensemble")
REGRESSION_LOSSES = ("squared_error",)
# sklearn's batch_size='auto': min(AUTO_BATCH, n_samples).
AUTO_BATCH = 200


class ParameterError(ConfigError, ValueError):
    """A constructor parameter with a value jaxnn cannot honour: one line, a ValueError as
    scikit-learn raises for its own parameters (so GridSearchCV's error handling applies)."""


@dataclasses.dataclass(frozen=True)
class MLPOptions:
    """The checked parameters that decide the compiled program (hashable: a cache key).

    `model` is a model family name or the user's own (hashable) Flax module.
    """

    hidden: tuple[int, ...]
    activation: str  # jaxnn's activation name
    solver: str
    alpha: float
    learning_rate: str
    learning_rate_init: float
    power_t: float
    momentum: float
    nesterov: bool
    beta_1: float
    beta_2: float
    epsilon: float
    max_iter: int
    n_restarts: int
    sweep: str
    model: Any


@dataclasses.dataclass(frozen=True)
class Shapes:
    """What a run's program depends on in the data: task, sizes, and the resolved batch size."""

    task: str  # 'classification' | 'regression'
    feature_shape: tuple[int, ...]
    num_train: int
    num_val: int
    num_outputs: int
    batch_size: int

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)


def _fail(message: str) -> None:
    raise ParameterError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_real(params: Mapping[str, Any], name: str, ok: Any, requirement: str) -> float:
    value = params[name]
    if not _is_real(value) or not ok(float(value)):
        _fail(f"{name} must be {requirement}, got {value!r}")
    return float(value)


def _check_int(params: Mapping[str, Any], name: str, minimum: int) -> int:
    value = params[name]
    if not _is_int(value) or value < minimum:
        _fail(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _hidden(value: Any) -> tuple[int, ...]:
    sizes = (value,) if _is_int(value) else value
    if (
        not isinstance(sizes, Sequence)
        or isinstance(sizes, str)
        or not all(_is_int(s) and s >= 1 for s in sizes)
    ):
        _fail(f"hidden_layer_sizes must be a tuple of integers >= 1 (e.g. (100,)), got {value!r}")
    return tuple(int(s) for s in sizes)


def _activation(value: Any) -> str:
    if value in ACTIVATIONS:
        return ACTIVATIONS[value]
    if isinstance(value, str) and value in JAXNN_ACTIVATIONS:
        return value
    _fail(
        f"activation must be one of {', '.join(ACTIVATIONS)} (or a jaxnn activation: "
        f"{', '.join(sorted(set(JAXNN_ACTIVATIONS) - set(ACTIVATIONS.values())))}), got {value!r}"
    )
    raise AssertionError  # unreachable: _fail raised


def _sweep(value: Any) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        clauses = [
            f"{field}=[{', '.join(repr(v) for v in values)}]" for field, values in value.items()
        ]
        return "; ".join(clauses)
    _fail(
        "sweep must be a jaxnn sweep string such as 'optimizer.learning_rate=[1e-3, 1e-2]' or a "
        f"mapping field -> values, got {value!r}"
    )
    raise AssertionError  # unreachable: _fail raised


def options_from(params: Mapping[str, Any]) -> MLPOptions:
    """Checks an estimator's `get_params()` and returns the values that decide its program.

    Also checks the parameters that act on the host (`max_iter`, `tol`, `shuffle`,
    `early_stopping`, `validation_fraction`, `n_iter_no_change`, `batch_size`,
    `predict_with`, `warm_start`, `verbose`), which `MLPOptions` leaves out.

    Raises:
      ParameterError: the first parameter with a value jaxnn cannot honour, e.g.
        solver='lbfgs'.
    """
    solver = params["solver"]
    if solver == "lbfgs":
        _fail(
            "solver='lbfgs' is not supported by jaxnn.sklearn (it trains random starts with "
            "minibatch optimisers in one vmapped program); use solver='adam' or 'sgd'"
        )
    if solver not in SOLVERS:
        _fail(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
    if params["learning_rate"] not in LEARNING_RATES:
        _fail(
            f"learning_rate must be one of {', '.join(LEARNING_RATES)}, got "
            f"{params['learning_rate']!r}"
        )
    if params.get("loss", "squared_error") not in REGRESSION_LOSSES:
        _fail(
            f"loss must be 'squared_error' (jaxnn.sklearn does not train loss="
            f"{params['loss']!r}), got {params['loss']!r}"
        )
    if params["shuffle"] is not True:
        _fail(
            f"shuffle must be True: jaxnn draws a new order of the training examples every "
            f"epoch, got shuffle={params['shuffle']!r}"
        )
    for name in ("early_stopping", "nesterovs_momentum", "warm_start"):
        if not isinstance(params[name], bool):
            _fail(f"{name} must be True or False, got {params[name]!r}")
    batch_size = params["batch_size"]
    if batch_size != "auto" and not (_is_int(batch_size) and batch_size >= 1):
        _fail(f"batch_size must be 'auto' or an integer >= 1, got {batch_size!r}")
    if params["predict_with"] not in PREDICT_WITH:
        _fail(
            f"predict_with must be one of {', '.join(PREDICT_WITH)}, got {params['predict_with']!r}"
        )
    _check_int(params, "n_iter_no_change", 1)
    _check_real(params, "tol", lambda v: v >= 0, "a number >= 0")
    _check_real(params, "validation_fraction", lambda v: 0 < v < 1, "a number in (0, 1)")
    model = params["model"]
    if isinstance(model, str) and not model:
        _fail("model must be a model family name such as 'mlp' or a flax.linen.Module, got ''")
    return MLPOptions(
        hidden=_hidden(params["hidden_layer_sizes"]),
        activation=_activation(params["activation"]),
        solver=solver,
        alpha=_check_real(params, "alpha", lambda v: v >= 0, "a number >= 0"),
        learning_rate=params["learning_rate"],
        learning_rate_init=_check_real(params, "learning_rate_init", lambda v: v > 0, "> 0"),
        power_t=_check_real(params, "power_t", lambda v: v >= 0, "a number >= 0"),
        momentum=_check_real(
            params, "momentum", lambda v: 0 <= v < 1, "in [0, 1) (jaxnn's momentum range)"
        ),
        nesterov=params["nesterovs_momentum"],
        beta_1=_check_real(params, "beta_1", lambda v: 0 <= v < 1, "in [0, 1)"),
        beta_2=_check_real(params, "beta_2", lambda v: 0 <= v < 1, "in [0, 1)"),
        epsilon=_check_real(params, "epsilon", lambda v: v > 0, "> 0"),
        max_iter=_check_int(params, "max_iter", 1),
        n_restarts=_check_int(params, "n_restarts", 1),
        sweep=_sweep(params["sweep"]),
        model=model,
    )


def program_options(options: MLPOptions) -> MLPOptions:
    """`options` with the values that members carry as traced hyperparameters (learning rate,
    alpha, momentum) set to fixed stand-ins: what the compiled program depends on, so that fits
    differing only in those values (a grid search over alpha) share one program.
    `member_values` gives the real values, which the fit sets in the members' state."""
    return dataclasses.replace(options, learning_rate_init=1.0, alpha=0.0, momentum=0.0)


def member_values(options: MLPOptions) -> dict[str, float]:
    """hparam name -> value of the member hyperparameters `program_options` stands in for."""
    return {
        "learning_rate": options.learning_rate_init,
        "weight_decay": options.alpha,
        "momentum": options.momentum,
    }


def resolve_batch_size(batch_size: Any, num_train: int) -> int:
    """scikit-learn's rule: 'auto' is min(200, n); a larger integer is clipped to n."""
    if batch_size == "auto":
        return min(AUTO_BATCH, num_train)
    return int(min(max(batch_size, 1), num_train))


def optimizer_name(options: MLPOptions) -> str:
    """The jaxnn optimiser whose member hyperparameters (and sweepable fields) the run has."""
    if options.solver == "adam":
        return "adam"
    return "nesterov" if options.nesterov else "momentum"


def to_config(options: MLPOptions, shapes: Shapes) -> ml_collections.ConfigDict:
    """The jaxnn config of the run: `max_iter` epochs of one chunk each, the last weights kept
    (the host applies scikit-learn's stopping rules and keeps the best-validation weights)."""
    config = default_config()
    config.model.name = options.model if isinstance(options.model, str) else "mlp"
    config.model.hidden = options.hidden
    config.model.activation = options.activation
    config.model.init = "glorot_uniform"
    config.loss = "cross_entropy" if shapes.task == "classification" else "mse"
    config.optimizer.name = optimizer_name(options)
    config.optimizer.learning_rate = options.learning_rate_init
    config.optimizer.weight_decay = options.alpha
    config.optimizer.momentum = options.momentum
    config.optimizer.b1 = options.beta_1
    config.optimizer.b2 = options.beta_2
    config.optimizer.eps = options.epsilon
    config.training.batch_size = shapes.batch_size
    config.training.epochs = options.max_iter  # one epoch per chunk; the host may stop earlier
    config.training.eval_every = shapes.steps_per_epoch
    config.training.keep = "last"
    config.restarts.num = options.n_restarts
    config.restarts.sweep = options.sweep
    config.restarts.select_by = "val_accuracy" if shapes.task == "classification" else "val_r2"
    config.tensorboard.enabled = False
    return config
