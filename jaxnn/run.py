"""run(config, workdir): what `launch.py` does, importable.

validate -> plan the workdir (new, resume, continue a finished run, overwrite) -> check the
pretrained run -> load data -> restore (resume) or read pretrained layers (transfer) -> only
then write: train every member in chunks (metrics.jsonl, progress bar, checkpoints) -> select
by validation -> export the best member, summary.json, plots, report.md.

Launching again with the same workdir continues from the latest readable checkpoint and ends
with the same weights and summary (timing aside) as a run that was never interrupted.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxnn import checkpoint, ensemble, models, plots, report, stats, train, transfer
from jaxnn import config as config_lib
from jaxnn import data as data_lib
from jaxnn import workdir as workdir_lib
from jaxnn.errors import ConfigError

# Re-exported: the workdir helpers lived here first.
SUMMARY, CONFIG, METRICS = workdir_lib.SUMMARY, workdir_lib.CONFIG, workdir_lib.METRICS
RunPaths = workdir_lib.RunPaths
check_workdir = workdir_lib.check_workdir


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
        "restart_stats": stats.restart_stats(
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


def _write_outputs(
    paths: RunPaths,
    summary: Mapping[str, Any],
    history: list[dict[str, np.ndarray]],
    dataset: data_lib.Dataset,
    predictions: np.ndarray,
) -> None:
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


def run(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    out: TextIO = sys.stdout,
) -> dict[str, Any]:
    """Runs the experiment `config` into `workdir` and returns its summary.

    A workdir holding an unfinished run of the same config (or a finished one, when more
    steps are asked for) is continued from its latest readable checkpoint. Every user mistake
    raises a `jaxnn.errors.JaxnnError` before anything is written.
    """
    config_lib.validate(config)
    plan = workdir_lib.plan_workdir(workdir, config, overwrite=overwrite)
    source = None
    if config.init_from.workdir and not _has_checkpoints(plan):
        source = transfer.check_source(config)
    dataset = data_lib.load(config.dataset)
    config_lib.check_against_task(config, dataset.task, dataset.num_train)
    key = jax.random.PRNGKey(config.seed)
    options = transfer.program_options(config.init_from)
    trainer = ensemble.make_trainer(config, dataset, key, **options)
    abstract = jax.eval_shape(
        trainer.init_fn,
        ensemble.stacked_hparams(config, trainer.members),
        ensemble.member_keys(key, trainer.members),
        None,
    )
    member_params = jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype), abstract.params
    )
    pretrained = None
    if source is not None:
        pretrained = transfer.load_pretrained(source, config, member_params)
    start_step, state, unreadable = _restore(plan, abstract, trainer.program, out)

    workdir_lib.prepare(plan, config, start_step)
    _print_header(dataset, trainer, member_params, out)
    if source is not None:
        print(f"starting from {source.describe()} ({config.init_from.mode})", file=out)
    writer = checkpoint.RunCheckpoints(plan.paths.checkpoints, keep=int(config.checkpoint.keep))
    writer.discard(unreadable)
    saver = checkpoint.Saver(
        writer, every_steps=config.checkpoint.every_steps, start_step=start_step
    )
    tracker = Progress(
        plan.paths, trainer.program, trainer.members, show=progress, start_step=start_step
    )

    def on_eval(evaluation: train.Evaluation) -> None:
        # metrics.jsonl first: a run killed between the two writes leaves rows past its
        # checkpoint, which the resume drops, never a checkpoint without its rows.
        tracker(evaluation)
        saver(evaluation)

    try:
        if _needs_training(state, start_step, trainer.program):
            result = ensemble.fit_ensemble(
                config,
                dataset,
                key,
                on_eval=on_eval,
                state=state,
                start_step=start_step,
                pretrained=pretrained,
                **options,
            )
        else:
            result = ensemble.EnsembleResult(
                state=state,
                program=trainer.program,
                members=trainer.members,
                history=[],
                steps_done=start_step,
                compile_s=0.0,
                train_s=0.0,
            )
        saver.finish(result.state, result.steps_done)
    finally:
        tracker.close()
        writer.close()
    summary, predictions = summarize(result, config, dataset)
    _export_best(plan.paths, summary, result, config)
    history = workdir_lib.history_from_metrics(
        plan.paths.metrics, [m.index for m in trainer.members]
    )
    _write_outputs(plan.paths, summary, history, dataset, predictions)
    print(report.ranking_table(summary, limit=40), file=out)
    _print_outcome(summary, out)
    return summary


def _restore(
    plan: workdir_lib.WorkdirPlan, abstract: train.TrainState, program: train.Program, out: TextIO
) -> tuple[int, train.TrainState | None, list[int]]:
    """The step and state a launch starts from, and the unreadable checkpoints it skipped."""
    if not plan.restores or not plan.paths.checkpoints.is_dir():
        return 0, None, []
    reader = checkpoint.RunCheckpoints(plan.paths.checkpoints, read_only=True)
    try:
        found = reader.restore_latest(abstract, report=lambda line: print(line, file=out))
    finally:
        reader.close()
    if found is None:
        return 0, None, []
    step, state, unreadable = found
    if step > program.total_steps:
        raise ConfigError(
            f"training asks for {program.total_steps} steps but the checkpoint in "
            f"{plan.paths.checkpoints} is already at step {step}; ask for at least {step}"
        )
    print(f"resuming from checkpoint {reader.step_dir(step)} (step {step})", file=out)
    return step, state, unreadable


def _has_checkpoints(plan: workdir_lib.WorkdirPlan) -> bool:
    """Whether the launch continues from a checkpoint (then a transfer source is not read)."""
    if not plan.restores or not plan.paths.checkpoints.is_dir():
        return False
    reader = checkpoint.RunCheckpoints(plan.paths.checkpoints, read_only=True)
    try:
        return bool(reader.steps())
    finally:
        reader.close()


def _needs_training(
    state: train.TrainState | None, start_step: int, program: train.Program
) -> bool:
    if state is None:
        return True
    finished = np.asarray(jax.device_get(state.stopped | state.diverged))
    return start_step < program.total_steps and not finished.all()


def _export_best(
    paths: RunPaths,
    summary: Mapping[str, Any],
    result: ensemble.EnsembleResult,
    config: ml_collections.ConfigDict,
) -> None:
    """DIR/best: the selected member as a single-model checkpoint (none if every member diverged)."""
    if summary["best_member"] is None:
        shutil.rmtree(paths.best, ignore_errors=True)
        return
    checkpoint.export_member(
        paths.best, result.state, summary["best_member"], config, step=result.steps_done
    )


def _print_header(
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


def _print_outcome(summary: Mapping[str, Any], out: TextIO) -> None:
    if summary["best_member"] is None:
        print("every member diverged: no member was selected (see summary.json)", file=out)
        return
    best = ", ".join(f"{k}={v:.4f}" for k, v in summary["best"].items())
    print(f"selected member {summary['best_member']} by {summary['selected_by']}: {best}", file=out)
    if summary["ensemble"]:
        print(
            "ensemble average: "
            + ", ".join(f"{k}={v:.4f}" for k, v in summary["ensemble"].items()),
            file=out,
        )
    json.dumps(summary["timing"])
