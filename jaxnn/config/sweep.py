"""`restarts.sweep`: which config fields vary across the members of one run, as a value.

Written `optimizer.learning_rate=[0.01, 0.1]; model.dropout=[0.0, 0.5]`, or from Python as a
mapping `{"model.activation": ["relu", "tanh"]}`, and parsed once by `jaxnn.front_end` into a
`Sweep`: numeric fields become per-member hyperparameters of one compiled program; structural
fields (those that change the program, such as the activation) give one program per value.
"""

from __future__ import annotations

import ast
import dataclasses
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections

from jaxnn.config.fields import NumericField
from jaxnn.errors import ConfigError

SweepSpec = str | Mapping[str, Sequence[Any]]


@dataclasses.dataclass(frozen=True)
class Sweep:
    """A parsed sweep: field -> values, split by whether a field changes the compiled program."""

    numeric: dict[str, tuple[float, ...]] = dataclasses.field(default_factory=dict)
    structural: dict[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)

    def numeric_variants(self) -> list[dict[str, float]]:
        """The cross product of the numeric fields, in the order they were written."""
        return _cross(self.numeric)

    def structural_variants(self) -> list[dict[str, Any]]:
        """The cross product of the structural fields, in the order they were written."""
        return _cross(self.structural)

    def numeric_only(self) -> Sweep:
        """The sweep that each structural variant runs: its numeric fields alone."""
        return Sweep(numeric=dict(self.numeric))

    def to_spec(self) -> str:
        """The `restarts.sweep` string of this sweep (what config.json records)."""
        clauses = [
            f"{field}=[{', '.join(repr(v) for v in values)}]"
            for field, values in (*self.numeric.items(), *self.structural.items())
        ]
        return "; ".join(clauses)


def _cross(values: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    fields = list(values)
    return [dict(zip(fields, combo, strict=True)) for combo in itertools.product(*values.values())]


# What Python's parser raises on text it cannot take: a syntax it refuses, a value it cannot
# build, and text nested too deeply (MemoryError from ast.parse, RecursionError from the
# compiler or literal_eval: a 100 KB run of unary minus signs).
NESTING_ERRORS = (MemoryError, RecursionError)
PARSE_ERRORS = (ValueError, SyntaxError, TypeError, OverflowError, *NESTING_ERRORS)
# The longest bare word a sweep takes as a name (activations, initialisers, losses are short).
MAX_WORD = 200


def too_nested(flag: str, text: str) -> ConfigError:
    """The one line for a value Python's parser gives up on (nested too deeply)."""
    return ConfigError(
        f"{flag}: {text[:60]!r}... ({len(text)} characters) is nested too deeply to parse; "
        "write plain numbers"
    )


def _parse_value(token: str) -> Any:
    try:
        return ast.literal_eval(token)
    except NESTING_ERRORS:
        raise too_nested("restarts.sweep", token) from None
    except PARSE_ERRORS:
        return token.strip().strip("'\"")


def clauses(spec: str, *, flag: str, form: str) -> dict[str, str]:
    """Splits `a=RHS; b=RHS` into {'a': 'RHS', 'b': 'RHS'}: the syntax `restarts.sweep` and
    `restarts.search` share. `flag` and `form` ('field=[v1, v2, ...]') are for messages."""
    parsed: dict[str, str] = {}
    for clause in filter(None, (part.strip() for part in spec.split(";"))):
        field, sep, rhs = clause.partition("=")
        field, rhs = field.strip(), rhs.strip()
        if not sep or not field:
            raise ConfigError(f"{flag} clause {clause!r} is not of the form {form}")
        if field in parsed:
            raise ConfigError(f"{flag} names {field} twice")
        parsed[field] = rhs
    return parsed


def _split_spec(spec: str) -> dict[str, list[Any]]:
    """Splits `a=[1, 2]; b=[x, y]` into {'a': [1, 2], 'b': ['x', 'y']}."""
    parsed: dict[str, list[Any]] = {}
    for field, rhs in clauses(spec, flag="restarts.sweep", form="field=[v1, v2, ...]").items():
        try:
            values = ast.literal_eval(rhs)
        except NESTING_ERRORS:
            raise too_nested("restarts.sweep", rhs) from None
        except PARSE_ERRORS:
            if rhs.startswith("[") != rhs.endswith("]"):
                raise ConfigError(
                    f"restarts.sweep clause {field + '=' + rhs!r} is not of the form field=[v1, v2, ...] "
                    "(an unclosed bracket)"
                ) from None
            # Bare words such as [relu, tanh] are strings.
            inner = rhs.removeprefix("[").removesuffix("]")
            values = [_parse_value(token) for token in inner.split(",") if token.strip()]
            for value in values:
                if isinstance(value, str) and len(value) > MAX_WORD:
                    raise ConfigError(
                        f"restarts.sweep: {field} has the value {value[:60]!r}... ({len(value)} "
                        "characters), which is neither a number nor a name; write plain values"
                    ) from None
        if not isinstance(values, list | tuple):
            values = [values]
        parsed[field] = list(values)
    return parsed


def split_spec(spec: SweepSpec | Sweep) -> dict[str, list[Any]]:
    """The fields and values of a sweep string or mapping, unchecked (syntax only)."""
    if isinstance(spec, Sweep):
        return {k: list(v) for k, v in (*spec.numeric.items(), *spec.structural.items())}
    if isinstance(spec, str):
        return _split_spec(spec)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"a sweep is a string 'field=[v1, v2]; ...' or a mapping field -> values, got {spec!r}"
        )
    parsed = {}
    for field, values in spec.items():
        if isinstance(values, str) or not isinstance(values, Sequence):
            values = [values]
        parsed[str(field)] = list(values)
    return parsed


