"""The `model` fields that several families read, and the checks they share.

Each family declares the `model` fields it reads (`ModelFamily.config_fields`); those it shares
with others (dropout, init_scale, activation, init) are defined once here, with one rule each.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

from jaxnn.config.fields import NumericField, is_number
from jaxnn.config.schema import default_config
from jaxnn.errors import ConfigError
from jaxnn.nn.activations import ACTIVATIONS, INITIALIZERS, lookup

DROPOUT = NumericField(
    "model.dropout", "dropout", lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", zero_removes=True
)
INPUT_DROPOUT = NumericField(
    "model.input_dropout",
    "input_dropout",
    lambda v: 0.0 <= v < 1.0,
    "must be in [0, 1)",
    zero_removes=True,
)
INIT_SCALE = NumericField(
    "model.init_scale", "init_scale", lambda v: v > 0, "must be a finite number > 0"
)
FORGET_BIAS = NumericField(
    "model.forget_bias", "forget_bias", lambda v: True, "must be a finite number"
)
NEGATIVE_SLOPE = NumericField(
    "model.negative_slope", "negative_slope", lambda v: True, "must be a finite number"
)

# Read by every family (model.name selects it; model.head names its head for transfer;
# model.dtype is the dtype its Modules compute in, jaxnn.nn.precision).
UNIVERSAL = ("name", "head", "dtype")

_SCHEMA = default_config().model


def schema_default(name: str) -> Any:
    """The schema's default of model field `name` (KeyError for a field the schema lacks)."""
    return _SCHEMA[name]


def check_numeric(model_cfg: Any, fields: Sequence[NumericField]) -> None:
    """Each field's value by its own rule (what a sweep of it is checked by too)."""
    for field in fields:
        problem = field.problem(model_cfg[field.field.rpartition(".")[2]])
        if problem:
            raise ConfigError(problem)


def check_init(model_cfg: Any) -> None:
    """model.init names an initialiser; model.init_stddev is a finite number > 0."""
    lookup(INITIALIZERS, model_cfg.init, "model.init")
    init_stddev = model_cfg.init_stddev
    if not is_number(init_stddev) or not (math.isfinite(init_stddev) and init_stddev > 0):
        raise ConfigError(f"model.init_stddev must be a finite number > 0, got {init_stddev!r}")


def check_activation(model_cfg: Any) -> None:
    """model.activation names an activation."""
    lookup(ACTIVATIONS, model_cfg.activation, "model.activation")


def is_int(item: Any) -> bool:
    return isinstance(item, numbers.Integral) and not isinstance(item, bool)


def int_tuple(model_cfg: Any, name: str, *, minimum: int, allow_empty: bool) -> tuple[int, ...]:
    """model.`name` as a tuple of integers >= minimum.

    Raises:
      ConfigError: not a tuple of integers, a value below `minimum`, or empty where not allowed.
    """
    given = model_cfg[name]
    items = list(given) if isinstance(given, Sequence) and not isinstance(given, str) else None
    if items is None or not all(is_int(item) for item in items):
        raise ConfigError(f"model.{name} must be a tuple of integers, got {given!r}")
    if not items and not allow_empty:
        raise ConfigError(f"model.{name} must name at least one value, got {given!r}")
    if any(item < minimum for item in items):
        raise ConfigError(f"model.{name} values must all be >= {minimum}, got {given!r}")
    return tuple(int(item) for item in items)


def choice(model_cfg: Any, name: str, choices: Sequence[str]) -> str:
    """model.`name`, one of `choices`."""
    given = model_cfg[name]
    if given not in choices:
        raise ConfigError(f"model.{name} must be one of {', '.join(choices)}, got {given!r}")
    return str(given)
