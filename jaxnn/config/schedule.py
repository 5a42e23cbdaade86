"""`restarts.schedule`: how members leave the batch or take over each other, as a value.

  none                 every member trains to the end (the default)
  successive_halving   at the end of each rung the best ceil(n / eta) members go on
  hyperband            several successive-halving brackets, each with its own first rung
  pbt                  population-based training: every `pbt_interval` steps the bottom
                       fraction copies a top member's state and perturbs its hyperparameters

The value is checked here without data; `jaxnn.core.schedules` plans the rungs from the run's
steps and carries the schedule out.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from jaxnn.config.fields import is_number
from jaxnn.errors import ConfigError

NONE, HALVING, HYPERBAND, PBT = "none", "successive_halving", "hyperband", "pbt"
KINDS = (NONE, HALVING, HYPERBAND, PBT)
# The fields only some schedules read, with the schedules that read them.
FIELD_READERS = {
    "eta": (HALVING, HYPERBAND),
    "first_rung_steps": (HALVING, HYPERBAND),
    "pbt_interval": (PBT,),
    "pbt_fraction": (PBT,),
    "pbt_perturb": (PBT,),
    "pbt_resample": (PBT,),
}


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A checked `restarts.schedule` with the fields it reads (the others at their defaults)."""

    kind: str = NONE
    eta: int = 3
    first_rung_steps: int = 0
    pbt_interval: int = 0
    pbt_fraction: float = 0.25
    pbt_perturb: float = 0.2
    pbt_resample: float = 0.25

    @property
    def active(self) -> bool:
        return self.kind != NONE

    @property
    def halving(self) -> bool:
        return self.kind in (HALVING, HYPERBAND)


DEFAULTS = {name: getattr(Schedule(), name) for name in FIELD_READERS}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def resolve(restarts: Any, *, searched: bool, num_members: int) -> Schedule:
    """The schedule of a `restarts` section.

    `searched`: whether the run has a `restarts.search` (PBT perturbs within its ranges);
    `num_members`: members of one program (numeric variants x restarts.num).

    Raises:
      ConfigError: an unknown schedule, a field out of its range, a field that only another
        schedule reads set away from its default, PBT without a search, too few members.
    """
    kind = restarts.schedule
    _require(
        kind in KINDS,
        f"restarts.schedule: unknown {kind!r}; choose one of {', '.join(KINDS)}",
    )
    values = {name: restarts[name] for name in DEFAULTS}
    for name, readers in FIELD_READERS.items():
        _require(
            kind in readers or values[name] == DEFAULTS[name],
            f"restarts.{name} is read only by restarts.schedule={' or '.join(readers)}, but "
            f"the schedule is {kind}; leave it at {DEFAULTS[name]}",
        )
    _check_pbt_values(values)
    _check_members(kind, values["pbt_fraction"], searched=searched, num_members=num_members)
    return Schedule(kind=kind, **values)


def _check_pbt_values(values: dict[str, Any]) -> None:
    """PBT's fraction, perturbation and resampling probability: finite and in range."""
    for name in ("pbt_fraction", "pbt_perturb", "pbt_resample"):
        _require(
            is_number(values[name]),
            f"restarts.{name} must be a finite number, got {values[name]!r}",
        )
    _require(
        0 < values["pbt_fraction"] <= 0.5,
        f"restarts.pbt_fraction must be in (0, 0.5] (the bottom fraction copies from a top "
        f"fraction as large), got {values['pbt_fraction']}",
    )
    _require(
        0 <= values["pbt_perturb"] < 1,
        f"restarts.pbt_perturb must be in [0, 1) (values are multiplied by 1 - p or 1 + p), "
        f"got {values['pbt_perturb']}",
    )
    _require(
        0 <= values["pbt_resample"] <= 1,
        f"restarts.pbt_resample must be a probability in [0, 1], got {values['pbt_resample']}",
    )


def _check_members(kind: str, pbt_fraction: float, *, searched: bool, num_members: int) -> None:
    """What the schedule needs of the run's members: PBT a search and at least one member
    to replace, halving two members to prune."""
    if kind == PBT:
        _require(
            searched,
            "restarts.schedule=pbt perturbs the members' hyperparameters within the ranges of "
            "restarts.search; give one, e.g. 'optimizer.learning_rate=loguniform(1e-3, 0.3)'",
        )
        _require(
            math.floor(num_members * pbt_fraction) >= 1,
            f"restarts.schedule=pbt with restarts.pbt_fraction={pbt_fraction} replaces "
            f"no member of {num_members}; use more members or a larger fraction",
        )
    if kind in (HALVING, HYPERBAND):
        _require(
            num_members >= 2,
            f"restarts.schedule={kind} prunes members, but the run has {num_members}; "
            "raise restarts.num",
        )
