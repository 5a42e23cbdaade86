"""What a run prints: its header (data, members, layer table) and its outcome lines."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

from jaxnn import data as data_lib
from jaxnn.core import ensemble
from jaxnn.io import workdir as workdir_lib
from jaxnn.nn.layer_table import format_layer_table


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
    print(format_layer_table(member_params, order=program.layer_order()), file=out)


def print_files(paths: workdir_lib.RunPaths, *, tensorboard: bool, out: TextIO) -> None:
    """The end of a run's block: where its files are and the command that shows it."""
    names = [
        str(path.relative_to(paths.root)) + ("/" if path.is_dir() else "")
        for path in (paths.report, paths.summary, paths.metrics, paths.plots, paths.best)
        if path.exists()
    ]
    print(f"files: {paths.root} ({', '.join(names)})", file=out)
    if tensorboard and paths.tensorboard.is_dir():
        print(f"tensorboard --logdir {paths.tensorboard}", file=out)


def print_complete(plan: workdir_lib.WorkdirPlan, out: TextIO) -> dict[str, Any]:
    """Says that the workdir holds the run, complete, with its outcome; returns its summary."""
    summary = plan.summary
    if summary is None:  # only a 'complete' plan carries the run's summary
        raise ValueError(f"a workdir plan to {plan.action} has no summary to print")
    print(
        f"workdir {plan.paths.root} already holds this run, complete at {summary['steps']} "
        "steps: nothing to do (ask for more training.steps to continue it, or pass "
        "--overwrite to start over)",
        file=out,
    )
    print_outcome(summary, out)
    return summary


def print_outcome(summary: Mapping[str, Any], out: TextIO) -> None:
    if summary["best_member"] is None:
        print(
            "every member diverged (a non-finite training loss) or exploded (a loss above "
            "restarts.explode_factor times its start): no member is selected and summary.json "
            "has best_member null; try a lower optimizer.learning_rate",
            file=out,
        )
        return
    best = ", ".join(f"{k}={v:.4f}" for k, v in summary["best"].items())
    print(f"selected member {summary['best_member']} by {summary['selected_by']}: {best}", file=out)
    if summary["ensemble"]:
        ensemble = ", ".join(f"{k}={v:.4f}" for k, v in summary["ensemble"].items())
        print(f"ensemble average: {ensemble}", file=out)
