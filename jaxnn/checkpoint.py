"""Orbax checkpoints of a run: the stacked training state, resumption, one member, the best export.

A workdir holds

    DIR/checkpoints/<step>/state   every TrainState leaf with its leading member axis
    DIR/checkpoints/<step>/meta    {"format_version", "step", "num_members"}
    DIR/best/params                the selected member's best-validation weights
    DIR/best/final_params          its weights at the end of training
    DIR/best/hparams               its numeric hyperparameters
    DIR/best/metadata              {"format_version", "member", "step", "best_step", "config"}

Saves are synchronous and go through Orbax's temporary directory + rename, so a process killed
during a save leaves the previous checkpoint as the latest one. Restores read only what they
are asked for (a partial restore into an abstract target) and check shapes first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import shutil
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as policies

from jaxnn import train
from jaxnn.errors import CheckpointError

FORMAT_VERSION = 1
CHECKPOINTS = "checkpoints"
BEST = "best"
STATE_ITEM, META_ITEM = "state", "meta"
PARAM_KINDS = ("best_params", "params")

Params = Any
Report = Callable[[str], None]


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


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def _reading(what: str) -> Iterator[None]:
    """Turns any failure to read `what` (Orbax, tensorstore and json raise many kinds) into one line."""
    try:
        yield
    except CheckpointError:
        raise
    except Exception as error:
        _drop_closed_loop_callbacks()
        raise CheckpointError(f"{what} is corrupt or incomplete ({_one_line(error)})") from error


def _drop_closed_loop_callbacks() -> None:
    """Silences the 'Event loop is closed' errors of reads still in flight when a read failed.

    Orbax 0.12.8 runs each restore on a fresh event loop and closes it as soon as the first
    array read fails; tensorstore finishes the other reads afterwards and their callbacks
    raise into sys.unraisablehook, which would print tracebacks after the one-line message.
    Nothing is lost: that restore has already failed and been reported.
    """
    previous = sys.unraisablehook
    if getattr(previous, "drops_closed_loop_callbacks", False):
        return

    def hook(unraisable: Any) -> None:
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        previous(unraisable)

    hook.drops_closed_loop_callbacks = True
    sys.unraisablehook = hook


def _sharding() -> jax.sharding.Sharding:
    return jax.sharding.SingleDeviceSharding(jax.devices()[0])


def _abstract(tree: Any) -> Any:
    """ShapeDtypeStructs on the default device for every array (or array metadata) of `tree`."""
    sharding = _sharding()
    return jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=sharding), tree
    )


def _restore_args(abstract: Any) -> ocp.args.PyTreeRestore:
    return ocp.args.PyTreeRestore(
        item=abstract,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True,
    )


def _val_loss_metric(metrics: Mapping[str, float]) -> float:
    return float(metrics["val_loss"])


class RunCheckpoints:
    """The checkpoints of one run (`DIR/checkpoints`): latest `keep` plus the best by validation.

    "Best" is the checkpoint whose evaluation had the lowest validation loss of any member.
    """

    def __init__(self, directory: str | Path, *, keep: int = 2, read_only: bool = False):
        self.directory = Path(directory)
        keep_policy = policies.AnyPreservationPolicy(
            [
                policies.LatestN(n=keep),
                policies.BestN(get_metric_fn=_val_loss_metric, reverse=True, n=1),
            ]
        )
        # A reader is a manager that never saves: Orbax's own read_only mode logs warnings.
        self._read_only = read_only
        options = ocp.CheckpointManagerOptions(
            enable_async_checkpointing=False,
            create=not read_only,
            cleanup_tmp_directories=not read_only,
            preservation_policy=keep_policy,
        )
        handlers = {
            STATE_ITEM: ocp.PyTreeCheckpointHandler(),
            META_ITEM: ocp.JsonCheckpointHandler(),
        }
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_handlers=handlers
        )

    def steps(self) -> list[int]:
        """The finalised checkpoint steps, oldest first (half-written saves are not listed)."""
        return sorted(self._manager.all_steps())

    def step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    def save(self, step: int, state: train.TrainState, *, val_loss: float) -> None:
        """Saves the stacked state at global step `step` and waits until it is on disk.

        Args:
          step: the global step of the state.
          state: the stacked state (every leaf [num_members, ...]).
          val_loss: the lowest validation loss of any member at this evaluation (ranks "best").
        """
        if self._read_only:
            raise ValueError(f"{self.directory} was opened read-only")
        num_members = int(np.shape(state.step)[0]) if np.ndim(state.step) else 1
        meta = {"format_version": FORMAT_VERSION, "step": int(step), "num_members": num_members}
        finite = val_loss if math.isfinite(val_loss) else 1e30
        self._manager.save(
            int(step),
            args=ocp.args.Composite(
                **{
                    STATE_ITEM: ocp.args.PyTreeSave(state_tree(state)),
                    META_ITEM: ocp.args.JsonSave(meta),
                }
            ),
            metrics={"val_loss": finite},
        )
        self._manager.wait_until_finished()

    def meta(self, step: int) -> dict[str, Any]:
        """The JSON metadata of a checkpoint (format version, step, number of members)."""
        with _reading(f"checkpoint {self.step_dir(step)}"):
            meta = self._manager.restore(
                step, args=ocp.args.Composite(**{META_ITEM: ocp.args.JsonRestore()})
            )[META_ITEM]
        if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
            version = meta.get("format_version") if isinstance(meta, dict) else None
            raise CheckpointError(
                f"checkpoint {self.step_dir(step)} has format version {version!r}; this jaxnn "
                f"reads version {FORMAT_VERSION}"
            )
        return meta

    def shapes(self, step: int, field: str) -> Any:
        """The stored shapes and dtypes of one state field, without reading any array."""
        with _reading(f"checkpoint {self.step_dir(step)}"):
            tree = self._manager.item_metadata(step)[STATE_ITEM]
            return _abstract(tree.tree[field] if hasattr(tree, "tree") else tree[field])

    def restore_fields(self, step: int, abstract: Mapping[str, Any]) -> dict[str, Any]:
        """Reads only the state fields (or sub-trees of them) that `abstract` names."""
        self.meta(step)
        with _reading(f"checkpoint {self.step_dir(step)}"):
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(**{STATE_ITEM: _restore_args(_abstract(dict(abstract)))}),
            )[STATE_ITEM]
        return dict(restored)

    def restore(self, step: int, abstract_state: train.TrainState) -> train.TrainState:
        """The stacked state of checkpoint `step`, shaped like `abstract_state` (from eval_shape).

        Raises:
          CheckpointError: the checkpoint is unreadable, incomplete, of another format, or its
            arrays do not have the shapes of this run's state.
        """
        tree = self.restore_fields(step, state_tree(abstract_state))
        return abstract_state.replace(**tree)

    def restore_latest(
        self, abstract_state: train.TrainState, *, report: Report
    ) -> tuple[int, train.TrainState, list[int]] | None:
        """The newest readable checkpoint, falling back past unreadable ones (each reported).

        Returns:
          (step, state, the unreadable steps newer than it), or None when there is no checkpoint.

        Raises:
          CheckpointError: there are checkpoints but none is readable.
        """
        unreadable: list[int] = []
        first_error: CheckpointError | None = None
        for step in reversed(self.steps()):
            try:
                return step, self.restore(step, abstract_state), unreadable
            except CheckpointError as error:
                first_error = first_error or error
                unreadable.append(step)
                report(f"{error}; falling back to the previous checkpoint")
        if first_error is not None:
            raise CheckpointError(f"no readable checkpoint in {self.directory}: {first_error}")
        return None

    def discard(self, steps: Sequence[int]) -> None:
        """Deletes unreadable checkpoints (newer than the one a resume continues from)."""
        for step in steps:
            shutil.rmtree(self.step_dir(step), ignore_errors=True)
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()


class Saver:
    """on_eval callback: saves the stacked state at evaluations, every `every_steps` steps.

    A save is due at an evaluation when a multiple of `every_steps` was reached since the
    previous evaluation (0 = at every evaluation), so the schedule does not depend on where a
    run was resumed. `finish` saves the final state when the last evaluation was not saved.
    """

    def __init__(self, checkpoints: RunCheckpoints, *, every_steps: int, start_step: int):
        self._checkpoints = checkpoints
        self._every = int(every_steps)
        self._previous = int(start_step)
        self._saved_step = int(start_step)
        self._val_loss = math.inf

    def __call__(self, evaluation: train.Evaluation) -> None:
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


def _member_slice(tree: Any, index: int) -> Any:
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[index]), tree)


@contextlib.contextmanager
def _latest_of_member(workdir: str | Path, index: int) -> Iterator[tuple[RunCheckpoints, int]]:
    """A run's checkpoints (read-only) and its newest readable step, with `index` checked."""
    directory = Path(workdir).expanduser() / CHECKPOINTS
    if not directory.is_dir():
        raise CheckpointError(f"{Path(workdir)} holds no checkpoints ({directory} is missing)")
    checkpoints = RunCheckpoints(directory, read_only=True)
    try:
        errors = []
        for step in reversed(checkpoints.steps()):
            try:
                num_members = checkpoints.meta(step)["num_members"]
                break
            except CheckpointError as error:
                errors.append(error)
        else:
            detail = f": {errors[0]}" if errors else ""
            raise CheckpointError(f"{Path(workdir)} holds no readable checkpoint{detail}")
        if not 0 <= index < num_members:
            raise CheckpointError(
                f"member index {index} is out of range: {directory} holds {num_members} "
                f"member(s), 0..{num_members - 1}"
            )
        yield checkpoints, step
    finally:
        checkpoints.close()


