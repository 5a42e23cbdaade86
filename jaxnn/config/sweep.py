"""`restarts.sweep`: which config fields vary across the members of one run.

A sweep is written `field=[v1, v2, ...]; field=[...]`, for example
`optimizer.learning_rate=[0.01, 0.1]; model.dropout=[0.0, 0.5]`. Numeric fields become
per-member hyperparameters inside one compiled program; structural fields (those that change
the program itself, such as the activation) give one program per value.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from jaxnn.errors import ConfigError

# Config field -> hyperparameter name carried by each member's state.
NUMERIC_FIELDS = {
    "optimizer.learning_rate": "learning_rate",
    "optimizer.momentum": "momentum",
    "optimizer.weight_decay": "weight_decay",
    "model.dropout": "dropout",
    "model.input_dropout": "input_dropout",
    "model.init_scale": "init_scale",
    "model.negative_slope": "negative_slope",
}
STRUCTURAL_FIELDS = (
    "model.activation",
    "model.init",
    "model.hidden",
    "loss",
    "optimizer.name",
    "training.batch_size",
)


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed sweep: field -> values, split by whether a field changes the compiled program."""

    numeric: dict[str, tuple[float, ...]]
    structural: dict[str, tuple[Any, ...]]

    def numeric_variants(self) -> list[dict[str, float]]:
        """The cross product of the numeric fields, in the order they were written."""
        return _cross(self.numeric)

    def structural_variants(self) -> list[dict[str, Any]]:
        """The cross product of the structural fields, in the order they were written."""
        return _cross(self.structural)


def _cross(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    fields = list(values)
    return [dict(zip(fields, combo, strict=True)) for combo in itertools.product(*values.values())]


def _parse_value(token: str) -> Any:
    try:
        return ast.literal_eval(token)
    except (ValueError, SyntaxError):
        return token.strip().strip("'\"")


def _split_spec(spec: str) -> dict[str, list[Any]]:
    """Splits `a=[1, 2]; b=[x, y]` into {'a': [1, 2], 'b': ['x', 'y']}."""
    parsed: dict[str, list[Any]] = {}
    for clause in filter(None, (part.strip() for part in spec.split(";"))):
        field, sep, rhs = clause.partition("=")
        field, rhs = field.strip(), rhs.strip()
        if not sep or not field:
            raise ConfigError(
                f"restarts.sweep clause {clause!r} is not of the form field=[v1, v2, ...]"
            )
        if field in parsed:
            raise ConfigError(f"restarts.sweep names {field} twice")
        try:
            values = ast.literal_eval(rhs)
        except (ValueError, SyntaxError):
            # Bare words such as [relu, tanh] are strings.
            inner = rhs.removeprefix("[").removesuffix("]")
            values = [_parse_value(token) for token in inner.split(",") if token.strip()]
        if not isinstance(values, list | tuple):
            values = [values]
        parsed[field] = list(values)
    return parsed


def _field_value(config: ml_collections.ConfigDict, field: str) -> Any:
    node: Any = config
    for part in field.split("."):
        node = node[part]
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_sweep(
    spec: str | Mapping[str, Sequence[Any]], config: ml_collections.ConfigDict
) -> Sweep:
    """Parses and checks a sweep against the config's schema.

    Args:
      spec: the `restarts.sweep` string, or a mapping field -> list of values.
      config: the full config (for the types of the swept fields).

    Returns:
      The sweep split into numeric and structural fields.

    Raises:
      ConfigError: an unknown or unsweepable field, an empty list, or a value of the wrong type.
    """
    raw = _split_spec(spec) if isinstance(spec, str) else {k: list(v) for k, v in spec.items()}
    known = sorted([*NUMERIC_FIELDS, *STRUCTURAL_FIELDS])
    numeric: dict[str, tuple[float, ...]] = {}
    structural: dict[str, tuple[Any, ...]] = {}
    for field, values in raw.items():
        if field not in NUMERIC_FIELDS and field not in STRUCTURAL_FIELDS:
            raise ConfigError(
                f"restarts.sweep cannot vary {field!r}; sweepable fields: {', '.join(known)}"
            )
        if not values:
            raise ConfigError(f"restarts.sweep gives {field} an empty list of values")
        if field in NUMERIC_FIELDS:
            bad = [v for v in values if not _is_number(v)]
            if bad:
                raise ConfigError(
                    f"restarts.sweep values of {field} must be numbers, got {bad[0]!r}"
                )
            numeric[field] = tuple(float(v) for v in values)
        else:
            current = _field_value(config, field)
            kind = tuple if isinstance(current, tuple) else type(current)
            converted = []
            for value in values:
                if kind is tuple and isinstance(value, int) and not isinstance(value, bool):
                    value = (value,)
                if kind is tuple and isinstance(value, list):
                    value = tuple(value)
                if not isinstance(value, kind) or isinstance(value, bool) != isinstance(
                    current, bool
                ):
                    raise ConfigError(
                        f"restarts.sweep values of {field} must be of type {kind.__name__} "
                        f"like {current!r}, got {value!r}"
                    )
                converted.append(value)
            structural[field] = tuple(converted)
    return Sweep(numeric=numeric, structural=structural)


def with_values(
    config: ml_collections.ConfigDict, values: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """A copy of `config` with the given dotted fields set (the caller's config is unchanged)."""
    updated = ml_collections.ConfigDict(config.to_dict())
    for field, value in values.items():
        *parents, leaf = field.split(".")
        node = updated
        for part in parents:
            node = node[part]
        node[leaf] = value
    return updated
