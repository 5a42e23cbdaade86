"""Structural variants: one compiled program per variant, one run of all of them.

Each combination of the sweep's structural fields' values (`run_spec.RunSpec.variants`) is a
variant: an ordinary ensemble of the config with those values set and the numeric sweep alone,
from the same root key (paired comparisons). Global member indices are variant-major: member
`offset_v + i` is member i of variant v, `offset_v` the number of members of the variants before.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Unpack

import jax
import ml_collections
import numpy as np

from jaxnn import front_end, run_spec
from jaxnn.core import ensemble, loop
from jaxnn.data import Dataset
from jaxnn.errors import ConfigError
from jaxnn.nn.components import ComponentArgs, Components
from jaxnn.predict.predictor import Predictor, Predicts


@dataclasses.dataclass
class VariantRun:
    """One structural variant's trained ensemble and the global index of its first member."""

    variant: dict[str, Any]
    spec: run_spec.RunSpec
    result: ensemble.EnsembleResult
    offset: int

    @property
    def config(self) -> ml_collections.ConfigDict:
        return self.spec.config

    @property
    def global_indices(self) -> list[int]:
        return [self.offset + m.index for m in self.result.members]


class VariantRuns(list, Predicts):
    """What `fit_variants` returns: the VariantRuns in sweep order (a list), which predict as
    one run (selecting over every variant's members)."""

    config: ml_collections.ConfigDict  # the base config, without any variant's values

    def _make_predictor(self) -> Predictor:
        first = self[0].result
        diverged = np.concatenate([run.result.diverged for run in self])
        scores = np.concatenate([run.result.validation_scores() for run in self])
        select_by = first.config.restarts.select_by
        best = ensemble.select_best(
            {select_by: scores},
            diverged,
            select_by,
            greater_is_better=first.program.greater_is_better(select_by),
        )
        return Predictor(
            [run.result.member_group() for run in self],
            preprocessing=first.program.preprocessing,
            diverged=diverged,
            best_member=best,
            config=getattr(self, "config", first.config),
        )


def variant_specs(spec: run_spec.RunSpec) -> list[tuple[dict[str, Any], run_spec.RunSpec]]:
    """(variant values, its spec) for every structural variant; one `({}, spec)` for a plain run."""
    return [(dict(v), s) for v, s in spec.variants] if spec.structural else [({}, spec)]


@dataclasses.dataclass
class Variant:
    """One structural variant, built (checked against the data), with the global index of its
    first member."""

    values: dict[str, Any]
    spec: run_spec.RunSpec
    trainer: ensemble.Trainer
    offset: int

    @property
    def global_members(self) -> list[ensemble.Member]:
        """The members with their global indices (for logging; states keep local indices)."""
        return [dataclasses.replace(m, index=self.offset + m.index) for m in self.trainer.members]

    def train(self, data: Dataset, key: jax.Array, **options: Any) -> VariantRun:
        """Trains the variant's members (`ensemble.train_members`'s keyword options)."""
        result = ensemble.train_members(self.trainer, data, key, **options)
        return VariantRun(self.values, self.spec, result, self.offset)


def build_variants(
    spec: run_spec.RunSpec,
    data: Dataset,
    key: jax.Array,
    *,
    program_options: Callable[[run_spec.RunSpec], Mapping[str, Any]] | None = None,
) -> list[Variant]:
    """Every structural variant's trainer, in sweep order (one for a plain run), each built and
    checked against the data; `program_options(variant_spec)` gives a variant's keyword options
    of `ensemble.make_trainer`."""
    built, offset = [], 0
    for values, variant_spec in variant_specs(spec):
        options = {} if program_options is None else program_options(variant_spec)
        trainer = ensemble.make_trainer(variant_spec, data, key, **options)
        built.append(Variant(values, variant_spec, trainer, offset))
        offset += len(trainer.members)
    return built


def fit_variants(
    config: ml_collections.ConfigDict,
    data: Dataset,
    key: jax.Array,
    *,
    sweep: Any = None,
    on_eval: Callable[..., loop.EvalCallback | None] | None = None,
    **components: Unpack[ComponentArgs],
) -> VariantRuns:
    """Trains every structural variant, one compiled program each, variant after variant.

    Args:
      key: the root key (the same for every variant).
      sweep: the sweep in place of `config.restarts.sweep` (string, mapping or Sweep).
      on_eval: optional factory `on_eval(variant, spec, members_with_global_indices)` that
        returns the evaluation callback of that variant (or None).
      **components: the user's own parts (`jaxnn.nn.components.ComponentArgs`).

    Returns:
      One VariantRun per variant, in sweep order, as `VariantRuns` (a list that also predicts).
    """
    spec = front_end.resolve_call(config, data, key, Components.of(**components), sweep=sweep)
    runs = VariantRuns()
    runs.config = spec.config
    for variant in build_variants(spec, data, key):
        callback = None
        if on_eval is not None:
            callback = on_eval(variant.values, variant.spec, variant.global_members)
        runs.append(variant.train(data, key, on_eval=callback))
    return runs


def locate(runs: Sequence[VariantRun], index: int) -> tuple[VariantRun, int]:
    """The variant run holding global member `index`, and the member's local index."""
    for run in runs:
        if run.offset <= index < run.offset + len(run.result.members):
            return run, index - run.offset
    total = sum(len(r.result.members) for r in runs)
    raise ConfigError(f"member {index} does not exist; the run has members 0..{total - 1}")


def landscape_members(
    runs: Sequence[VariantRun], indices: Sequence[int]
) -> tuple[VariantRun, list[int]]:
    """The one variant run that holds all the given global members, and their local indices.

    Raises:
      ConfigError: the members belong to different structural variants.
    """
    located = [locate(runs, i) for i in indices]
    first = located[0][0]
    for index, (run, _) in zip(indices, located, strict=True):
        if run is not first:
            raise ConfigError(
                f"a loss landscape needs members of one structural variant; member {indices[0]} "
                f"is {describe(first.variant)} but member {index} is {describe(run.variant)}"
            )
    return first, [local for _, local in located]


def describe(variant: Mapping[str, Any]) -> str:
    """A variant as `field=value, ...` (the base config when empty)."""
    return ", ".join(f"{k}={v}" for k, v in variant.items()) or "the base config"