def restore_member(
    workdir: str | Path,
    index: int,
    *,
    which: str = "best_params",
    layers: Sequence[str] | None = None,
) -> Params:
    """One member's weights from a run's latest readable checkpoint, without the others' state.

    Only the requested weights are read (no optimiser state, no other fields); the member's
    slice is taken from them.

    Args:
      workdir: the run directory (holding `checkpoints/`).
      index: the member index.
      which: 'best_params' (the best-validation weights, the default) or 'params' (the last).
      layers: read only these top-level layers (default: all).

    Returns:
      The member's params (numpy arrays, no member axis).

    Raises:
      CheckpointError: no checkpoint, an unreadable one, or an index out of range.
    """
    if which not in PARAM_KINDS:
        raise ValueError(f"which must be one of {PARAM_KINDS}, got {which!r}")
    with _latest_of_member(workdir, index) as (checkpoints, step):
        shapes = checkpoints.shapes(step, which)
        if layers is not None:
            shapes = {name: shapes[name] for name in layers}
        stacked = checkpoints.restore_fields(step, {which: shapes})[which]
    return _member_slice(stacked, index)


def member_param_shapes(workdir: str | Path, index: int) -> Any:
    """Shapes of member `index`'s weights in a run's latest readable checkpoint (no member axis).

    Raises:
      CheckpointError: no checkpoint, an unreadable one, or an index out of range.
    """
    with _latest_of_member(workdir, index) as (checkpoints, step):
        shapes = checkpoints.shapes(step, "best_params")
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), shapes)


