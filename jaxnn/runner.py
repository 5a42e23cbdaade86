"""`run(config, workdir)`: what `launch.py` does, importable. Phases: plan (`jaxnn.front_end`
checks the config; the workdir is locked and planned), build (the data loaded, each structural
variant's trainer built and checked on its shapes), restore (latest readable checkpoints, or
pretrained layers), train (only now are files written: `jaxnn.io.run_files`) and finish (the
best member selected and exported; summary.json last). A relaunch continues from each variant's
latest readable checkpoint and ends as an uninterrupted run would. In a multi-host run every
process runs `run`; process 0 alone writes files (`sharding.is_writer`), while checkpoint saves
and the export are collective.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO, Unpack

import jax
import ml_collections
import numpy as np

from jaxnn import data as data_lib
from jaxnn import front_end, interrupt
from jaxnn.analysis import diagnostics
from jaxnn.core import compile_cache, ensemble, explosion, schedules, train, variants
from jaxnn.core.loop import Evaluation
from jaxnn.data import fingerprint as fingerprint_lib
from jaxnn.data.device import device_data
from jaxnn.errors import ConfigError, JaxnnError, WorkdirError
from jaxnn.io import atomic, checkpoint, export, orbax_io, run_files, run_readers, transfer
from jaxnn.io import lock as lock_lib
from jaxnn.io import workdir as workdir_lib
from jaxnn.io.workdir import RunPaths
from jaxnn.nn.components import ComponentArgs, Components
from jaxnn.nn.layer_table import format_layer_table
from jaxnn.parallel import cpu_devices, sharding
from jaxnn.predict.predictor import Predictor, Predicts
from jaxnn.reporting import (
    console,
    frames,
    metrics_log,
    results,
    schedule_report,
    tables,
    tensorboard,
)
from jaxnn.reporting.summary import summarize_runs
from jaxnn.run_spec import RunSpec

RANKED_AT_THE_END = 10  # members in the ranking a launch prints (every one is in report.md)


def run(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    *,
    overwrite: bool = False,
    progress: bool = True,
    out: TextIO = sys.stdout,
    sweep: Any = None,
    data: data_lib.Dataset | None = None,
    **components: Unpack[ComponentArgs],
) -> RunResult:
    """Runs the experiment `config` (not changed) into `workdir`; returns its summary as a
    `RunResult` (the summary dict, which also predicts: `predictor()`, `predict`, `score`, ...).

    An unfinished run of the same config in `workdir` (or a finished one asked for more steps)
    is continued from its latest readable checkpoints; a finished one is reported and left as it
    is. Every user mistake, and a workdir that another live launch holds, raises a `JaxnnError`
    before anything is written; a disk that fails later raises `WorkdirError`, the checkpoints
    intact. SIGTERM or SIGINT stops the run at the next chunk boundary with a checkpoint and
    raises `jaxnn.errors.Interrupted`; launching again resumes it.

    Args:
      out: where the header, tables and outcome are printed.
      sweep: a sweep given from Python (string, mapping field -> values, or Sweep) in place of
        `config.restarts.sweep`.
      data: the user's own data set (`jaxnn.from_arrays`) in place of `config.dataset`, recorded
        as `dataset.name=arrays:<its name>` with its fingerprint; a relaunch must pass the same
        arrays.
      **components: the user's own parts (`jaxnn.nn.components.Components`); a relaunch passes
        them again.
    """
    given = _given_data(data)
    if given is not None:
        config = _config_of_arrays(config, given)
    spec = front_end.resolve(config, Components.of(**components), sweep=sweep)
    writer = sharding.is_writer()
    if writer:
        cpu_devices.hint_all_cores(os.environ)
    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(interrupt.stop_at_chunk_boundaries())
        if not writer:
            out = stack.enter_context(open(os.devnull, "w"))
        paths = workdir_lib.check_workdir(workdir)
        lock = stack.enter_context(lock_lib.WorkdirLock(paths.root, enabled=writer))
        plan = _plan(paths, lock, spec, given, overwrite=overwrite, out=out)
        if plan.action == "complete":
            return RunResult(console.print_complete(plan, out), paths.root, components)
        summary = _run_planned(
            plan, lock, spec, stop, given=given, progress=progress and writer, out=out
        )
        return RunResult(summary, paths.root, components)


def _plan(
    paths: RunPaths,
    lock: lock_lib.WorkdirLock,
    spec: RunSpec,
    given: data_lib.Dataset | None,
    *,
    overwrite: bool,
    out: TextIO,
) -> workdir_lib.WorkdirPlan:
    """What to do with the workdir (no live launch holds it), the data checked against it."""
    _on_writer(lock.acquire_if_exists)
    if lock.describe_stale():
        print(lock.describe_stale(), file=out)
    plan = workdir_lib.plan_workdir(paths.root, spec.config, overwrite=overwrite)
    if given is not None:
        workdir_lib.check_data(plan, fingerprint_lib.fingerprint(given))
    elif plan.action == "complete" and data_lib.is_file_name(spec.config.dataset.name):
        # A file is cheap to read again: a finished run is not reported on edited data.
        workdir_lib.check_data(
            plan, fingerprint_lib.fingerprint(data_lib.load(spec.config.dataset))
        )
    return plan


class RunResult(dict, Predicts):
    """The summary of a run (a dict, as summary.json) that also predicts: `predictor()` is
    `jaxnn.predict.load.load_predictor` of its workdir (every member; "best" the selected)."""

    def __init__(self, summary: Mapping[str, Any], workdir: Path, components: Mapping[str, Any]):
        super().__init__(summary)
        self.workdir = Path(workdir)
        self._components = {
            k: v for k, v in components.items() if k in ("model", "loss", "metrics", "predict")
        }

    def _make_predictor(self) -> Predictor:
        from jaxnn.predict.load import load_predictor

        return load_predictor(self.workdir, **self._components)

    def history_frame(self) -> Any:
        """Every evaluation as a pandas DataFrame (`jaxnn.reporting.frames.history_frame`)."""
        return frames.history_frame(self.workdir)


def _given_data(data: Any) -> data_lib.Dataset | None:
    if data is None or isinstance(data, data_lib.Dataset):
        return data
    raise ConfigError(
        f"data must be a jaxnn Dataset (jaxnn.from_arrays(...)), got {type(data).__name__}"
    )


def _config_of_arrays(
    config: ml_collections.ConfigDict, dataset: data_lib.Dataset
) -> ml_collections.ConfigDict:
    """A copy of the config that names the user's arrays (`dataset.name=arrays:<name>`)."""
    named = getattr(getattr(config, "dataset", None), "name", "")
    if isinstance(named, str) and data_lib.is_file_name(named):
        raise ConfigError(
            f"jaxnn.run was given data=... and config.dataset.name={named!r} names a data file "
            "too: train on one of them (drop data=, or leave dataset.name at its default)"
        )
    copied = ml_collections.ConfigDict(config.to_dict())
    copied.dataset.name = f"{data_lib.ARRAYS_SCHEME}{dataset.name}"
    return copied


