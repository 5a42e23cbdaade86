"""Structural sweeps: one compiled program per structural variant, one run of all of them.

`restarts.sweep` may name fields that change the program (`sweep.STRUCTURAL_FIELDS`: the
activation, init, hidden widths, loss, optimiser name, batch size). Each combination of their
values is a *variant*; a variant is an ordinary ensemble run (`ensemble.fit_ensemble`) of the
config with those values set and only the numeric part of the sweep left, so it vmaps its
numeric variants and seeds in one program. Every variant starts from the same root key, so
random start s of every variant has the same member key (paired comparisons).

Global member indices are variant-major: member `offset_v + i` is member i of variant v, where
`offset_v` is the number of members of the variants before v. `merge_summaries` joins the
per-variant summaries into one whose `members` rows carry their `variant` dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnn.analysis import restart_stats
from jaxnn.config.sweep import parse_sweep, with_values
from jaxnn.core import ensemble, train
from jaxnn.data import Dataset
from jaxnn.errors import ConfigError


def numeric_sweep_spec(numeric: Mapping[str, Sequence[float]]) -> str:
    """The `restarts.sweep` string of the numeric fields only (values written exactly)."""
    return "; ".join(
        f"{field}=[{', '.join(repr(float(v)) for v in values)}]"
        for field, values in numeric.items()
    )


def variant_configs(
    config: ml_collections.ConfigDict,
) -> list[tuple[dict[str, Any], ml_collections.ConfigDict]]:
    """(variant, config of that variant) for every structural variant, in sweep order.

    A config without structural fields gives one variant `{}` whose config is a copy of
    `config`. The variant configs keep only the numeric part of the sweep, so no structural
    field reaches the numeric machinery.
    """
    sweep = parse_sweep(config.restarts.sweep, config)
    numeric_spec = numeric_sweep_spec(sweep.numeric)
    out = []
    for variant in sweep.structural_variants():
        values = {**variant, "restarts.sweep": numeric_spec}
        out.append((dict(variant), with_values(config, values)))
    return out


def has_structural(config: ml_collections.ConfigDict) -> bool:
    """Whether the sweep names any structural field (then a run has several programs)."""
    return bool(parse_sweep(config.restarts.sweep, config).structural)


@dataclasses.dataclass
class VariantRun:
    """One structural variant's trained ensemble and the global index of its first member."""

    variant: dict[str, Any]
    config: ml_collections.ConfigDict
    result: ensemble.EnsembleResult
    offset: int

    @property
    def global_indices(self) -> list[int]:
        return [self.offset + m.index for m in self.result.members]


def member_offsets(sizes: Sequence[int]) -> list[int]:
    """Global index of the first member of each variant (variant-major)."""
    return [int(x) for x in np.concatenate([[0], np.cumsum(sizes)[:-1]])] if sizes else []


def global_members(members: Sequence[ensemble.Member], offset: int) -> list[ensemble.Member]:
    """The members with their global indices (for logging; state arrays keep local indices)."""
    return [dataclasses.replace(m, index=offset + m.index) for m in members]


def fit_structural(
    config: ml_collections.ConfigDict,
    data: Dataset,
    key: jax.Array,
    *,
    on_eval: Any = None,
) -> list[VariantRun]:
    """Trains every structural variant, one compiled program each, variant after variant.

    Args:
      config: the run config (validated).
      data: the loaded data set.
      key: the root key (the same for every variant).
      on_eval: optional factory `on_eval(variant, config, members_with_global_indices)` that
        returns the evaluation callback of that variant (or None).

    Returns:
      One VariantRun per variant, in sweep order.
    """
    runs: list[VariantRun] = []
    offset = 0
    for variant, variant_config in variant_configs(config):
        callback = None
        if on_eval is not None:
            callback = on_eval(
                variant, variant_config, global_members(ensemble.members(variant_config), offset)
            )
        result = ensemble.fit_ensemble(variant_config, data, key, on_eval=callback)
        runs.append(VariantRun(variant, variant_config, result, offset))
        offset += len(result.members)
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
      ConfigError: the members belong to different structural variants (their weights do not
        live in one parameter space).
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


def merge_summaries(
    parts: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], np.ndarray]],
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    program: train.Program,
) -> tuple[dict[str, Any], np.ndarray]:
    """One summary of a structural run from the per-variant summaries.

    Args:
      parts: per variant, in order: (variant dict, its `run.summarize` summary, its test
        predictions [M_v, N, O]).
      config: the run config (for `restarts.select_by` and `restarts.tolerance`).
      dataset: the data set.
      program: any variant's program (for the task and target scale of the ensemble metrics).

    Returns:
      The merged summary (members renumbered variant-major, each with its `variant`; the best
      member selected over all variants; ensemble and restart statistics over all members;
      a `variants` list with each variant's own best member and restart statistics; timings
      summed) and the test predictions of all members [M, N, O].
    """
    rows: list[dict[str, Any]] = []
    variants = []
    offset = 0
    for variant, summary, _ in parts:
        local_best = summary["best_member"]
        for row in summary["members"]:
            rows.append({**row, "index": offset + row["index"], "variant": dict(variant)})
        variants.append(
            {
                "variant": dict(variant),
                "members": [offset, offset + len(summary["members"])],
                "best_member": None if local_best is None else offset + local_best,
                "best": summary["best"],
                "ensemble": summary["ensemble"],
                "restart_stats": summary["restart_stats"],
                "steps": summary.get("steps"),
            }
        )
        offset += len(summary["members"])
    predictions = np.concatenate([p for _, _, p in parts], axis=0)
    diverged = np.array([row["diverged"] for row in rows])
    select_by = config.restarts.select_by
    best = ensemble.select_best(
        {select_by: np.array([row[select_by] for row in rows], np.float64)}, diverged, select_by
    )
    test_keys = [k for k in rows[0] if k.startswith("test_")]
    first = parts[0][1]
    timing = {
        "compile_s": sum(s["timing"]["compile_s"] for _, s, _ in parts),
        "train_s": sum(s["timing"]["train_s"] for _, s, _ in parts),
    }
    member_steps = sum(row["final_step"] for row in rows)
    timing["member_steps_per_s"] = member_steps / max(timing["train_s"], 1e-9)
    merged: dict[str, Any] = {
        **{k: v for k, v in first.items() if k not in ("members", "timing")},
        "members": rows,
        "best_member": best,
        "selected_by": select_by,
        "best": {} if best is None else {k: rows[best][k] for k in test_keys},
        "ensemble": ensemble.ensemble_metrics(predictions, dataset.y_test, program, ~diverged),
        "restart_stats": restart_stats.restart_stats(
            np.array([r["val_loss"] for r in rows if not r["diverged"]]),
            tolerance=float(config.restarts.tolerance),
        ),
        "num_diverged": int(diverged.sum()),
        "variants": variants,
        "timing": timing,
    }
    return merged, predictions


def summarize_runs(
    runs: Sequence[VariantRun],
    config: ml_collections.ConfigDict,
    dataset: Dataset,
    summarize: Any,
) -> tuple[dict[str, Any], np.ndarray]:
    """The merged summary of a structural run and all members' test predictions.

    Args:
      runs: from `fit_structural`.
      config: the run config.
      dataset: the data set.
      summarize: `jaxnn.run.summarize` (result, config, dataset) -> (summary, predictions),
        applied to each variant with its own config.
    """
    parts = []
    for variant_run in runs:
        summary, predictions = summarize(variant_run.result, variant_run.config, dataset)
        parts.append((variant_run.variant, summary, predictions))
    return merge_summaries(parts, config, dataset, runs[0].result.program)