# --- The selected member as an ordinary single-model checkpoint -----------------------------


BEST_TREES = ("params", "final_params", "hparams")


def _best_checkpointer() -> ocp.Checkpointer:
    handlers = {name: ocp.PyTreeCheckpointHandler() for name in BEST_TREES}
    return ocp.Checkpointer(
        ocp.CompositeCheckpointHandler(**handlers, metadata=ocp.JsonCheckpointHandler())
    )


def export_member(
    directory: str | Path,
    state: train.TrainState,
    index: int,
    config: ml_collections.ConfigDict,
    *,
    step: int,
) -> Path:
    """Writes member `index` of a stacked state as a single-model checkpoint (DIR/best).

    Args:
      directory: where to write (replaced if it exists).
      state: the stacked final state.
      index: the selected member.
      config: the run's config (stored in the metadata, so the model can be rebuilt).
      step: the global step the run ended at.
    """
    member = _member_slice(
        {"best_params": state.best_params, "params": state.params, "hparams": state.hparams}, index
    )
    metadata = {
        "format_version": FORMAT_VERSION,
        "member": int(index),
        "step": int(step),
        "best_step": int(np.asarray(state.best_step)[index]),
        "best_val_loss": float(np.asarray(state.best_val_loss)[index]),
        "config": json.loads(config.to_json()),
    }
    directory = Path(directory)
    checkpointer = _best_checkpointer()
    checkpointer.save(
        directory,
        args=ocp.args.Composite(
            params=ocp.args.PyTreeSave(member["best_params"]),
            final_params=ocp.args.PyTreeSave(member["params"]),
            hparams=ocp.args.PyTreeSave(member["hparams"]),
            metadata=ocp.args.JsonSave(metadata),
        ),
        force=True,
    )
    checkpointer.close()
    return directory


