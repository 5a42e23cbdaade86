"""The `model` fields as their families declare them: one `FieldSpec` per field.

`config.model` is the universal fields (name, head, dtype) plus every registered family's
(`jaxnn.nn.registry`), each under its flat name (`--config.model.channels=...`). A name that two
families read has one spec, defined once and imported by the other (the dense layers' shared
ones are here, the conv layers' are cnn1d's); the registry refuses two different specs.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from jaxnn.config.fields import Choice, IntegerField, NumericField
from jaxnn.errors import ConfigError
from jaxnn.nn.activations import ACTIVATIONS, INITIALIZERS

MEMBER = "member"  # members of one compiled program each take a value (a NumericField rule)
STRUCTURAL = "structural"  # a sweep of it trains one compiled program per value


class Rule(Protocol):
    def problem(self, value: Any) -> str | None: ...


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One `model` field, declared by the family that reads it.

    Attributes:
      name: the field's name in `config.model` (`--config.model.NAME=...`).
      default: its value in `default_config()` (for a field added later: what runs before it
        did, `jaxnn.config.upgrade`).
      rule: what a value must be, with its one-line complaint (`problem`): an IntegerField
        (a range, or each entry's), a NumericField, a Choice, a Flag or an IntegerTuple; None
        for the universal fields, which their owners check (model.name: the registry;
        model.dtype: `jaxnn.nn.precision`; model.head: the parameters, on the data's shapes).
      sweep: MEMBER (a per-member number: the rule is its NumericField), STRUCTURAL (one program
        per value) or None (not swept).
    """

    name: str
    default: Any
    rule: Rule | None
    sweep: str | None = None

    def problem(self, value: Any) -> str | None:
        return None if self.rule is None else self.rule.problem(value)


@dataclasses.dataclass(frozen=True)
class IntegerTuple:
    """A non-empty tuple of integers >= `minimum` (one per layer, or one for every layer)."""

    field: str
    minimum: int = 1

    def problem(self, value: Any) -> str | None:
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else None
        if items is None or not all(is_int(item) for item in items):
            return f"{self.field} must be a tuple of integers, got {value!r}"
        if not items:
            return f"{self.field} must name at least one value, got {value!r}"
        if any(item < self.minimum for item in items):
            return f"{self.field} values must all be >= {self.minimum}, got {value!r}"
        return None


def is_int(item: Any) -> bool:
    return isinstance(item, numbers.Integral) and not isinstance(item, bool)


def integer(
    name: str, default: Any, low: int, high: int, meaning: str, each: bool = False
) -> FieldSpec:
    """A structural integer field (or tuple of integers: `each`) in [low, high]."""
    rule = IntegerField(f"model.{name}", low, high, meaning, each=each)
    return FieldSpec(name, default, rule, STRUCTURAL)


def choice(name: str, default: str, choices: tuple[str, ...] | Mapping[str, Any]) -> FieldSpec:
    return FieldSpec(name, default, Choice(f"model.{name}", choices), STRUCTURAL)


def member(
    name: str,
    default: float,
    valid: Callable[[float], bool],
    requirement: str,
    zero_removes: bool = False,
) -> FieldSpec:
    """A per-member number, checked (and swept, searched) by its `NumericField`."""
    rule = NumericField(f"model.{name}", name, valid, requirement, zero_removes=zero_removes)
    return FieldSpec(name, default, rule, MEMBER)


def check(model_cfg: Any, specs: Sequence[FieldSpec]) -> None:
    """Each field of `specs` by its own rule (a sweep's values of a MEMBER field too).

    Raises:
      ConfigError: the first value its rule refuses.
    """
    for spec in specs:
        problem = spec.problem(model_cfg[spec.name])
        if problem:
            raise ConfigError(problem)


# Read by every family: model.name selects it; model.head names its head for transfer (() = the
# family's own); model.dtype is the dtype its Modules compute in (float32, or bfloat16: mixed
# precision, parameters and optimiser state float32, `jaxnn.nn.precision`).
UNIVERSAL = (
    FieldSpec("name", "mlp", None),
    FieldSpec("head", (), None),
    FieldSpec("dtype", "float32", None),
)

# The dense families' fields.
HIDDEN = integer("hidden", (100, 100), 1, 2**31 - 1, "the width of each hidden layer", each=True)
ACTIVATION = choice("activation", "relu", ACTIVATIONS)
NEGATIVE_SLOPE = member("negative_slope", 0.01, lambda v: True, "must be a finite number")
INIT = choice("init", "he_normal", INITIALIZERS)
INIT_STDDEV = FieldSpec(
    "init_stddev",
    0.01,
    NumericField(
        "model.init_stddev", "init_stddev", lambda v: v > 0, "must be a finite number > 0"
    ),
)
INIT_SCALE = member("init_scale", 1.0, lambda v: v > 0, "must be a finite number > 0")
DROPOUT = member("dropout", 0.0, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", zero_removes=True)
# The fields `unit_settings` reads, in the order the families list them.
UNITS = (ACTIVATION, INIT, INIT_STDDEV, DROPOUT, INIT_SCALE, NEGATIVE_SLOPE)


def unit_settings(model_cfg: Any, hparams: Any) -> dict[str, Any]:
    """The hidden units' settings every family's Module but the recurrent ones takes: activation
    and initialiser from the config; the member's negative slope, dropout and init scale (traced
    scalars, or a Python 0.0 dropout that leaves dropout out of the program)."""
    return {
        "activation": model_cfg.activation,
        "initializer": model_cfg.init,
        "init_stddev": model_cfg.init_stddev,
        "negative_slope": hparams["negative_slope"],
        "dropout": hparams["dropout"],
        "init_scale": hparams["init_scale"],
    }
