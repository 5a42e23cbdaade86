"""Orbax checkpoints of a run, `DIR/checkpoints/<step>/{state,meta}`: keep policy, resumption.

`state` holds every TrainState pytree field with its leading member axis; `meta` is JSON: the
versions, `step`, `num_members`, the run's `preprocessing` (for `jaxnn.predict.load`) and `data`
fingerprint. Saves are synchronous, through Orbax's temporary directory + rename, and dropped
checkpoints go to `.deleted` before they are deleted, so a killed process leaves no half-written
or half-deleted checkpoint. Arrays are read through Orbax, never unpickled, after the format
version and every shape are checked against the run's.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxnn.core import loop, train
from jaxnn.errors import CheckpointError, WorkdirError
from jaxnn.io import orbax_io

# Where the keep policy moves the checkpoints it drops before deleting them.
DELETED = ".deleted"
# What Orbax adds to the name of a checkpoint it has not finished writing.
UNFINISHED_MARKER = ".orbax-checkpoint-tmp"
# TrainState fields that checkpoints of earlier jaxnn versions lack: restored as {}, which is
# what a model without state (BatchNorm's statistics) and a run without averaging have.
OPTIONAL_FIELDS = ("model_state", "best_model_state", "ema")


def state_fields() -> tuple[str, ...]:
    """The TrainState fields a checkpoint holds: every pytree field (not apply_fn / make_tx)."""
    return tuple(
        field.name
        for field in dataclasses.fields(train.TrainState)
        if field.metadata.get("pytree_node", True)
    )


def state_tree(state: train.TrainState) -> dict[str, Any]:
    """The leaves of a (stacked) state as a plain dict: what a checkpoint stores."""
    return {name: getattr(state, name) for name in state_fields()}


def unfinished_saves(directory: str | Path) -> list[Path]:
    """Checkpoints Orbax began but never finished writing (their launch was stopped during a save)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if UNFINISHED_MARKER in p.name)