def best_dir(path: str | Path) -> Path:
    """The exported model directory of `path`: `path/best` for a workdir, else `path` itself."""
    path = Path(path).expanduser()
    return path / BEST if (path / BEST).is_dir() else path


def _tuples(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_from_json(obj: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """A config from its JSON form (lists back to tuples, as the default config has them)."""
    return ml_collections.ConfigDict(_tuples(dict(obj)))


def _tree_shapes(checkpointer: ocp.Checkpointer, directory: Path, item: str) -> Any:
    tree = checkpointer.metadata(directory).item_metadata[item]
    return _abstract(tree.tree if hasattr(tree, "tree") else tree)


def best_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of an exported model (`path` is a workdir or its `best/`)."""
    directory = best_dir(path)
    if not (directory / "metadata").exists():
        raise CheckpointError(
            f"{Path(path)} holds no exported model (expected {directory}/metadata, written when "
            "a jaxnn run finishes)"
        )
    with _reading(f"exported model {directory}"):
        metadata = _best_checkpointer().restore(
            directory, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())
        )["metadata"]
    if metadata.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"exported model {directory} has format version {metadata.get('format_version')!r}; "
            f"this jaxnn reads version {FORMAT_VERSION}"
        )
    return metadata


def best_param_shapes(path: str | Path) -> Any:
    """Shapes of an exported model's params, without reading them."""
    directory = best_dir(path)
    best_metadata(directory)
    with _reading(f"exported model {directory}"):
        return _tree_shapes(_best_checkpointer(), directory, "params")


def read_best(path: str | Path, item: str = "params", layers: Sequence[str] | None = None) -> Any:
    """One tree of an exported model (params, final_params or hparams) as numpy arrays.

    Args:
      path: a workdir or its `best/` directory.
      item: which tree.
      layers: read only these top-level entries (default: all).
    """
    directory = best_dir(path)
    best_metadata(directory)
    checkpointer = _best_checkpointer()
    with _reading(f"exported model {directory}"):
        shapes = _tree_shapes(checkpointer, directory, item)
        if layers is not None:
            shapes = {name: shapes[name] for name in layers}
        restored = checkpointer.restore(
            directory, args=ocp.args.Composite(**{item: _restore_args(shapes)})
        )[item]
    return jax.tree_util.tree_map(np.asarray, dict(restored))


def load_model(path: str | Path) -> tuple[Params, dict[str, np.ndarray], ml_collections.ConfigDict]:
    """Loads an exported single model: a workdir (its `best/`) or the `best/` directory itself.

    Returns:
      (params, hparams, config): the selected member's best-validation weights, its numeric
      hyperparameters (float32 scalars), and the run's config. `train.build(config, data)`
      rebuilds the program to evaluate it.
    """
    metadata = best_metadata(path)
    params = read_best(path, "params")
    hparams = read_best(path, "hparams")
    return params, hparams, config_from_json(metadata["config"])
