"""summary.json of a finished run: every member's metrics, the selection, the ensemble, restarts."""

from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

from jaxnn import data as data_lib
from jaxnn.analysis import restart_stats
from jaxnn.core import ensemble


def member_rows(
    result: ensemble.EnsembleResult,
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray]:
    """summary.json's member records, the diverged flags and the test predictions [M, N, O]."""
    state, program = result.state, result.program
    split_metrics = {}
    predictions = None
    for split, x, y in (
        ("train", dataset.x_train, dataset.y_train),
        ("val", dataset.x_val, dataset.y_val),
        ("test", dataset.x_test, dataset.y_test),
    ):
        metrics, split_predictions = ensemble.evaluate_members(state, program, x, y)
        split_metrics |= {f"{split}_{k}": v for k, v in metrics.items()}
        if split == "test":
            predictions = split_predictions
    diverged = np.asarray(jax.device_get(state.diverged))
    steps = np.asarray(jax.device_get(state.step))
    best_steps = np.asarray(jax.device_get(state.best_step))
    metric = program.metric
    wanted = ["train_loss", "val_loss", "test_loss", f"val_{metric}", f"test_{metric}"]
    if program.task == "regression":
        wanted.append("test_rmse")
    rows = []
    for member in result.members:
        i = member.index
        row: dict[str, Any] = {
            "index": i,
            "seed": member.seed_index,
            "hparams": dict(member.swept),
            "diverged": bool(diverged[i]),
            "final_step": int(steps[i]),
            "best_step": int(best_steps[i]),
        }
        row |= {name: float(split_metrics[name][i]) for name in wanted}
        rows.append(row)
    return rows, diverged, predictions


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


def summarize(
    result: ensemble.EnsembleResult,
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
) -> tuple[dict[str, Any], np.ndarray]:
    """summary.json of a finished ensemble, and the test predictions of every member."""
    rows, diverged, predictions = member_rows(result, config, dataset)
    program = result.program
    select_by = config.restarts.select_by
    by_metric = {select_by: np.array([row[select_by] for row in rows])}
    best = ensemble.select_best(by_metric, diverged, select_by)
    test_keys = [k for k in rows[0] if k.startswith("test_")]
    member_steps = int(sum(row["final_step"] for row in rows))
    summary: dict[str, Any] = {
        "dataset": dataset.summary(),
        "members": rows,
        "best_member": best,
        "selected_by": select_by,
        "best": {} if best is None else {k: rows[best][k] for k in test_keys},
        "ensemble": ensemble.ensemble_metrics(predictions, dataset.y_test, program, ~diverged),
        "restart_stats": restart_stats.restart_stats(
            np.array([row["val_loss"] for row, bad in zip(rows, diverged, strict=True) if not bad]),
            tolerance=float(config.restarts.tolerance),
        ),
        "num_diverged": int(diverged.sum()),
        "steps": program.total_steps,
        "timing": {
            "compile_s": result.compile_s,
            "train_s": result.train_s,
            "member_steps_per_s": member_steps / max(result.train_s, 1e-9),
        },
    }
    if dataset.task == "regression":
        summary["baselines"] = {"linear_least_squares": linear_baseline(dataset)}
    return summary, predictions