@dataclasses.dataclass
class _Variant(variants.Variant):
    """A built structural variant (a plain run is one) with its files and restored state."""

    paths: RunPaths
    index: int
    num_variants: int
    member_params: Any = None
    pretrained: Any = None
    start_losses: Any = None  # float [M]: training losses at initialisation (exploded rule)
    start_step: int = 0
    state: train.TrainState | None = None
    unreadable: list[int] = dataclasses.field(default_factory=list)

    @property
    def checkpoints_dir(self) -> Path:
        return self.paths.variant_checkpoints(self.index, self.num_variants)


def _run_planned(
    plan: workdir_lib.WorkdirPlan,
    lock: lock_lib.WorkdirLock,
    spec: RunSpec,
    stop: interrupt.StopRequest,
    *,
    given: data_lib.Dataset | None,
    progress: bool,
    out: TextIO,
) -> dict[str, Any]:
    """The build, restore, train and finish phases of a planned launch; its summary."""
    config = spec.config
    # build; the compilation cache first, before anything compiles
    if config.compilation_cache.enabled:
        compile_cache.enable(spec.compile_cache_dir)
    source = None
    if spec.source_workdir is not None and not _has_checkpoints(plan):
        source = transfer.check_source(spec.source_workdir, config, spec.family)
    dataset = given if given is not None else data_lib.load(config.dataset)
    data_record = fingerprint_lib.fingerprint(dataset)
    workdir_lib.check_data(plan, data_record)
    key = jax.random.PRNGKey(config.seed)
    run_variants = _build(plan, spec, dataset, key)
    for variant in run_variants:
        _restore_variant(variant, plan, source, dataset, key, out)

    # train: every check has passed, from here on the launch writes.
    if stop():
        raise stop.interrupted(run_variants[0].start_step)  # nothing written
    resumed = {  # global member index -> the step its checkpoint is at
        m.index: v.start_step for v in run_variants if v.state is not None for m in v.global_members
    }
    _on_writer(lambda: _prepare(plan, lock, resumed, data_record, out))
    _sync("jaxnn_prepare")  # the workdir exists before any process opens its checkpoints
    if source is not None:
        print(f"starting from {source.describe()} ({config.init_from.mode})", file=out)
    runs = [
        _train_variant(variant, plan, dataset, data_record, key, stop, progress=progress, out=out)
        for variant in run_variants
    ]
    return _finish(plan, run_variants, runs, dataset, data_record, out)


