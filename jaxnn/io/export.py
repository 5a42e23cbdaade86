"""One member as a model: the selected member's export (`DIR/best`), loading it, and one
member's weights read from a run's checkpoints (transfer learning).

DIR/best holds the Orbax trees `BEST_TREES` (`params`: best-validation weights, averaged with
optimizer.ema_decay; the model state trees only for a model that has state, else read as {})
and JSON `metadata` (see `export_member`). Nothing is unpickled; the format version is checked
before any array is read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from jaxnn import run_spec
from jaxnn.config.upgrade import upgrade
from jaxnn.core import train
from jaxnn.core.program import Program
from jaxnn.data.preprocessing import Preprocessing
from jaxnn.errors import CheckpointError
from jaxnn.io import checkpoint, orbax_io, run_files
from jaxnn.nn.components import Components
from jaxnn.nn.family import apply_model, init_model, split_variables

BEST = run_files.BEST
BEST_TREES = ("params", "final_params", "hparams", "model_state", "final_model_state")
STATE_TREES = ("model_state", "final_model_state")
# The kinds of weights a checkpoint keeps, and the model state it keeps with each.
STATE_OF = {"best_params": "best_model_state", "params": "model_state"}


def member_slice(tree: Any, index: int) -> Any:
    """Member `index` of every leaf of a stacked tree, as numpy arrays."""
    return jax.tree_util.tree_map(lambda leaf: np.asarray(leaf[index]), tree)


def _latest_readable(checkpoints: checkpoint.RunCheckpoints, workdir: Path) -> tuple[int, int]:
    """(newest readable step, its number of members) of one checkpoint directory."""
    errors = []
    for step in reversed(checkpoints.steps()):
        try:
            return step, checkpoints.meta(step)["num_members"]
        except CheckpointError as error:
            errors.append(error)
    detail = f": {errors[0]}" if errors else ""
    raise CheckpointError(f"{workdir} holds no readable checkpoint{detail}")


@contextlib.contextmanager
def _latest_of_member(
    workdir: str | Path, index: int
) -> Iterator[tuple[checkpoint.RunCheckpoints, int, int]]:
    """The checkpoints (read-only) holding global member `index`, their newest readable step,
    and the member's index there: a structural run's variants (`checkpoints/variant_<v>/`)
    hold its members variant after variant."""
    workdir = Path(workdir).expanduser().resolve()
    directory = workdir / run_files.CHECKPOINTS_DIR
    if not directory.is_dir():
        raise CheckpointError(f"{workdir} holds no checkpoints ({directory} is missing)")
    offset = 0
    for candidate in run_files.variant_directories(directory) or [directory]:
        checkpoints = checkpoint.RunCheckpoints(candidate, read_only=True)
        try:
            step, num_members = _latest_readable(checkpoints, workdir)
            if 0 <= index - offset < num_members:
                yield checkpoints, step, index - offset
                return
        finally:
            checkpoints.close()
        offset += num_members
    raise CheckpointError(
        f"member index {index} is out of range: {directory} holds {offset} member(s), "
        f"0..{offset - 1}"
    )


def _only_layers(tree: Mapping[str, Any], layers: Sequence[str] | None) -> dict[str, Any]:
    """The top-level entries of `tree` among `layers` (all of them when `layers` is None)."""
    return {name: value for name, value in tree.items() if layers is None or name in layers}


def restore_member(
    workdir: str | Path,
    index: int,
    *,
    which: str = "best_params",
    layers: Sequence[str] | None = None,
    with_state: bool = False,
) -> Any:
    """One member's weights (numpy, no member axis) from a run's latest readable checkpoint;
    only those weights are read.

    Args:
      which: 'best_params' (the best-validation weights) or 'params' (the last).
      layers: read only these top-level layers (default: all).
      with_state: return Flax variables {'params': ..., and each model state collection}.

    Raises:
      CheckpointError: no checkpoint, an unreadable one, or an index out of range.
    """
    if which not in STATE_OF:
        raise ValueError(f"which must be one of {tuple(STATE_OF)}, got {which!r}")
    state_field = STATE_OF[which]
    with _latest_of_member(workdir, index) as (checkpoints, step, local):
        wanted = {which: _only_layers(checkpoints.shapes(step, which), layers)}
        if with_state:
            stored = checkpoints.shapes(step, state_field) or {}
            wanted[state_field] = {
                name: _only_layers(tree, layers) for name, tree in stored.items()
            }
        restored = checkpoints.restore_fields(step, wanted)
    params = member_slice(restored[which], local)
    if not with_state:
        return params
    return {"params": params, **member_slice(dict(restored[state_field]), local)}


def member_param_shapes(workdir: str | Path, index: int) -> Any:
    """Shapes of member `index`'s weights in a run's latest readable checkpoint (no member
    axis); CheckpointError as from `restore_member`."""
    with _latest_of_member(workdir, index) as (checkpoints, step, _):
        shapes = checkpoints.shapes(step, "best_params")
    return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), shapes)


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
    program: Program,
    data: Mapping[str, Any] | None = None,
) -> Path:
    """Writes member `index` of a stacked state as a single-model checkpoint (DIR/best,
    replaced if it exists); `step` is where the run ended, `data` the fingerprint of its data.

    Orbax writes into a temporary directory and renames it, so a killed export leaves no `best/`
    or a complete one. Every process of a multi-host run calls this (Orbax saves are collective).
    """
    trees = _member_trees(state, index, program)
    metadata = {
        **orbax_io.version_fields(),
        "member": int(index),
        "step": int(step),
        "best_step": int(np.asarray(state.best_step)[index]),
        "best_val_loss": float(np.asarray(state.best_val_loss)[index]),
        "config": json.loads(config.to_json()),
        "model": program.family.name,
        "num_outputs": int(program.num_outputs),
        "feature_shape": list(program.feature_shape),
        "preprocessing": program.preprocessing.to_json(),
        "data": dict(data or {}),
    }
    directory = Path(directory)
    checkpointer = _best_checkpointer()
    try:
        with orbax_io.saving():
            checkpointer.save(
                directory,
                args=ocp.args.Composite(
                    **{name: ocp.args.PyTreeSave(tree) for name, tree in trees.items()},
                    metadata=ocp.args.JsonSave(metadata),
                ),
                force=True,
            )
    finally:
        checkpointer.close()
    return directory


def _member_trees(state: train.TrainState, index: int, program: Program) -> dict[str, Any]:
    """The trees DIR/best holds of member `index` (`BEST_TREES`), as numpy arrays."""
    final = train.evaluated_params(jax.tree_util.tree_map(lambda leaf: leaf[index], state), program)
    member = member_slice(
        {
            "params": state.best_params,
            "hparams": state.hparams,
            "model_state": state.best_model_state,
            "final_model_state": state.model_state,
        },
        index,
    )
    trees = {
        "params": member["params"],
        "final_params": jax.tree_util.tree_map(np.asarray, final),
        "hparams": member["hparams"],
    }
    if member["model_state"]:
        trees |= {name: dict(member[name]) for name in STATE_TREES}
    return trees


def best_dir(path: str | Path) -> Path:
    """The exported model directory of `path`: `path/best` for a workdir, else `path` itself."""
    path = Path(path).expanduser().resolve()
    return path / BEST if (path / BEST).is_dir() else path


def best_metadata(path: str | Path) -> dict[str, Any]:
    """The JSON metadata of an exported model (`path` is a workdir or its `best/`).

    Raises:
      CheckpointError: no exported model there, an unreadable one, or one of another format.
    """
    directory = best_dir(path)
    if not (directory / "metadata").exists():
        raise CheckpointError(
            f"{Path(path)} holds no exported model (expected {directory}/metadata, written when "
            "a jaxnn run finishes)"
        )
    what = f"exported model {directory}"
    with orbax_io.reading(what):
        metadata = _best_checkpointer().restore(
            directory, args=ocp.args.Composite(metadata=ocp.args.JsonRestore())
        )["metadata"]
    orbax_io.check_version(metadata, what)
    return metadata


def best_param_shapes(path: str | Path, item: str = "params") -> Any:
    """Shapes of an exported model's params (or another of its trees), without reading them;
    {} for a model state tree the export does not have."""
    directory = best_dir(path)
    best_metadata(directory)
    if item in STATE_TREES and not (directory / item).is_dir():
        return {}
    with orbax_io.reading(f"exported model {directory}"):
        tree = _best_checkpointer().metadata(directory).item_metadata[item]
        return orbax_io.abstract_tree(tree.tree if hasattr(tree, "tree") else tree)


def read_best(path: str | Path, item: str = "params", layers: Sequence[str] | None = None) -> Any:
    """One tree of an exported model (`BEST_TREES`; `path` a workdir or its `best/`) as numpy
    arrays; `layers`: only these top-level entries (of a model state tree, of every collection).
    """
    shapes = best_param_shapes(path, item)
    if not shapes:
        return {}  # a model without state, or an export written before jaxnn kept it
    directory = best_dir(path)
    with orbax_io.reading(f"exported model {directory}"):
        if item in STATE_TREES:
            shapes = {name: _only_layers(tree, layers) for name, tree in shapes.items()}
        elif layers is not None:
            shapes = {name: shapes[name] for name in layers}
        restored = _best_checkpointer().restore(
            directory, args=ocp.args.Composite(**{item: orbax_io.partial_restore_args(shapes)})
        )[item]
    return jax.tree_util.tree_map(np.asarray, dict(restored))


@dataclasses.dataclass(frozen=True)
class LoadedModel:
    """An exported model: its weights, hyperparameters, config and rebuilt Module.

    Attributes:
      params: the selected member's best-validation weights (numpy arrays).
      hparams: its numeric hyperparameters (float32 scalars).
      model_state: the model state that goes with the weights (BatchNorm's statistics:
        collection -> layer -> arrays; {} for a model without one).
      preprocessing: what training did to the raw data (`apply` does it to its inputs).
    """

    params: Any
    hparams: dict[str, np.ndarray]
    config: ml_collections.ConfigDict
    module: Any
    model_state: dict[str, Any] = dataclasses.field(default_factory=dict)
    preprocessing: Preprocessing | None = None

    @property
    def variables(self) -> dict[str, Any]:
        """The Flax variables, {'params': ..., **model_state}: `module.apply(variables, x)`."""
        return {"params": self.params, **self.model_state}

    def apply(self, x: Any) -> jax.Array:
        """The model's outputs [N, num_outputs] (logits for classification) for raw inputs
        x [N, ...], standardised and checked as `load_predictor`'s predictor does.

        Raises:
          DataError: inputs of another shape, or not finite.
        """
        features = x if self.preprocessing is None else self.preprocessing.features(x)
        return self.apply_standardized(features)

    def apply_standardized(self, x: Any) -> jax.Array:
        """The model's outputs [N, num_outputs] in evaluation mode for inputs x [N, ...] already
        standardised (as a loaded `Dataset` holds them)."""
        return apply_model(
            self.module, self.params, jnp.asarray(x, jnp.float32), model_state=self.model_state
        )


def check_fits(
    module: Any,
    feature_shape: Sequence[int],
    stored: Any,
    where: Path,
    stored_state: Any = None,
) -> None:
    """Raises CheckpointError unless the stored weights (shapes) are the Module's parameters
    and, when given, the stored model state is the Module's state (same collections, layers
    and shapes)."""
    dummy = jax.ShapeDtypeStruct((1, *feature_shape), jnp.float32)
    params, state = split_variables(
        jax.eval_shape(lambda x: init_model(module, jax.random.PRNGKey(0), x), dummy)
    )
    parts = [(stored, params, "parameter")]
    if stored_state is not None:
        parts.append((stored_state, state, "model state entry"))
    for stored_tree, expected_tree, what in parts:
        stored_shapes = orbax_io.leaf_shapes(stored_tree)
        expected = orbax_io.leaf_shapes(expected_tree)
        for name, shape in expected.items():
            if stored_shapes.get(name) != shape:
                raise CheckpointError(
                    f"the model does not fit the weights in {where}: {what} {name} has shape "
                    f"{orbax_io.shape_text(shape)} in the model but "
                    f"{orbax_io.shape_text(stored_shapes.get(name))} there"
                )
        extra = sorted(set(stored_shapes) - set(expected))
        if extra:
            raise CheckpointError(
                f"the model does not fit the weights in {where}: it has no {what} {extra[0]}"
            )


def load_model(path: str | Path, *, model: Any = None) -> LoadedModel:
    """Loads an exported single model: a workdir (its `best/`) or the `best/` directory itself.

    A run of a registered family is rebuilt from its config. A run of the user's own model
    needs that model again (`model=`, as given to the run); the stored weights must have the
    shapes of its parameters.

    Raises:
      CheckpointError: no exported model, an unreadable one, one of another format, a user
        model that is not given, or parameters whose shapes differ from the model's.
    """
    metadata = best_metadata(path)
    config = upgrade(metadata["config"])
    trained = metadata.get("model", "mlp")
    if model is None and trained == "user":
        raise CheckpointError(
            f"{Path(path)} holds a model of the user's own code: pass it again, "
            "load_model(path, model=...), as it was given to the run"
        )
    family = run_spec.model_family(config, Components(model=model))
    hparams = read_best(path, "hparams")
    model_hparams = {f.hparam: jnp.float32(hparams[f.hparam]) for f in family.numeric_fields}
    module = family.build(config.model, model_hparams, int(metadata["num_outputs"]))
    check_fits(
        module,
        metadata["feature_shape"],
        best_param_shapes(path),
        best_dir(path),
        best_param_shapes(path, "model_state"),
    )
    return LoadedModel(
        params=read_best(path, "params"),
        hparams=hparams,
        config=config,
        module=module,
        model_state=read_best(path, "model_state"),
        preprocessing=Preprocessing.from_json(metadata["preprocessing"])
        if metadata.get("preprocessing")
        else None,
    )
