"""The rules of single config fields, each stated once, with its one-line complaint.

A rule has a `field` and `problem(value) -> str | None`. A `NumericField` is a number the
members of one compiled program may each set differently; its rule holds alike for a flag and
for every value a sweep gives it. `FIELD_RULES` holds every single-field rule of the sections
jaxnn itself owns, checked by `field_problem` before anything else; the optimiser's, the
augmentation's, the loss's and the model's are their owners' (`jaxnn.validation.check_sections`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from typing import Any

from jaxnn.config.schema import (
    BATCH_ORDERS,
    DATA_MODES,
    KEEP_WEIGHTS,
    TRANSFER_MODES,
    TRANSFER_RESTORES,
)
from jaxnn.errors import unknown_name


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
      integer: only whole numbers mean something (`restarts.search` draws integers for it).
    """

    field: str
    hparam: str
    check: Callable[[float], bool]
    requirement: str
    zero_removes: bool = False
    constant_unless_swept: bool = False
    integer: bool = False

    def problem(self, value: Any, *, where: str = "") -> str | None:
        """The one-line complaint about `value`, or None when it is allowed."""
        if is_number(value) and self.check(float(value)):
            return None
        return f"{where or self.field} {self.requirement}, got {value!r}"


# The largest count of steps (and of steps between evaluations, or evaluations of patience):
# the chunk program carries the global step as an int32.
MAX_STEPS = 10**9
MAX_SEED = 2**32 - 1  # jax.random.PRNGKey keeps 32 bits of a seed: larger ones would collide


