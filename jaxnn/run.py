"""run(config, workdir): what `launch.py` does, importable.

validate -> load data -> check against the data -> prepare the workdir -> train every member
in chunks (metrics.jsonl, progress bar) -> select by validation -> summary.json, plots, report.md.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import ml_collections
import numpy as np
from tqdm import tqdm

from jaxnn import config as config_lib
from jaxnn import data as data_lib
from jaxnn import ensemble, models, plots, report, stats, train
from jaxnn.errors import ConfigError

SUMMARY = "summary.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"


@dataclasses.dataclass
class RunPaths:
    """The files of a workdir (DESIGN.md, Workdir)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report(self) -> Path:
        return self.root / "report.md"


def check_workdir(workdir: str | Path, *, overwrite: bool) -> RunPaths:
    """Checks that the workdir can hold this run, without writing anything.

    Raises:
      ConfigError: no workdir given, a path that is a file, an unwritable parent, or a finished
        run that `overwrite` does not allow to replace.
    """
    if not str(workdir).strip():
        raise ConfigError("--workdir is required: the directory that receives the run's files")
    root = Path(workdir).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"workdir {root} exists and is not a directory")
    existing = root if root.exists() else next(p for p in root.parents if p.exists())
    if not existing.is_dir() or not _writable(existing):
        raise ConfigError(
            f"workdir {root} cannot be created or written (no write permission on {existing})"
        )
    paths = RunPaths(root)
    if paths.summary.exists() and not overwrite:
        raise ConfigError(
            f"workdir {root} already holds a finished run; choose another --workdir or pass --overwrite"
        )
    return paths


def _writable(path: Path) -> bool:
    import os

    return os.access(path, os.W_OK | os.X_OK)


def _prepare_workdir(
    paths: RunPaths, config: ml_collections.ConfigDict, *, overwrite: bool
) -> None:
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(f"workdir {paths.root} cannot be created: {error.strerror}") from None
    if overwrite:
        for stale in (paths.summary, paths.metrics, paths.report):
            stale.unlink(missing_ok=True)
    paths.plots.mkdir(exist_ok=True)
    report.write_text_atomic(paths.config, config.to_json(indent=2) + "\n")


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
        self, paths: RunPaths, program: train.Program, members: list[ensemble.Member], *, show: bool
    ):
        self._paths = paths
        self._indices = [m.index for m in members]
        self._metric = program.metric
        self._bar = tqdm(
            total=program.total_steps, unit="step", disable=not show, dynamic_ncols=True
        )
        self._done = 0

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
    result: ensemble.EnsembleResult,
    dataset: data_lib.Dataset,
    predictions: np.ndarray,
) -> None:
    written = []
    if result.history:
        written.append(
            plots.validation_curves(
                result.history, summary["best_member"], paths.plots / "val_curves.png"
            )
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

    Every user mistake raises a `jaxnn.errors.JaxnnError` before anything is written.
    """
    config_lib.validate(config)
    paths = check_workdir(workdir, overwrite=overwrite)
    dataset = data_lib.load(config.dataset)
    config_lib.check_against_task(config, dataset.task, dataset.num_train)
    key = jax.random.PRNGKey(config.seed)
    trainer_members = ensemble.members(config)

    _prepare_workdir(paths, config, overwrite=overwrite)
    probe_program, _, _ = train.build(config, dataset)
    params = jax.eval_shape(
        lambda: (
            train.init_state(
                probe_program,
                trainer_members[0].hparams(config),
                key,
                apply_fn=train.make_apply_fn(probe_program),
                make_tx=train.make_tx_factory(probe_program),
            ).params
        )
    )
    print(
        f"{dataset.name}: {dataset.task}, {dataset.num_train} train / {dataset.num_val} val / "
        f"{dataset.num_test} test; {len(trainer_members)} member(s), {probe_program.total_steps} steps "
        f"of batch {probe_program.batch_size}",
        file=out,
    )
    print(models.format_layer_table(params), file=out)

    tracker = Progress(paths, probe_program, trainer_members, show=progress)
    try:
        result = ensemble.fit_ensemble(config, dataset, key, on_eval=tracker)
    finally:
        tracker.close()
    summary, predictions = summarize(result, config, dataset)
    _write_outputs(paths, summary, result, dataset, predictions)
    print(report.ranking_table(summary, limit=40), file=out)
    _print_outcome(summary, out)
    return summary


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
