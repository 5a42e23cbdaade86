"""The resolved run: what a validated config says to train (`RunSpec`, made by
`jaxnn.front_end.resolve`), and how its model family and its members' numeric fields are found.
Every phase after the front end reads the run from here and never re-parses the config.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections

from jaxnn.config import search as search_lib
from jaxnn.config import sweep as sweep_lib
from jaxnn.config.fields import NumericField
from jaxnn.data import augment
from jaxnn.errors import ConfigError
from jaxnn.nn import ema, optimizers, precision, registry
from jaxnn.nn import family as family_lib
from jaxnn.nn.components import Components
from jaxnn.nn.user_model import UserModel


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """A validated run: its config, the sweep as a value, its model family and user components.

    Attributes:
      config: a copy of the caller's config whose `restarts.sweep` and `restarts.search` are
        their canonical strings (what config.json records).
      fields: every numeric field a member may vary (field -> NumericField: `numeric_fields`).
      variants: one (variant values, RunSpec of that variant with the numeric sweep alone) per
        structural variant; empty when the sweep names no structural field.
      search: the drawn points of `restarts.search` (each structural variant draws the same
        ones), or None; a search and a numeric sweep are never both given.
      source_workdir, compile_cache_dir: `init_from.workdir` and `compilation_cache.dir` with
        `~` expanded, or None.

    The derived values (`varied_fields`, `base_hparams`, ...) are computed once: do not change them.
    """

    config: ml_collections.ConfigDict
    sweep: sweep_lib.Sweep
    family: family_lib.ModelFamily
    components: Components
    fields: dict[str, NumericField]
    variants: tuple[tuple[dict[str, Any], RunSpec], ...] = ()
    search: search_lib.Search | None = None
    source_workdir: Path | None = None
    compile_cache_dir: Path | None = None

    @property
    def head(self) -> tuple[str, ...]:
        """The top-level parameter names of the head (config.model.head, else the family's)."""
        return tuple(self.config.model.head) or self.family.head

    @property
    def structural(self) -> bool:
        return bool(self.variants)

    def single_program(self, what: str) -> RunSpec:
        """The spec of the one program this run is (a structural sweep of one value is one);
        ConfigError when the sweep gives several structural variants."""
        if len(self.variants) > 1:
            raise ConfigError(
                f"{what} trains one compiled program, but the sweep varies "
                f"{', '.join(self.sweep.structural)} ({len(self.variants)} programs): use "
                "jaxnn.fit_variants, or jaxnn.run for a workdir with all of them"
            )
        return self.variants[0][1] if self.variants else self

    def numeric_fields(self) -> dict[str, NumericField]:
        """Every numeric field a member may vary (field -> NumericField)."""
        return self.fields

    def check_one_member(self, what: str, hparams: Mapping[str, Any] | None) -> None:
        """A single-member entry point (`fit`) trains one point: a ConfigError names the varied
        fields (swept or searched) that `hparams` does not set, which would be ignored silently."""
        fields = self.numeric_fields()
        unset = [f for f in sorted(self.varied_fields) if fields[f].hparam not in (hparams or {})]
        if unset:
            source = "restarts.search draws" if self.search is not None else "restarts.sweep varies"
            raise ConfigError(
                f"{what} trains one model, but {source} {', '.join(unset)}: use "
                "jaxnn.fit_ensemble or jaxnn.run to train every member, or give one member's "
                f"values as hparams= (e.g. hparams={{{fields[unset[0]].hparam!r}: ...}})"
            )

    @functools.cached_property
    def varied_fields(self) -> frozenset[str]:
        """The numeric fields whose value members set one by one (swept or searched)."""
        searched = self.search.ranges if self.search is not None else {}
        return frozenset([*self.sweep.numeric, *searched])

    @functools.cached_property
    def base_hparams(self) -> dict[str, float]:
        """The numeric hyperparameters members carry, as the config states them: every numeric
        field but the `constant_unless_swept` ones that are neither swept nor searched."""
        return {
            f.hparam: float(sweep_lib.field_value(self.config, f.field))
            for f in self.fields.values()
            if f.field in self.varied_fields or not f.constant_unless_swept
        }

    @functools.cached_property
    def removed_hparams(self) -> tuple[str, ...]:
        """Hyperparameters left out of the program: the family's `zero_removes` fields that are
        zero and neither swept nor searched."""
        return tuple(
            f.hparam
            for f in self.family.numeric_fields
            if f.zero_removes
            and f.field not in self.varied_fields
            and float(sweep_lib.field_value(self.config, f.field)) == 0
        )

    @functools.cached_property
    def member_values(self) -> dict[str, list[float]]:
        """Every value members give a numeric field, swept or searched (field -> values)."""
        values = {field: list(swept) for field, swept in self.sweep.numeric.items()}
        for point in self.search.points if self.search is not None else ():
            for field, value in point.items():
                values.setdefault(field, []).append(value)
        return values


def model_family(
    config: ml_collections.ConfigDict, components: Components
) -> family_lib.ModelFamily:
    """The user's model as a family, else the registered family of `model.name`; either way
    its Modules compute in `model.dtype` (`jaxnn.nn.precision`)."""
    head = tuple(config.model.head) or ("head",)
    if isinstance(components.model, UserModel):
        family = components.model.family(head=head)
    elif components.model is not None:
        try:
            family = family_lib.user_family(components.model, head=head)
        except TypeError as error:
            raise ConfigError(str(error)) from error
    else:
        family = registry.family(config.model.name)
    return precision.in_model_dtype(family)


def numeric_fields(
    config: ml_collections.ConfigDict,
    family: family_lib.ModelFamily,
    components: Components,
) -> dict[str, NumericField]:
    """Every field a member may vary: the optimiser's (all of them for a user's optimiser,
    which may read any), the weights' average's, the model family's and the augmentation's."""
    if components.optimizer is not None:
        optimizer_fields = tuple(optimizers.NUMERIC_FIELDS.values())
    else:
        optimizer_fields = optimizers.member_fields(config.optimizer)
    fields = (
        *optimizer_fields,
        *ema.NUMERIC_FIELDS,
        *family.numeric_fields,
        *augment.NUMERIC_FIELDS,
    )
    taken = {
        f.hparam: f.field for f in (*optimizer_fields, *ema.NUMERIC_FIELDS, *augment.NUMERIC_FIELDS)
    }
    for field in family.numeric_fields:
        if taken.get(field.hparam, field.field) != field.field:
            raise ConfigError(
                f"{field.field} is carried by members as {field.hparam!r}, which is "
                f"{taken.get(field.hparam)}'s name: give the model's field another name"
            )
    return {f.field: f for f in fields}