def run_steps(training: Any, num_train: int) -> int:
    """Steps of a run: `training.steps`, or `training.epochs` passes over the training split."""
    if training.steps > 0:
        return int(training.steps)
    return int(training.epochs) * -(-num_train // training.batch_size)


@dataclasses.dataclass(frozen=True)
class IntegerField:
    """An integer config field and its range [low, high].

    Attributes:
      meaning: what a value means, in a few words (the error message says it).
      each: the field holds a tuple of such integers (dataset.classes, model.hidden).
    """

    field: str
    low: int
    high: int
    meaning: str
    each: bool = False

    def problem(self, value: Any) -> str | None:
        """The one-line complaint about `value`, or None when it is in range."""
        if self.each and not isinstance(value, tuple | list):
            return f"{self.field} must be a tuple of integers ({self.meaning}), got {value!r}"
        for item in value if self.each else (value,):
            if not _is_plain_int(item) or not self.low <= item <= self.high:
                what = "every entry of " if self.each else ""
                return (
                    f"{what}{self.field} must be an integer in [{self.low}, {self.high}] "
                    f"({self.meaning}), got {item!r}"
                )
        return None


def _is_plain_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Choice:
    """One of `choices`: a tuple, or a registry (name -> entry) that users may extend."""

    field: str
    # hashed by the field alone: a registry is a dict (a family, hashed as a jit static
    # argument, hashes its specs)
    choices: tuple[str, ...] | Mapping[str, Any] = dataclasses.field(hash=False)

    def problem(self, value: Any) -> str | None:
        if isinstance(value, str) and value in self.choices:
            return None
        if isinstance(self.choices, Mapping):
            return unknown_name(self.field, value, self.choices)
        return f"{self.field} must be one of {', '.join(self.choices)}, got {value!r}"


@dataclasses.dataclass(frozen=True)
class Finite:
    """A finite number >= `low`; `note` says what a value means (in the message)."""

    field: str
    low: float = 0.0
    note: str = ""

    def problem(self, value: Any) -> str | None:
        if is_number(value) and value >= self.low:
            return None
        note = f" ({self.note})" if self.note else ""
        return f"{self.field} must be a finite number >= {self.low:g}{note}, got {value}"


@dataclasses.dataclass(frozen=True)
class Text:
    """A value of one type, a string unless `kind` says otherwise; `meaning` says which (in
    the message)."""

    field: str
    meaning: str
    kind: type = str

    def problem(self, value: Any) -> str | None:
        ok = isinstance(value, self.kind)
        return None if ok else f"{self.field} must be {self.meaning}, got {value!r}"


@dataclasses.dataclass(frozen=True)
class Flag(Text):
    """True or False."""

    meaning: str = "True or False"
    kind: type = bool


@dataclasses.dataclass(frozen=True)
class MemberName:
    """'best' or a member index written as a string ('3')."""

    field: str

    def problem(self, value: Any) -> str | None:
        index = isinstance(value, str) and value.isascii() and value.isdigit()
        if value == "best" or (index and int(value) < 2**31):
            return None
        return (
            f"{self.field} must be 'best' or a member index in [0, {2**31 - 1}] such as '3', "
            f"got {value!r}"
        )


# Every integer field of the schema (`jaxnn.config.schema`) but the model's, checked before
# anything else; a model field's range is in its family's spec (`jaxnn.nn.model_fields`).
INTEGER_FIELDS: tuple[IntegerField, ...] = (
    IntegerField("seed", 0, MAX_SEED, "the root random seed"),
    IntegerField("dataset.split_seed", 0, MAX_SEED, "seeds the validation split"),
    IntegerField(
        "dataset.permute_seed", 0, MAX_SEED, "seeds the permutation of positions, 0 = off"
    ),
    IntegerField("dataset.train_per_class", 0, 10**9, "train examples kept per class, 0 = all"),
    IntegerField("dataset.classes", 0, 10**6, "the class labels kept", each=True),
    IntegerField("optimizer.warmup_steps", 0, MAX_STEPS, "steps of learning-rate warmup"),
    IntegerField("training.batch_size", 1, 2**31 - 1, "examples per step"),
    IntegerField("training.steps", 0, MAX_STEPS, "steps of training, 0 = use epochs"),
    IntegerField("training.epochs", 0, MAX_STEPS, "passes over the training split, 0 = use steps"),
    IntegerField("training.eval_every", 1, MAX_STEPS, "steps between evaluations"),
    IntegerField("training.patience", 0, MAX_STEPS, "evaluations without improvement, 0 = off"),
    IntegerField("restarts.num", 1, 2**31 - 1, "members per variant"),
    IntegerField("restarts.eta", 2, 10**6, "the halving factor of each rung"),
    IntegerField("restarts.first_rung_steps", 0, MAX_STEPS, "steps of the first rung, 0 = auto"),
    IntegerField("restarts.pbt_interval", 0, MAX_STEPS, "steps between PBT exploits, 0 = auto"),
    IntegerField(
        "checkpoint.every_steps", 0, MAX_STEPS, "steps between saves, 0 = every evaluation"
    ),
    IntegerField("checkpoint.keep", 1, 10**6, "latest checkpoints kept"),
    IntegerField("mesh.num_devices", 0, 2**20, "devices of the mesh, 0 = all"),
    IntegerField("mesh.member_group", 0, 2**31 - 1, "members per group, 0 = automatic"),
    IntegerField("augment.shift", 0, 10**6, "the largest random shift in positions, 0 = off"),
    IntegerField("augment.crop", 0, 10**6, "the padding of the random crops in pixels, 0 = off"),
    IntegerField("optimizer.plateau_patience", 1, MAX_STEPS, "checks without improvement"),
    IntegerField("optimizer.plateau_cooldown", 0, MAX_STEPS, "checks skipped after a cut"),
    IntegerField("optimizer.plateau_accumulation", 0, MAX_STEPS, "steps per check, 0 = eval_every"),
    IntegerField("optimizer.accumulate_steps", 1, 10**6, "batches per optimiser update"),
)


# The other single-field rules of the sections jaxnn owns (the rules across fields, and those
# that depend on the user's components or the data, are `jaxnn.validation`'s).
OTHER_FIELDS: tuple[Any, ...] = (
    Choice("training.keep", KEEP_WEIGHTS),
    Choice("training.batch_order", BATCH_ORDERS),
    Finite("restarts.tolerance"),
    Finite("restarts.explode_factor", note="0: no member is marked exploded"),
    Choice("init_from.mode", TRANSFER_MODES),
    Choice("init_from.restore", TRANSFER_RESTORES),
    MemberName("init_from.member"),
    Finite("init_from.body_lr_scale"),
    Flag("tensorboard.enabled"),
    Choice("mesh.data", DATA_MODES),
    Flag("compilation_cache.enabled"),
    Text("compilation_cache.dir", "a directory path ('' = the default)"),
)

# Every single-field rule outside the sections' owners, integers first (the later rules of
# training and restarts compare their integers).
FIELD_RULES: tuple[Any, ...] = (*INTEGER_FIELDS, *OTHER_FIELDS)


def field_problem(config: Any) -> str | None:
    """The complaint about the first field of `config` that its rule in `FIELD_RULES` refuses,
    or None (a field the config does not have is skipped)."""
    for entry in FIELD_RULES:
        node = config
        for part in entry.field.split("."):
            if part not in node:
                break
            node = node[part]
        else:
            problem = entry.problem(node)
            if problem is not None:
                return problem
    return None