def _restore_variant(
    variant: _Variant,
    plan: workdir_lib.WorkdirPlan,
    source: transfer.Source | None,
    dataset: data_lib.Dataset,
    key: jax.Array,
    out: TextIO,
) -> None:
    """A variant's member shapes, pretrained layers, start losses and latest checkpoint."""
    config = variant.spec.config
    abstract = jax.eval_shape(
        variant.trainer.init_fn,
        ensemble.stacked_hparams(variant.spec, variant.trainer.members),
        ensemble.member_keys(key, variant.trainer.members),
        None,
    )
    variant.member_params, member_state = jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape[1:], leaf.dtype),
        (abstract.params, abstract.model_state),
    )
    if source is not None:
        variant.pretrained = transfer.load_pretrained(
            source,
            config,
            variant.member_params,
            head=variant.trainer.program.head,
            order=variant.trainer.program.layer_order(),
            target_state=member_state,
        )
    if config.restarts.explode_factor > 0:
        # Before the restored state is held: the two are never on the device together.
        variant.start_losses = explosion.start_losses(
            variant.trainer, dataset, key, variant.pretrained
        )
    variant.start_step, variant.state, variant.unreadable = _restore(plan, variant, abstract, out)


def _finish(
    plan: workdir_lib.WorkdirPlan,
    run_variants: list[_Variant],
    runs: list[variants.VariantRun],
    dataset: data_lib.Dataset,
    data_record: Mapping[str, Any],
    out: TextIO,
) -> dict[str, Any]:
    """Summarises every variant's members, exports the best, writes and prints the results."""
    config = plan.config
    start_losses = [v.start_losses for v in run_variants]
    schedule_rows = run_readers.read_appended(plan.paths / run_files.SCHEDULE, split=False).rows
    summary, predictions = summarize_runs(
        runs, config, dataset, None if start_losses[0] is None else start_losses, schedule_rows
    )
    schedule_report.annotate(summary, runs, schedule_rows)
    best_run, best_local = runs[0], None
    if summary["best_member"] is not None:
        best_run, best_local = variants.locate(runs, summary["best_member"])
    _export_best(plan.paths, best_local, best_run, data_record)
    if sharding.is_writer():
        if config.tensorboard.enabled:
            tensorboard.write_results(plan.paths.tensorboard, summary)
        indices = [m.index for v in run_variants for m in v.global_members]
        history = workdir_lib.history_from_metrics(plan.paths.metrics, indices)
        with workdir_lib.writing("the run's results in", plan.paths.root):
            schedule_report.write_plot(summary, history, plan.paths.plots)
            results.write_outputs(plan.paths, summary, history, dataset, predictions)
    print(tables.ranking_table(summary, limit=RANKED_AT_THE_END), file=out)
    console.print_outcome(summary, out)
    console.print_files(plan.paths, tensorboard=bool(config.tensorboard.enabled), out=out)
    return summary


def _build(
    plan: workdir_lib.WorkdirPlan,
    spec: RunSpec,
    dataset: data_lib.Dataset,
    key: jax.Array,
) -> list[_Variant]:
    """Each variant's trainer (checked against the data), in sweep order, with its files."""
    built = variants.build_variants(
        spec,
        dataset,
        key,
        program_options=lambda s: transfer.program_options(s.config.init_from, s.head),
    )
    return [
        _Variant(
            variant.values,
            variant.spec,
            variant.trainer,
            variant.offset,
            paths=plan.paths,
            index=index,
            num_variants=len(built),
        )
        for index, variant in enumerate(built)
    ]


