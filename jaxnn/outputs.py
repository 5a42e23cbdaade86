"""What a run shows and leaves as it goes: metrics.jsonl rows, the progress bar, the header and
outcome lines it prints, and its final plots, report.md and summary.json."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from tqdm import tqdm

from jaxnn import data as data_lib
from jaxnn import ensemble, models, plots, report, train
from jaxnn import workdir as workdir_lib
from jaxnn.workdir import RunPaths


class Progress:
    """Writes metrics.jsonl and drives the progress bar after every evaluation."""

    def __init__(
        self,
        paths: RunPaths,
        program: train.Program,
        members: list[ensemble.Member],
        *,
        show: bool,
        start_step: int = 0,
    ):
        self._paths = paths
        self._indices = [m.index for m in members]
        self._metric = program.metric
        self._bar = tqdm(
            total=program.total_steps,
            initial=start_step,
            unit="step",
            disable=not show,
            dynamic_ncols=True,
        )
        self._done = start_step

    def __call__(self, evaluation: train.Evaluation) -> None:
        report.append_jsonl(
            self._paths.metrics,
            report.metrics_records(evaluation.step, evaluation.metrics, self._indices),
        )
        val_loss = evaluation.metrics["val_loss"]
        best = (
            int(np.nanargmin(np.where(np.isfinite(val_loss), val_loss, np.nan)))
            if np.isfinite(val_loss).any()
            else 0
        )
        self._bar.update(evaluation.step - self._done)
        self._done = evaluation.step
        self._bar.set_postfix(
            loss=f"{np.nanmean(evaluation.metrics['batch_loss']):.4f}",
            val_loss=f"{val_loss[best]:.4f}",
            **{f"val_{self._metric}": f"{evaluation.metrics[f'val_{self._metric}'][best]:.4f}"},
        )

    def close(self) -> None:
        self._bar.close()


def write_outputs(
    paths: RunPaths,
    summary: Mapping[str, Any],
    history: list[dict[str, np.ndarray]],
    dataset: data_lib.Dataset,
    predictions: np.ndarray,
) -> None:
    """The plots, report.md and, last (it marks the run finished), summary.json."""
    written = []
    if history:
        written.append(
            plots.validation_curves(history, summary["best_member"], paths.plots / "val_curves.png")
        )
    stats_block = summary["restart_stats"]
    if stats_block.get("num_finite", 0) > 1:
        losses = np.array([m["val_loss"] for m in summary["members"] if not m["diverged"]])
        written.append(plots.final_loss_histogram(losses, paths.plots / "val_loss_hist.png"))
        written.append(
            plots.expected_best_of_k(
                stats_block["expected_best_of_k"], paths.plots / "best_of_k.png"
            )
        )
    if dataset.task == "regression" and summary["best_member"] is not None:
        std = 1.0 if dataset.target_std is None else np.asarray(dataset.target_std)
        mean = 0.0 if dataset.target_mean is None else np.asarray(dataset.target_mean)
        written.append(
            plots.predictions_vs_targets(
                predictions[summary["best_member"]] * std + mean,
                dataset.y_test * std + mean,
                paths.plots / "predictions.png",
            )
        )
    relative = [str(Path(p).relative_to(paths.root)) for p in written]
    report.write_text_atomic(paths.report, report.report_markdown(summary, relative))
    report.write_json_atomic(paths.summary, summary)


def print_header(
    dataset: data_lib.Dataset, trainer: ensemble.Trainer, member_params: Any, out: TextIO
) -> None:
    program = trainer.program
    print(
        f"{dataset.name}: {dataset.task}, {dataset.num_train} train / {dataset.num_val} val / "
        f"{dataset.num_test} test; {len(trainer.members)} member(s), {program.total_steps} "
        f"steps of batch {program.batch_size}",
        file=out,
    )
    print(models.format_layer_table(member_params), file=out)


def print_complete(plan: workdir_lib.WorkdirPlan, out: TextIO) -> None:
    summary = plan.summary
    print(
        f"workdir {plan.paths.root} already holds this run, complete at {summary['steps']} "
        "steps: nothing to do (ask for more training.steps to continue it, or pass "
        "--overwrite to start over)",
        file=out,
    )
    print_outcome(summary, out)


def print_outcome(summary: Mapping[str, Any], out: TextIO) -> None:
    if summary["best_member"] is None:
        print(
            "every member diverged (a non-finite training loss): no member is selected and "
            "summary.json has best_member null; try a lower optimizer.learning_rate",
            file=out,
        )
        return
    best = ", ".join(f"{k}={v:.4f}" for k, v in summary["best"].items())
    print(f"selected member {summary['best_member']} by {summary['selected_by']}: {best}", file=out)
    if summary["ensemble"]:
        print(
            "ensemble average: "
            + ", ".join(f"{k}={v:.4f}" for k, v in summary["ensemble"].items()),
            file=out,
        )
