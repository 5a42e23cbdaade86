"""What a finished run leaves: its plots, report.md and, last, summary.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from jaxnn import data as data_lib
from jaxnn.io import atomic
from jaxnn.io.workdir import RunPaths
from jaxnn.reporting import plots, tables
from jaxnn.reporting.summary import excluded


def write_outputs(
    paths: RunPaths,
    summary: Mapping[str, Any],
    history: list[dict[str, np.ndarray]],
    dataset: data_lib.Dataset,
    predictions: np.ndarray,
) -> None:
    """The plots, report.md and, last (it marks the run finished), summary.json."""
    written = []
    best, stats = summary["best_member"], summary["restart_stats"]
    if history:
        written.append(plots.validation_curves(history, best, paths.plots / "val_curves.png"))
    if stats.get("num_finite", 0) > 1:
        losses = np.array([m["val_loss"] for m in summary["members"] if not excluded(m)])
        written.append(plots.final_loss_histogram(losses, paths.plots / "val_loss_hist.png"))
        curve = stats["expected_best_of_k"]
        written.append(plots.expected_best_of_k(curve, paths.plots / "best_of_k.png"))
    if summary.get("search") and stats.get("num_finite", 0) > 0:
        written.append(plots.search_values(summary, paths.plots / "search.png"))
    if dataset.task == "regression" and best is not None:
        std = 1.0 if dataset.target_std is None else np.asarray(dataset.target_std)
        mean = 0.0 if dataset.target_mean is None else np.asarray(dataset.target_mean)
        written.append(
            plots.predictions_vs_targets(
                predictions[best] * std + mean,
                dataset.y_test * std + mean,
                paths.plots / "predictions.png",
            )
        )
    relative = [str(Path(p).relative_to(paths.root)) for p in written]
    atomic.write_text_atomic(paths.report, tables.report_markdown(summary, relative))
    atomic.write_json_atomic(paths.summary, summary)