def _train_variant(
    variant: _Variant,
    plan: workdir_lib.WorkdirPlan,
    dataset: data_lib.Dataset,
    data_record: Mapping[str, Any],
    key: jax.Array,
    stop: interrupt.StopRequest,
    *,
    progress: bool,
    out: TextIO,
) -> variants.VariantRun:
    """Trains one variant from where its checkpoint left it (Interrupted, saved, on a signal)."""
    if stop():
        raise stop.interrupted(variant.start_step)  # the variants before it are saved
    writer = sharding.is_writer()
    program = variant.trainer.program
    _print_variant_header(variant, dataset, out)
    # Opened first: a TensorBoard directory that cannot be written stops every process here.
    events = _on_writer(lambda: _event_log(variant))
    checkpoints, saver = _checkpointing(variant, data_record)
    members = variant.global_members
    tracker = metrics_log.Progress(
        plan.paths, program, members, show=progress, start_step=variant.start_step
    )
    monitor = _diagnostics_monitor(variant, dataset)

    def on_eval(evaluation: Evaluation) -> None:
        if writer:
            _write_evaluation(evaluation, plan.paths, variant.offset, tracker, monitor, events)
        saver(evaluation)

    try:
        run = variant.train(
            dataset,
            key,
            on_eval=on_eval,
            state=variant.state,
            start_step=variant.start_step,
            pretrained=variant.pretrained,
            should_stop=stop,
        )
        result = run.result
        saver.finish(result.state, result.steps_done)
        if stop() and not ensemble.is_finished(result.state, result.steps_done, program):
            raise stop.interrupted(result.steps_done)
    finally:
        tracker.close()
        if events is not None:
            events.close()
        checkpoints.close()
    return run


def _print_variant_header(variant: _Variant, dataset: data_lib.Dataset, out: TextIO) -> None:
    """The run's header, or for one variant of several its values and layer table."""
    trainer = variant.trainer
    if variant.num_variants == 1:
        console.print_header(dataset, trainer, variant.member_params, out)
        return
    print(
        f"variant {variants.describe(variant.values)}: {len(trainer.members)} member(s)", file=out
    )
    print(format_layer_table(variant.member_params, order=trainer.program.layer_order()), file=out)


def _checkpointing(
    variant: _Variant, data_record: Mapping[str, Any]
) -> tuple[checkpoint.RunCheckpoints, checkpoint.Saver]:
    """The variant's checkpoints (the unreadable ones discarded) and their saver."""
    program, saving = variant.trainer.program, variant.spec.config.checkpoint
    checkpoints = checkpoint.RunCheckpoints(
        variant.checkpoints_dir,
        keep=int(saving.keep),
        metadata={
            "model": program.family.name,
            "preprocessing": program.preprocessing.to_json(),
            "data": dict(data_record),
        },
    )
    checkpoints.discard(variant.unreadable)
    saver = checkpoint.Saver(
        checkpoints, every_steps=saving.every_steps, start_step=variant.start_step
    )
    return checkpoints, saver


def _write_evaluation(
    evaluation: Evaluation,
    paths: RunPaths,
    offset: int,
    tracker: metrics_log.Progress,
    monitor: diagnostics.Monitor | None,
    events: tensorboard.EventLog | None,
) -> None:
    """Writes metrics.jsonl, diagnostics, TensorBoard and schedule decisions of an evaluation."""
    # metrics.jsonl first (its checkpoint is saved after): a run killed between the two
    # writes leaves rows past its checkpoint, which the resume drops, never a checkpoint
    # without its rows.
    with workdir_lib.writing("metrics", paths.metrics):
        tracker(evaluation)
        if monitor is not None:
            monitor(evaluation)
    if events is not None:
        events(evaluation)
    if evaluation.events:
        with workdir_lib.writing("schedule decisions", paths / run_files.SCHEDULE):
            atomic.append_jsonl(
                paths / run_files.SCHEDULE,
                [schedules.shift_members(row, offset) for row in evaluation.events],
            )


def _on_writer(action: Callable[[], Any]) -> Any:
    """`action()` on the writer (None elsewhere); every process learns if it failed."""
    failure, result = None, None
    if sharding.is_writer():
        try:
            result = action()
        except JaxnnError as error:
            failure = error
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        succeeded = multihost_utils.broadcast_one_to_all(np.int32(failure is None))
        if failure is None and not int(succeeded):
            raise WorkdirError("process 0 could not use the workdir; its message says why")
    if failure is not None:
        raise failure
    return result