def resolve(
    spec: SweepSpec,
    config: ml_collections.ConfigDict,
    *,
    numeric_fields: Mapping[str, NumericField],
    structural_fields: Sequence[str],
) -> Sweep:
    """Checks a sweep against the config's schema and splits it into numeric and structural.

    Every numeric value is checked by its field's own rule (as the flag would be); structural
    values (the dotted `structural_fields`, one program per value) must have the type of the
    `config` field they replace.
    """
    raw = split_spec(spec)
    known = sorted([*numeric_fields, *structural_fields])
    numeric: dict[str, tuple[float, ...]] = {}
    structural: dict[str, tuple[Any, ...]] = {}
    for field, values in raw.items():
        if field not in numeric_fields and field not in structural_fields:
            raise ConfigError(
                f"restarts.sweep cannot vary {field!r}; sweepable fields here: {', '.join(known)}"
            )
        if not values:
            raise ConfigError(f"restarts.sweep gives {field} an empty list of values")
        if field in numeric_fields:
            for value in values:
                problem = numeric_fields[field].problem(value, where=f"restarts.sweep: {field}")
                if problem:
                    raise ConfigError(problem)
            numeric[field] = tuple(float(v) for v in values)
        else:
            structural[field] = tuple(_structural_value(config, field, v) for v in values)
    return Sweep(numeric=numeric, structural=structural)


def _structural_value(config: ml_collections.ConfigDict, field: str, value: Any) -> Any:
    current = field_value(config, field)
    kind = tuple if isinstance(current, tuple) else type(current)
    if kind is tuple and isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if kind is tuple and isinstance(value, list):
        value = tuple(value)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or isinstance(value, bool) != isinstance(current, bool):
        raise ConfigError(
            f"restarts.sweep values of {field} must be of type {kind.__name__} "
            f"like {current!r}, got {value!r}"
        )
    return value


def field_value(config: ml_collections.ConfigDict, field: str) -> Any:
    """The value of a dotted field of a config."""
    node: Any = config
    for part in field.split("."):
        node = node[part]
    return node


def with_values(
    config: ml_collections.ConfigDict, values: Mapping[str, Any]
) -> ml_collections.ConfigDict:
    """A copy of `config` with the given dotted fields set (the caller's config is unchanged)."""
    updated = ml_collections.ConfigDict(config.to_dict())
    for field, value in values.items():
        parent, _, leaf = field.rpartition(".")
        node = field_value(updated, parent) if parent else updated
        node[leaf] = value
    return updated
