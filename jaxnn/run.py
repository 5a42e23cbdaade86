"""run(config, workdir): what `launch.py` does, importable.

validate -> lock the workdir -> plan it (new, resume, continue a finished run, nothing to do
for a complete one, overwrite) -> check the pretrained run -> load data -> restore (resume) or
read pretrained layers (transfer) -> only then write: train every member in chunks
(metrics.jsonl, progress bar, checkpoints) -> select by validation -> export the best member,
summary.json, plots, report.md.

Launching again with the same workdir continues from the latest readable checkpoint and ends
with the same weights, metrics.jsonl and summary (timing aside) as a run that was never
interrupted, whenever the previous launch was killed. While a launch runs, its workdir is
locked (`jaxnn.lock`); a full or read-only disk ends the launch with one line, its checkpoints
intact.

In a multi-host run every process runs this function; process 0 alone writes files and prints
(`sharding.is_writer`), while checkpoint saves and the export of the best member are
collective (every process takes part).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnn import data as data_lib
from jaxnn import validation
from jaxnn.analysis import diagnostics
from jaxnn.core import ensemble, train, variants
from jaxnn.errors import ConfigError, JaxnnError, WorkdirError
from jaxnn.io import checkpoint, export, orbax_io, transfer
from jaxnn.io import lock as lock_lib
from jaxnn.io import workdir as workdir_lib
from jaxnn.nn import models
from jaxnn.parallel import sharding
from jaxnn.reporting import console, metrics_log, results, tables
from jaxnn.reporting.summary import linear_baseline, member_rows, summarize

# Re-exported: these lived here first.
SUMMARY, CONFIG, METRICS = workdir_lib.SUMMARY, workdir_lib.CONFIG, workdir_lib.METRICS
RunPaths = workdir_lib.RunPaths
check_workdir = workdir_lib.check_workdir
Progress = metrics_log.Progress
__all__ = ["Progress", "linear_baseline", "member_rows", "run", "summarize"]


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
    steps are asked for) is continued from its latest readable checkpoint; a finished run
    asked for no more steps is reported and left as it is. Every user mistake raises a
    `jaxnn.errors.JaxnnError` before anything is written; so does a workdir that another live
    launch holds. A disk that fails later raises `WorkdirError`, the checkpoints intact.
    """
    validation.validate(config)
    writer = sharding.is_writer()
    with contextlib.ExitStack() as stack:
        if not writer:
            out = stack.enter_context(open(os.devnull, "w"))
        paths = workdir_lib.check_workdir(workdir)
        lock = stack.enter_context(lock_lib.WorkdirLock(paths.root, enabled=writer))
        _on_writer(lock.acquire_if_exists)
        if lock.describe_stale():
            print(lock.describe_stale(), file=out)
        plan = workdir_lib.plan_workdir(paths.root, config, overwrite=overwrite)
        if plan.action == "complete":
            console.print_complete(plan, out)
            return plan.summary
        return _run_planned(plan, lock, config, progress=progress and writer, out=out)


def _run_planned(
    plan: workdir_lib.WorkdirPlan,
    lock: lock_lib.WorkdirLock,
    config: ml_collections.ConfigDict,
    *,
    progress: bool,
    out: TextIO,
) -> dict[str, Any]:
    writer = sharding.is_writer()
    source = None
    if config.init_from.workdir and not _has_checkpoints(plan):
        source = transfer.check_source(config)
    dataset = data_lib.load(config.dataset)
    validation.check_against_task(config, dataset.task, dataset.num_train)
    key = jax.random.PRNGKey(config.seed)
    if variants.has_structural(config):
        return _run_structural(plan, lock, config, dataset, key, progress=progress, out=out)
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

    # Every check has passed: from here on the launch writes.
    _on_writer(lambda: _prepare(plan, lock, config, start_step, out))
    _sync("jaxnn_prepare")  # the workdir exists before any process opens its checkpoints
    console.print_header(dataset, trainer, member_params, out)
    if source is not None:
        print(f"starting from {source.describe()} ({config.init_from.mode})", file=out)
    checkpoints = checkpoint.RunCheckpoints(
        plan.paths.checkpoints, keep=int(config.checkpoint.keep)
    )
    checkpoints.discard(unreadable)
    saver = checkpoint.Saver(
        checkpoints, every_steps=config.checkpoint.every_steps, start_step=start_step
    )
    tracker = metrics_log.Progress(
        plan.paths, trainer.program, trainer.members, show=progress, start_step=start_step
    )
    monitor = _diagnostics_monitor(config, plan.paths, dataset, trainer.program, trainer.members)

    def on_eval(evaluation: train.Evaluation) -> None:
        # metrics.jsonl first: a run killed between the two writes leaves rows past its
        # checkpoint, which the resume drops, never a checkpoint without its rows.
        if writer:
            with workdir_lib.writing("metrics", plan.paths.metrics):
                tracker(evaluation)
                if monitor is not None:
                    monitor(evaluation)
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
        checkpoints.close()
    summary, predictions = summarize(result, config, dataset)
    _export_best(plan.paths, summary, result, config)
    if writer:
        history = workdir_lib.history_from_metrics(
            plan.paths.metrics, [m.index for m in trainer.members]
        )
        with workdir_lib.writing("the run's results in", plan.paths.root):
            results.write_outputs(plan.paths, summary, history, dataset, predictions)
    print(tables.ranking_table(summary, limit=40), file=out)
    console.print_outcome(summary, out)
    return summary