class RunCheckpoints:
    """The checkpoints of one run (`DIR/checkpoints`): latest `keep` plus the best by validation.

    "Best" is the checkpoint whose evaluation had the lowest validation loss of any member.
    Every process of a multi-host run opens the same directory and takes part in each save.
    """

    def __init__(
        self,
        directory: str | Path,
        *,
        keep: int = 2,
        read_only: bool = False,
        metadata: Mapping[str, Any] | None = None,
    ):
        """Args: metadata: JSON fields every save adds to its `meta` (the preprocessing)."""
        self.directory = Path(directory)
        self._metadata = dict(metadata or {})
        keep_policy = policies.AnyPreservationPolicy(
            [
                policies.LatestN(n=keep),
                policies.BestN(
                    get_metric_fn=lambda metrics: metrics["val_loss"], reverse=True, n=1
                ),
            ]
        )
        # A reader is a manager that never saves: Orbax's own read_only mode logs warnings.
        self._read_only = read_only
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            preservation_policy=keep_policy,
            todelete_subdir=None if read_only else DELETED,
        )
        handlers = {"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        try:
            self._manager = ocp.CheckpointManager(
                self.directory, options=options, item_handlers=handlers
            )
        except OSError as error:
            raise WorkdirError(
                f"cannot open the checkpoint directory {self.directory} ({orbax_io.one_line(error)})"
            ) from error
        if not read_only:
            self._empty_trash()

    def steps(self) -> list[int]:
        """The finalised checkpoint steps, oldest first (half-written saves are not listed)."""
        return sorted(self._manager.all_steps())

    def step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    def save(self, step: int, state: train.TrainState, *, val_loss: float) -> None:
        """Saves the stacked state (every leaf [num_members, ...]) and waits until it is on disk;
        `val_loss` (the lowest of any member at this evaluation) ranks "best".

        Raises:
          WorkdirError: the checkpoint could not be written (read-only or full file system);
            the checkpoints saved before are left as they were.
        """
        if self._read_only:
            raise ValueError(f"{self.directory} was opened read-only")
        num_members = int(np.shape(state.step)[0]) if np.ndim(state.step) else 1
        meta = {
            **self._metadata,
            **orbax_io.version_fields(),
            "step": int(step),
            "num_members": num_members,
        }
        finite = val_loss if math.isfinite(val_loss) else 1e30
        try:
            with orbax_io.saving():
                self._manager.save(
                    int(step),
                    args=ocp.args.Composite(
                        state=ocp.args.PyTreeSave(state_tree(state)),
                        meta=ocp.args.JsonSave(meta),
                    ),
                    metrics={"val_loss": finite},
                )
                self._manager.wait_until_finished()
        except Exception as error:
            if not orbax_io.is_storage_error(error):
                raise
            # The unfinished save is removed so that a full disk gets its space back.
            if jax.process_index() == 0:
                for path in unfinished_saves(self.directory):
                    shutil.rmtree(path, ignore_errors=True)
            raise WorkdirError(
                f"cannot write checkpoint {self.step_dir(step)} ({orbax_io.one_line(error)}); "
                f"the checkpoints saved before it in {self.directory} are intact: free space "
                "or fix permissions, then launch again to continue"
            ) from error
        self._empty_trash()

    def _empty_trash(self) -> None:
        if jax.process_index() == 0:
            shutil.rmtree(self.directory / DELETED, ignore_errors=True)

    def meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of a checkpoint.

        Raises:
          CheckpointError: unreadable, not a jaxnn checkpoint, or of another format version.
        """
        what = f"checkpoint {self.step_dir(step)}"
        with orbax_io.reading(what):
            args = ocp.args.Composite(meta=ocp.args.JsonRestore())
            meta = self._manager.restore(step, args=args)["meta"]
        orbax_io.check_version(meta, what)
        return meta

    def _stored_tree(self, step: int) -> Any:
        """The stored state's array metadata (shapes and dtypes); call inside `reading`."""
        tree = self._manager.item_metadata(step)["state"]
        return tree.tree if hasattr(tree, "tree") else tree

    def shapes(self, step: int, field: str) -> Any:
        """The stored shapes and dtypes of one state field ({} for an absent `OPTIONAL_FIELDS`)."""
        with orbax_io.reading(f"checkpoint {self.step_dir(step)}"):
            tree = self._stored_tree(step)
            if field in OPTIONAL_FIELDS and field not in tree:
                return {}
            return orbax_io.abstract_tree(tree[field])

    def restore_fields(self, step: int, abstract: Mapping[str, Any]) -> dict[str, Any]:
        """Reads only the state fields (or sub-trees of them) that `abstract` names.

        Raises:
          CheckpointError: of another format, or an array's stored shape differs from `abstract`.
        """
        self.meta(step)
        what = f"checkpoint {self.step_dir(step)}"
        with orbax_io.reading(what):
            stored = orbax_io.leaf_shapes(self._stored_tree(step))
        for name, shape in orbax_io.leaf_shapes(dict(abstract)).items():
            if stored.get(name) != shape:
                raise CheckpointError(
                    f"{what} is not of this run: {name} has shape "
                    f"{orbax_io.shape_text(stored.get(name))} there but {orbax_io.shape_text(shape)} here"
                )
        with orbax_io.reading(what):
            target = orbax_io.partial_restore_args(orbax_io.abstract_tree(dict(abstract)))
            restored = self._manager.restore(step, args=ocp.args.Composite(state=target))
        return dict(restored["state"])

    def restore(self, step: int, abstract_state: train.TrainState) -> train.TrainState:
        """The stacked state of checkpoint `step`, shaped like `abstract_state` (from eval_shape).

        Raises:
          CheckpointError: unreadable, incomplete, of another format, or of other shapes.
        """
        tree = self.restore_fields(step, state_tree(abstract_state))
        return dataclasses.replace(abstract_state, **tree)

    def restore_latest(
        self,
        abstract_state: train.TrainState,
        *,
        report: Callable[[str], None],
        usable: Callable[[int], str | None] | None = None,
    ) -> tuple[int, train.TrainState | None, list[int]] | None:
        """The newest readable checkpoint, falling back past unreadable ones (each `report`ed).

        `usable`: step -> why a readable checkpoint must not be resumed from (None: it may).

        Returns:
          (step, state, the unusable steps newer than it); (0, None, the unusable steps) when
          every step is passed over; None when there is no checkpoint.

        Raises:
          CheckpointError: there are checkpoints but none is readable.
        """
        unreadable: list[int] = []
        passed_over: list[int] = []
        first_error: CheckpointError | None = None
        for step in reversed(self.steps()):
            why = usable(step) if usable is not None else None
            if why is not None:
                passed_over.append(step)
                report(f"not resuming from checkpoint {self.step_dir(step)}: {why}")
                continue
            try:
                return step, self.restore(step, abstract_state), passed_over + unreadable
            except CheckpointError as error:
                first_error = first_error or error
                unreadable.append(step)
                report(f"{error}; falling back to the previous checkpoint")
        if first_error is not None:
            raise CheckpointError(f"no readable checkpoint in {self.directory}: {first_error}")
        if passed_over:
            return 0, None, passed_over
        return None

    def discard(self, steps: Sequence[int]) -> None:
        """Deletes unreadable checkpoints (newer than the one a resume continues from)."""
        if jax.process_index() == 0:
            for step in steps:
                shutil.rmtree(self.step_dir(step), ignore_errors=True)
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("jaxnn_discard_checkpoints")
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()


def last_state_fields(directory: str | Path) -> dict[str, Any]:
    """The newest checkpoint in `directory` as stored: its `step` and every `state_fields()`
    field, without building a TrainState (for comparing runs)."""
    reader = RunCheckpoints(directory, read_only=True)
    try:
        step = reader.steps()[-1]
        fields = {name: reader.shapes(step, name) for name in state_fields()}
        return {"step": step, **reader.restore_fields(step, fields)}
    finally:
        reader.close()


class Saver:
    """on_eval callback: saves the stacked state at evaluations, every `every_steps` steps.

    A save is due when a multiple of `every_steps` was reached since the previous evaluation
    (0 = at every evaluation), so the schedule does not depend on where a run was resumed.
    """

    def __init__(self, checkpoints: RunCheckpoints, *, every_steps: int, start_step: int):
        self._checkpoints = checkpoints
        self._every = int(every_steps)
        self._previous = int(start_step)
        self._saved_step = int(start_step)
        self._val_loss = math.inf

    def __call__(self, evaluation: loop.Evaluation) -> None:
        val_loss = np.asarray(evaluation.metrics["val_loss"], np.float64)
        finite = val_loss[np.isfinite(val_loss)]
        self._val_loss = float(finite.min()) if finite.size else math.inf
        due = self._every == 0 or evaluation.step // self._every > self._previous // self._every
        self._previous = evaluation.step
        if due:
            self._save(evaluation.step, evaluation.state)

    def finish(self, state: train.TrainState, step: int) -> None:
        """Saves the end of training unless that step is already saved."""
        if step != self._saved_step:
            self._save(step, state)

    def _save(self, step: int, state: train.TrainState) -> None:
        self._checkpoints.save(step, state, val_loss=self._val_loss)
        self._saved_step = step
