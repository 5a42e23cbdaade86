"""summary.json of a finished run: every member's metrics, the selection, the ensemble, restarts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnn import data as data_lib
from jaxnn.analysis import restart_stats
from jaxnn.core import ensemble, explosion
from jaxnn.core.program import Program
from jaxnn.core.schedules import halving
from jaxnn.core.variants import VariantRun


def member_rows(
    result: ensemble.EnsembleResult,
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
    start_losses: np.ndarray | None = None,
    pruned: np.ndarray | None = None,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """summary.json's member records, the excluded flags (diverged or exploded) and the test
    predictions [M, N, O]. `start_losses` (float [M], `jaxnn.core.explosion.start_losses`) let
    each row say whether it exploded; `pruned` (bool [M], `halving.pruned_at_rungs`) fills its
    `pruned`."""
    state, program = result.state, result.program
    split_metrics: dict[str, np.ndarray] = {}
    # The loop ends on the test split, so `predictions` are the test predictions [M, N, O].
    for split in ("train", "val", "test"):
        x, y = getattr(dataset, f"x_{split}"), getattr(dataset, f"y_{split}")
        metrics, predictions = ensemble.evaluate_members(
            state, program, x, y, group_size=result.group_size
        )
        split_metrics |= {f"{split}_{k}": v for k, v in metrics.items()}
    diverged = np.asarray(jax.device_get(state.diverged))
    exploded = np.zeros_like(diverged)
    if start_losses is not None:
        last = explosion.last_losses(state, program, dataset, group_size=result.group_size)
        exploded = explosion.exploded(start_losses, last, float(config.restarts.explode_factor))
        exploded &= ~diverged
    steps = np.asarray(jax.device_get(state.step))
    best_steps = np.asarray(jax.device_get(state.best_step))
    wanted = ["train_loss", "val_loss", "test_loss"]
    wanted += [f"{split}_{name}" for name in program.metric_names for split in ("val", "test")]
    rows = []
    for member in result.members:
        i = member.index
        row: dict[str, Any] = {
            "index": i,
            "seed": member.seed_index,
            "hparams": dict(member.swept),
            "diverged": bool(diverged[i]),
            "exploded": bool(exploded[i]),
            "final_step": int(steps[i]),
            "best_step": int(best_steps[i]),
        }
        row |= {name: float(split_metrics[name][i]) for name in wanted}
        if start_losses is not None:
            row["start_train_loss"] = float(start_losses[i])
        if pruned is not None:
            row["pruned"] = bool(pruned[i])
        rows.append(row)
    return rows, diverged | exploded, predictions


def linear_baseline(dataset: data_lib.Dataset) -> dict[str, float]:
    """Test R2 and RMSE of linear least squares on the same split (the regression yardstick)."""
    from sklearn.linear_model import LinearRegression
    from sklearn.metrics import mean_squared_error, r2_score

    fit = LinearRegression().fit(dataset.x_train.reshape(dataset.num_train, -1), dataset.y_train)
    predictions = fit.predict(dataset.x_test.reshape(dataset.num_test, -1))
    std = 1.0 if dataset.target_std is None else np.asarray(dataset.target_std)
    return {
        "test_r2": float(r2_score(dataset.y_test, predictions)),
        "test_rmse": float(np.sqrt(mean_squared_error(dataset.y_test * std, predictions * std))),
    }


def in_ensemble(row: Mapping[str, Any]) -> bool:
    """Whether a member row is averaged into the ensemble: neither excluded nor pruned at a
    rung (a pruned member keeps its results and its place in the ranking, but it trained a
    fraction of the budget and lost to the members that went on)."""
    return not excluded(row) and not row.get("pruned", False)


def excluded(row: Mapping[str, Any]) -> bool:
    """Whether a member row is left out of selection, the ensemble and the restart statistics
    (diverged, or exploded: `jaxnn.core.explosion`)."""
    return bool(row["diverged"] or row.get("exploded", False))


def selection(
    rows: Sequence[Mapping[str, Any]],
    excluded_members: np.ndarray,
    predictions: np.ndarray,
    dataset: data_lib.Dataset,
    program: Program,
    config: ml_collections.ConfigDict,
) -> dict[str, Any]:
    """summary.json's selection: the best member by `restarts.select_by`, its test metrics and
    the restart statistics over the members not `excluded_members` (bool [M]); the ensemble
    average over those `in_ensemble` keeps (`ensemble_members`, what the predictor averages)."""
    select_by = config.restarts.select_by
    greater = program.greater_is_better(select_by)
    values = {select_by: np.array([row[select_by] for row in rows], np.float64)}
    best = ensemble.select_best(values, excluded_members, select_by, greater_is_better=greater)
    test_keys = [k for k in rows[0] if k.startswith("test_")]
    kept_losses = [
        row["val_loss"] for row, bad in zip(rows, excluded_members, strict=True) if not bad
    ]
    averaged = np.array([in_ensemble(row) for row in rows])
    return {
        "best_member": best,
        "selected_by": select_by,
        "selection_greater_is_better": greater,
        "best": {} if best is None else {k: rows[best][k] for k in test_keys},
        "ensemble": ensemble.ensemble_metrics(predictions, dataset.y_test, program, averaged),
        "ensemble_members": [int(i) for i in np.flatnonzero(averaged)],
        "restart_stats": restart_stats.restart_stats(
            np.array(kept_losses), tolerance=float(config.restarts.tolerance)
        ),
        "num_diverged": sum(bool(row["diverged"]) for row in rows),
        "num_exploded": sum(bool(row.get("exploded", False)) for row in rows),
        **({"num_pruned": sum(row["pruned"] for row in rows)} if "pruned" in rows[0] else {}),
    }


def timing(
    compile_s: float, train_s: float, wall_s: float, member_steps: int
) -> dict[str, float | int]:
    """summary.json's `timing` (docs/search.md): `member_steps` (steps run x members, a member
    stopped early included) per second of `wall_s` (the loop after compiling, host work between
    chunks included: the progress line's figure) and of `train_s` (the chunk programs alone)."""
    return {
        "compile_s": compile_s,
        "train_s": train_s,
        "wall_s": wall_s,
        "member_steps": int(member_steps),
        "member_steps_per_s": member_steps / max(wall_s, 1e-9),
        "device_member_steps_per_s": member_steps / max(train_s, 1e-9),
    }


def summarize(
    result: ensemble.EnsembleResult,
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
    start_losses: np.ndarray | None = None,
    pruned: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """summary.json of a finished ensemble, and the test predictions of every member
    (`start_losses`, `pruned`: see `member_rows`; a scheduled run's `pruned` defaults to its
    launch's decisions, all of them for a run trained in one launch)."""
    if pruned is None and result.schedule is not None:
        pruned = halving.pruned_at_rungs(len(result.members), result.schedule["events"])
    rows, left_out, predictions = member_rows(result, config, dataset, start_losses, pruned)
    program = result.program
    member_steps = result.member_steps
    if member_steps is None:
        member_steps = (result.steps_done - result.start_step) * len(rows)
    summary: dict[str, Any] = {
        "dataset": dataset.summary(),
        "members": rows,
        **selection(rows, left_out, predictions, dataset, program, config),
        "steps": program.total_steps,
        "timing": {
            **timing(result.compile_s, result.train_s, result.wall_s, member_steps),
            # Members each device ran at once (jaxnn.core.groups; 0: all of them).
            "member_group": result.group_size,
        },
    }
    if result.memory is not None:
        # The estimate the run was checked against (jaxnn.core.memory) and XLA's account.
        summary["timing"]["memory"] = {
            **result.memory.to_json(),
            "xla_program_bytes": result.program_bytes,
        }
    if dataset.task == "regression":
        summary["baselines"] = {"linear_least_squares": linear_baseline(dataset)}
    return summary, predictions


def merge_summaries(
    parts: Sequence[tuple[Mapping[str, Any], Mapping[str, Any], np.ndarray]],
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
    program: Program,
) -> tuple[dict[str, Any], np.ndarray]:
    """One summary of a structural run from `parts` (per variant: its values, its `summarize`
    summary, its test predictions [M_v, N, O]), and all test predictions [M, N, O]: members
    renumbered variant-major, selection, ensemble and restart statistics over all of them, each
    variant's own in `variants`, timings summed. `program`: any variant's (task, target scale)."""
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
    left_out = np.array([excluded(row) for row in rows])
    first = parts[0][1]
    summed = ("compile_s", "train_s", "wall_s", "member_steps")
    merged_timing: dict[str, Any] = {
        **timing(**{k: sum(s["timing"][k] for _, s, _ in parts) for k in summed}),
        "member_group": max(s["timing"].get("member_group", 0) for _, s, _ in parts),
    }
    if "memory" in first["timing"]:
        merged_timing["memory"] = first["timing"]["memory"]
    merged: dict[str, Any] = {
        **{k: v for k, v in first.items() if k not in ("members", "timing")},
        "members": rows,
        **selection(rows, left_out, predictions, dataset, program, config),
        "variants": variants,
        "timing": merged_timing,
    }
    return merged, predictions


def summarize_runs(
    runs: Sequence[VariantRun],
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
    start_losses: Sequence[np.ndarray] | None = None,
    decisions: Sequence[Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """The summary of `runs` (`jaxnn.core.variants.fit_variants`; a plain run is one variant,
    `{}`) and every member's test predictions; a search's method and ranges are its `search`.

    Args:
      start_losses: per run, its members' training losses at initialisation (None: no
        exploded rule).
      decisions: every decision of a member schedule (DIR/schedule.jsonl, global member
        indices, earlier launches too); None: each result's own.
    """
    parts = []
    for index, run in enumerate(runs):
        result, pruned = run.result, None
        if decisions is not None and result.schedule is not None:
            pruned = halving.pruned_at_rungs(len(result.members), decisions, run.offset)
        starts = None if start_losses is None else start_losses[index]
        summary, predictions = summarize(result, run.config, dataset, starts, pruned)
        parts.append((run.variant, summary, predictions))
    summary, predictions = merge_summaries(parts, config, dataset, runs[0].result.program)
    search = runs[0].spec.search
    if search is not None:
        summary["search"] = search.describe()
    return summary, predictions