def _on_writer(action: Callable[[], None]) -> None:
    """Runs `action` on the process that writes files; every process learns if it failed."""
    failure = None
    if sharding.is_writer():
        try:
            action()
        except JaxnnError as error:
            failure = error
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        succeeded = multihost_utils.broadcast_one_to_all(np.int32(failure is None))
        if failure is None and not int(succeeded):
            raise WorkdirError("process 0 could not use the workdir; its message says why")
    if failure is not None:
        raise failure


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _prepare(
    plan: workdir_lib.WorkdirPlan,
    lock: lock_lib.WorkdirLock,
    config: ml_collections.ConfigDict,
    start_step: int,
    out: TextIO,
) -> None:
    """Locks (a new workdir) and writes the first files: the point from which a launch writes."""
    lock.hold()
    for leftover in plan.paths.leftovers():
        print(f"removing {leftover.name}: a write that a stopped launch never finished", file=out)
    workdir_lib.prepare(plan, config, start_step)


def _restore(
    plan: workdir_lib.WorkdirPlan, abstract: train.TrainState, program: train.Program, out: TextIO
) -> tuple[int, train.TrainState | None, list[int]]:
    """The step and state a launch starts from, and the unreadable checkpoints it skipped."""
    if not plan.restores or not plan.paths.checkpoints.is_dir():
        return 0, None, []
    for unfinished in checkpoint.unfinished_saves(plan.paths.checkpoints):
        print(
            f"ignoring {unfinished}: a checkpoint save that a stopped launch never finished "
            "(it is removed)",
            file=out,
        )
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
    try:
        if summary["best_member"] is None:
            if sharding.is_writer():
                shutil.rmtree(paths.best, ignore_errors=True)
            return
        export.export_member(
            paths.best, result.state, summary["best_member"], config, step=result.steps_done
        )
    except Exception as error:
        if not orbax_io.is_storage_error(error):
            raise
        raise WorkdirError(
            f"cannot write the selected member to {paths.best} ({orbax_io.one_line(error)}); "
            "the run's checkpoints are intact: free space or fix permissions, then launch "
            "again to finish"
        ) from error


def _diagnostics_monitor(
    config: ml_collections.ConfigDict,
    paths: RunPaths,
    dataset: data_lib.Dataset,
    program: train.Program,
    members: list[ensemble.Member],
) -> diagnostics.Monitor | None:
    """The DIR/diagnostics.jsonl writer when `diagnostics.enabled` (None otherwise)."""
    if not config.diagnostics.enabled:
        return None
    return diagnostics.Monitor(
        paths.root / diagnostics.DIAGNOSTICS_FILE,
        train.device_data(dataset),
        program,
        [m.index for m in members],
    )


def _run_structural(
    plan: workdir_lib.WorkdirPlan,
    lock: lock_lib.WorkdirLock,
    config: ml_collections.ConfigDict,
    dataset: data_lib.Dataset,
    key: jax.Array,
    *,
    progress: bool,
    out: TextIO,
) -> dict[str, Any]:
    """A sweep over structural fields: one compiled program per variant, one workdir.

    Structural runs keep no checkpoints yet: a relaunch trains every variant again.
    """
    writer = sharding.is_writer()
    _on_writer(lambda: _prepare(plan, lock, config, 0, out))
    _sync("jaxnn_prepare")
    trackers: list[metrics_log.Progress] = []

    def callback(variant, variant_config, members):
        program = train.make_program(variant_config, dataset)
        print(f"variant {variants.describe(variant)}: {len(members)} member(s)", file=out)
        print(_layer_table(program, variant_config, key), file=out)
        tracker = metrics_log.Progress(plan.paths, program, members, show=progress)
        trackers.append(tracker)
        monitor = _diagnostics_monitor(config, plan.paths, dataset, program, members)

        def on_eval(evaluation: train.Evaluation) -> None:
            if writer:
                with workdir_lib.writing("metrics", plan.paths.metrics):
                    tracker(evaluation)
                    if monitor is not None:
                        monitor(evaluation)

        return on_eval

    try:
        runs = variants.fit_structural(config, dataset, key, on_eval=callback)
    finally:
        for tracker in trackers:
            tracker.close()
    summary, predictions = variants.summarize_runs(runs, config, dataset, summarize)
    if summary["best_member"] is None:
        _export_best(plan.paths, summary, runs[0].result, runs[0].config)
    else:
        best_run, local = variants.locate(runs, summary["best_member"])
        _export_best(
            plan.paths, {**summary, "best_member": local}, best_run.result, best_run.config
        )
    if writer:
        indices = [i for variant_run in runs for i in variant_run.global_indices]
        history = workdir_lib.history_from_metrics(plan.paths.metrics, indices)
        with workdir_lib.writing("the run's results in", plan.paths.root):
            results.write_outputs(plan.paths, summary, history, dataset, predictions)
    print(tables.ranking_table(summary, limit=40), file=out)
    console.print_outcome(summary, out)
    return summary


def _layer_table(program: train.Program, config: ml_collections.ConfigDict, key: jax.Array) -> str:
    """The parameter table of a program's model (shapes only: nothing is computed)."""
    model = train.model_for(program, train.base_hparams(config))
    dummy = jax.ShapeDtypeStruct((1, *program.feature_shape), jnp.float32)
    params = jax.eval_shape(lambda x: model.init(key, x)["params"], dummy)
    return models.format_layer_table(params)
