"""From a scikit-learn MLP's constructor parameters to one checked value.

`options_from` checks the parameters once, at `fit` (scikit-learn estimators never check in
`__init__` or `set_params`), into an `MLPOptions` value: every later step reads that value.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NoReturn

import numpy as np

from jaxnn.config.sweep import split_spec
from jaxnn.errors import ConfigError
from jaxnn.nn.activations import ACTIVATIONS as JAXNN_ACTIVATIONS

# scikit-learn's activation names -> jaxnn's (jaxnn's own names are accepted as they are).
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("sgd", "adam", "lbfgs")
STOCHASTIC_SOLVERS = ("sgd", "adam")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
PREDICT_WITH = ("best", "ensemble")
SELECT_BY = ("auto", "validation", "loss")
REGRESSION_LOSSES = {"squared_error": "identity", "poisson": "exp"}
# sklearn's batch_size='auto': min(AUTO_BATCH, n_samples).
AUTO_BATCH = 200
# A sweep's field -> the member value it varies (jaxnn's config names and scikit-learn's).
SWEPT_VALUES = {
    "optimizer.learning_rate": "learning_rate",
    "learning_rate_init": "learning_rate",
    "optimizer.weight_decay": "alpha",
    "alpha": "alpha",
    "optimizer.momentum": "momentum",
    "momentum": "momentum",
}


class ParameterError(ConfigError, ValueError):
    """A constructor parameter with a value jaxnn cannot honour: one line, a ValueError as
    scikit-learn raises for its own parameters (so GridSearchCV's error handling applies)."""


@dataclasses.dataclass(frozen=True)
class MLPOptions:
    """The checked parameters of one fit (hashable).

    `model` is 'mlp' (scikit-learn's network) or the user's own (hashable) Flax module;
    `n_iter_no_change` may be `math.inf`; `sweep` is field -> values of the member values
    (`SWEPT_VALUES`).
    """

    hidden: tuple[int, ...]
    activation: str  # jaxnn's activation name
    solver: str
    alpha: float
    batch_size: Any  # 'auto' or an int
    learning_rate: str
    learning_rate_init: float
    power_t: float
    max_iter: int
    shuffle: bool
    tol: float
    verbose: bool
    warm_start: bool
    momentum: float
    nesterov: bool
    early_stopping: bool
    validation_fraction: float
    beta_1: float
    beta_2: float
    epsilon: float
    n_iter_no_change: float
    max_fun: int
    n_restarts: int
    sweep: tuple[tuple[str, tuple[float, ...]], ...]
    select_by: str
    model: Any
    loss: str  # 'log_loss' (classifier), 'squared_error' or 'poisson'


def _fail(message: str) -> NoReturn:
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


def _sweep(value: Any) -> tuple[tuple[str, tuple[float, ...]], ...]:
    if value is None or value == "":
        return ()
    try:
        fields = split_spec(value)
    except ConfigError as error:
        _fail(str(error))
    swept = []
    for field, values in fields.items():
        if field not in SWEPT_VALUES:
            _fail(f"sweep may vary {', '.join(SWEPT_VALUES)}, got {field!r}")
        if not values or not all(_is_real(v) and float(v) >= 0 for v in values):
            _fail(f"sweep values of {field} must be numbers >= 0, got {values!r}")
        swept.append((SWEPT_VALUES[field], tuple(float(v) for v in values)))
    names = [name for name, _ in swept]
    if len(set(names)) < len(names):
        _fail(f"sweep names the same value twice: {list(fields)}")
    return tuple(swept)


def _n_iter_no_change(value: Any) -> float:
    if (_is_int(value) and value >= 1) or (_is_real(value) and value == math.inf):
        return float(value)
    _fail(f"n_iter_no_change must be an integer >= 1 or np.inf, got {value!r}")


def _check_choice(params: Mapping[str, Any], name: str, choices: Collection[str]) -> None:
    if params[name] not in choices:
        _fail(f"{name} must be one of {', '.join(choices)}, got {params[name]!r}")


def options_from(params: Mapping[str, Any]) -> MLPOptions:
    """Checks an estimator's `get_params()` into the value every step of a fit reads.

    Raises:
      ParameterError: the first parameter with a value jaxnn cannot honour.
    """
    _check_choice(params, "solver", SOLVERS)
    _check_choice(params, "learning_rate", LEARNING_RATES)
    if "loss" in params:
        _check_choice(params, "loss", REGRESSION_LOSSES)
    for name in ("early_stopping", "nesterovs_momentum", "warm_start", "shuffle"):
        if not isinstance(params[name], bool | np.bool_):
            _fail(f"{name} must be True or False, got {params[name]!r}")
    batch_size = params["batch_size"]
    if batch_size != "auto" and not (_is_int(batch_size) and batch_size >= 1):
        _fail(f"batch_size must be 'auto' or an integer >= 1, got {batch_size!r}")
    _check_choice(params, "predict_with", PREDICT_WITH)
    _check_choice(params, "select_by", SELECT_BY)
    verbose = params["verbose"]
    if not (_is_int(verbose) or isinstance(verbose, bool | np.bool_)):
        _fail(f"verbose must be True, False or an integer, got {verbose!r}")
    model = params["model"]
    if isinstance(model, str) and model != "mlp":
        _fail(f"model must be 'mlp' or a flax.linen.Module, got {model!r}")
    return MLPOptions(
        hidden=_hidden(params["hidden_layer_sizes"]),
        activation=_activation(params["activation"]),
        solver=params["solver"],
        alpha=_check_real(params, "alpha", lambda v: v >= 0, "a number >= 0"),
        batch_size=params["batch_size"],
        learning_rate=params["learning_rate"],
        learning_rate_init=_check_real(params, "learning_rate_init", lambda v: v > 0, "> 0"),
        power_t=_check_real(params, "power_t", lambda v: v >= 0, "a number >= 0"),
        max_iter=_check_int(params, "max_iter", 1),
        shuffle=bool(params["shuffle"]),
        tol=_check_real(params, "tol", lambda v: v >= 0, "a number >= 0"),
        verbose=bool(params["verbose"]),
        warm_start=bool(params["warm_start"]),
        momentum=_check_real(params, "momentum", lambda v: 0 <= v <= 1, "in [0, 1]"),
        nesterov=bool(params["nesterovs_momentum"]),
        early_stopping=bool(params["early_stopping"]),
        validation_fraction=_check_real(
            params, "validation_fraction", lambda v: 0 < v < 1, "a number in (0, 1)"
        ),
        beta_1=_check_real(params, "beta_1", lambda v: 0 <= v < 1, "in [0, 1)"),
        beta_2=_check_real(params, "beta_2", lambda v: 0 <= v < 1, "in [0, 1)"),
        epsilon=_check_real(params, "epsilon", lambda v: v > 0, "> 0"),
        n_iter_no_change=_n_iter_no_change(params["n_iter_no_change"]),
        max_fun=_check_int(params, "max_fun", 1),
        n_restarts=_check_int(params, "n_restarts", 1),
        sweep=_sweep(params["sweep"]),
        select_by=params["select_by"],
        model=params["model"],
        loss=params.get("loss", "log_loss"),
    )


def member_values(options: MLPOptions) -> dict[str, np.ndarray]:
    """name -> float64 [K] of every member's learning_rate, alpha and momentum: the sweep's
    values crossed (variant-major: member v * n_restarts + s is start s of variant v)."""
    base = {
        "learning_rate": options.learning_rate_init,
        "alpha": options.alpha,
        "momentum": options.momentum,
    }
    variants = [dict(base)]
    for name, values in options.sweep:
        variants = [{**variant, name: value} for variant in variants for value in values]
    return {
        name: np.repeat([variant[name] for variant in variants], options.n_restarts)
        for name in base
    }


def seed_indices(options: MLPOptions) -> np.ndarray:
    """int [K]: the random start of every member (variant-major)."""
    variants = math.prod(len(values) for _, values in options.sweep)
    return np.tile(np.arange(options.n_restarts), variants)


def resolve_batch_size(batch_size: Any, num_train: int) -> int:
    """scikit-learn's rule: 'auto' is min(200, n); a larger integer is clipped to n."""
    return min(AUTO_BATCH if batch_size == "auto" else int(batch_size), num_train)