def _sync(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def _prepare(
    plan: workdir_lib.WorkdirPlan,
    lock: lock_lib.WorkdirLock,
    resumed_steps: Mapping[int, int],
    data_record: Mapping[str, Any],
    out: TextIO,
) -> None:
    """Locks (a new workdir) and writes the first files."""
    lock.hold()
    for leftover in plan.paths.leftovers():
        print(f"removing {leftover.name}: a write that a stopped launch never finished", file=out)
    workdir_lib.prepare(plan, resumed_steps, data_record)


def _restore(
    plan: workdir_lib.WorkdirPlan, variant: _Variant, abstract: train.TrainState, out: TextIO
) -> tuple[int, train.TrainState | None, list[int]]:
    """The step and state a variant starts from, and the checkpoints it skipped: unreadable
    ones, and those whose metrics.jsonl rows are missing (their rows are computed again)."""
    directory, program = variant.checkpoints_dir, variant.trainer.program
    members = [m.index for m in variant.global_members]
    if not plan.restores or not directory.is_dir():
        return 0, None, []
    for unfinished in checkpoint.unfinished_saves(directory):
        print(
            f"ignoring {unfinished}: a checkpoint save that a stopped launch never finished "
            "(it is removed)",
            file=out,
        )

    def usable(step: int) -> str | None:
        if plan.has_rows(members, step):
            return None
        return f"{plan.paths.metrics} lacks its rows (a torn last line); they are computed again"

    with contextlib.closing(checkpoint.RunCheckpoints(directory, read_only=True)) as reader:
        found = reader.restore_latest(
            abstract, report=lambda line: print(line, file=out), usable=usable
        )
    if found is None:
        return 0, None, []
    step, state, unreadable = found
    if state is None:
        return 0, None, unreadable
    if step > program.total_steps:
        raise ConfigError(
            f"training asks for {program.total_steps} steps but the checkpoint in "
            f"{directory} is already at step {step}; ask for at least {step}"
        )
    print(f"resuming from checkpoint {reader.step_dir(step)} (step {step})", file=out)
    return step, state, unreadable


def _has_checkpoints(plan: workdir_lib.WorkdirPlan) -> bool:
    """Whether the launch continues from a checkpoint (then a transfer source is not read)."""
    if not plan.restores or not plan.paths.checkpoints.is_dir():
        return False
    directories = [plan.paths.checkpoints, *run_files.variant_directories(plan.paths.checkpoints)]
    for directory in directories:
        with contextlib.closing(checkpoint.RunCheckpoints(directory, read_only=True)) as reader:
            if reader.steps():
                return True
    return False


def _export_best(
    paths: RunPaths, index: int | None, run: variants.VariantRun, data_record: Mapping[str, Any]
) -> None:
    """DIR/best: the selected member (`index` local to `run`), removed if none is selected."""
    result = run.result
    try:
        if index is None:
            if sharding.is_writer():
                shutil.rmtree(paths.best, ignore_errors=True)
            return
        export.export_member(
            paths.best,
            result.state,
            index,
            run.spec.config,
            step=result.steps_done,
            program=result.program,
            data=data_record,
        )
    except Exception as error:
        if not orbax_io.is_storage_error(error):
            raise
        raise WorkdirError(
            f"cannot write the selected member to {paths.best} ({orbax_io.one_line(error)}); "
            "the run's checkpoints are intact: free space or fix permissions, then launch "
            "again to finish"
        ) from error


def _event_log(variant: _Variant) -> tensorboard.EventLog | None:
    """The variant's TensorBoard run (None when disabled), cut back to its checkpoint."""
    if not variant.spec.config.tensorboard.enabled:
        return None
    return tensorboard.EventLog(
        variant.paths.variant_events(variant.index, variant.num_variants),
        variant.spec,
        variant.trainer.program,
        variant.global_members,
        start_step=variant.start_step,
    )


def _diagnostics_monitor(
    variant: _Variant, dataset: data_lib.Dataset
) -> diagnostics.Monitor | None:
    """The variant's DIR/diagnostics.jsonl writer (None when disabled)."""
    if not variant.spec.config.diagnostics.enabled:
        return None
    indices = [m.index for m in variant.global_members]
    return diagnostics.Monitor(
        variant.paths.diagnostics, device_data(dataset), variant.trainer.program, indices
    )
