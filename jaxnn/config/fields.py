"""Numeric config fields that members of one compiled program may each set differently.

A `NumericField` names a config field, the hyperparameter name a member's state carries it
under, and the rule its values obey. The rule is the same for a flag (`--config.FIELD=V`) and
for every value a sweep gives the field, so a swept member is checked exactly like a launch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping
from typing import Any


def is_number(value: Any) -> bool:
    """A finite int or float (not a bool)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class NumericField:
    """A numeric config field that can take one value per member without recompiling.

    Attributes:
      field: the dotted config field, e.g. 'optimizer.learning_rate'.
      hparam: the name members carry it under in their state, e.g. 'learning_rate'.
      check: whether a (finite) value is allowed.
      requirement: what `check` asks for, in words ('must be > 0').
      zero_removes: a zero that is not swept leaves its piece out of the program (dropout).
      constant_unless_swept: members carry it only when it is swept; otherwise the program
        reads the config's Python float (Adam's b2: optax computes 1 - b2, which rounds
        differently from a float32 than from a Python float).
    """

    field: str
    hparam: str
    check: Callable[[float], bool]
    requirement: str
    zero_removes: bool = False
    constant_unless_swept: bool = False

    def problem(self, value: Any, *, where: str = "") -> str | None:
        """The one-line complaint about `value`, or None when it is allowed."""
        if is_number(value) and self.check(float(value)):
            return None
        return f"{where or self.field} {self.requirement}, got {value!r}"


def _canonical(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_canonical(item) for item in value)
    return value


def foreign_field(
    section: Mapping[str, Any],
    defaults: Mapping[str, Any],
    reads: Mapping[str, Collection[str]],
    chosen: str,
) -> tuple[str, tuple[str, ...]] | None:
    """A field set for another registry entry than the chosen one.

    Args:
      section: a config section, e.g. `config.model`.
      defaults: the schema's defaults of that section.
      reads: registry entry name -> the fields of the section it reads.
      chosen: the entry the config selects (e.g. model.name).

    Returns:
      (field, the entries that read it) for the first field of `section` that `chosen` does not
      read, some other entry does, and whose value differs from its default; else None.
    """
    own = set(reads.get(chosen, ()))
    for field in section:
        if field in own or field not in defaults:
            continue
        readers = tuple(name for name, fields in reads.items() if field in fields)
        if readers and _canonical(section[field]) != _canonical(defaults[field]):
            return field, readers
    return None
