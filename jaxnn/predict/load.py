"""`load_predictor(path)`: a Predictor, in a new process, that predicts on raw inputs exactly
as the run's own predictor does. The preprocessing (feature statistics, target scaling, label
encoding) comes from the checkpoints' and the export's metadata; nothing is unpickled.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxnn import front_end, run_spec
from jaxnn.config.paths import expand_user
from jaxnn.core import ensemble, variants
from jaxnn.data.preprocessing import Preprocessing
from jaxnn.errors import CheckpointError
from jaxnn.io import checkpoint, export, run_files, run_readers
from jaxnn.io.workdir import RunPaths
from jaxnn.nn.components import Components
from jaxnn.nn.family import member_model
from jaxnn.nn.losses import task_functions
from jaxnn.nn.metrics import Metric, MetricFn
from jaxnn.predict.predictor import MemberGroup, Predictor


def load_predictor(
    path: str | Path,
    *,
    model: Any = None,
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    metrics: Mapping[str, Metric | MetricFn] | None = None,
    predict: Callable[[jax.Array], jax.Array] | None = None,
) -> Predictor:
    """The predictor of a finished (or checkpointed) run: a workdir (every member, from the
    latest checkpoint of each structural variant; "best" the member summary.json selected) or
    its `best/` export (the selected member alone).

    Args:
      model, loss, metrics, predict: the user's own parts, as given to the run (a run of a
        user's model needs its model again; its metrics are computed by `evaluate` if given).

    Raises:
      CheckpointError: nothing of a jaxnn run there, an unreadable or foreign checkpoint, a
        run written without its preprocessing, or a model whose parameters do not fit.
    """
    components = Components.of(model=model, loss=loss, metrics=metrics, predict=predict)
    root = expand_user(path, "load_predictor's path").resolve()
    if (root / run_files.CHECKPOINTS_DIR).is_dir() and (root / run_files.CONFIG).is_file():
        return _from_workdir(root, components)
    if (root / "metadata").exists():
        return _from_export(root, components)
    raise CheckpointError(
        f"{root} holds no jaxnn run (a workdir with {run_files.CHECKPOINTS_DIR}/ and "
        f"{run_files.CONFIG}) nor an exported model ({run_files.BEST}/metadata)"
    )


def _preprocessing(metadata: Mapping[str, Any], where: Path) -> Preprocessing:
    record = metadata.get("preprocessing")
    if not record:
        raise CheckpointError(
            f"{where} was written without its preprocessing (by an older jaxnn): it cannot "
            "predict on raw inputs; train it again, or use load_model on standardised inputs"
        )
    try:
        return Preprocessing.from_json(record)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise CheckpointError(
            f"{where}: its preprocessing record is damaged ({type(error).__name__}: "
            f"{' '.join(str(error).split())[:120]}); train the run again"
        ) from error


def _check_model_given(trained: str, components: Components, where: Path) -> None:
    if trained == "user" and components.model is None:
        raise CheckpointError(
            f"{where} holds a model of the user's own code: pass it again, "
            "load_predictor(path, model=...), as it was given to the run"
        )


def _group(
    spec: run_spec.RunSpec,
    preprocessing: Preprocessing,
    model: Callable[[Mapping[str, Any]], Any],
    params: Any,
    hparams: Mapping[str, np.ndarray],
    model_state: Any,
) -> MemberGroup:
    std = () if preprocessing.target_std is None else tuple(preprocessing.target_std.tolist())
    loss, predict, metrics = task_functions(spec.config, spec.components, preprocessing.task, std)
    return MemberGroup(model, params, hparams, loss, predict, metrics, model_state)


def _from_export(directory: Path, components: Components) -> Predictor:
    metadata = export.best_metadata(directory)
    preprocessing = _preprocessing(metadata, directory)
    _check_model_given(metadata.get("model", "mlp"), components, directory)
    loaded = export.load_model(directory, model=components.model)
    spec = front_end.resolve(loaded.config, components)
    stacked, state = jax.tree_util.tree_map(
        lambda leaf: np.asarray(leaf)[None], (loaded.params, loaded.model_state)
    )
    hparams = {k: np.asarray(v, np.float32)[None] for k, v in loaded.hparams.items()}
    group = _group(spec, preprocessing, lambda _: loaded.module, stacked, hparams, state)
    return Predictor(
        [group], preprocessing=preprocessing, diverged=[False], best_member=0, config=loaded.config
    )


def _from_workdir(root: Path, components: Components) -> Predictor:
    config = run_readers.read_config(root / run_files.CONFIG, run_readers.SOURCE_WAY_OUT)
    spec = front_end.resolve(config, components)
    specs = variants.variant_specs(spec)
    groups, diverged, best_losses = [], [], []
    preprocessing: Preprocessing | None = None
    for index, (_, variant_spec) in enumerate(specs):
        directory = RunPaths(root).variant_checkpoints(index, len(specs))
        tree, preprocessing, step_dir = _read_latest(directory, components)
        groups.append(_variant_group(variant_spec, preprocessing, tree, step_dir))
        diverged.append(np.asarray(tree["diverged"], bool))
        best_losses.append(np.asarray(tree["best_val_loss"], np.float64))
    if preprocessing is None:  # variant_specs gives at least one variant
        raise CheckpointError(f"{root} holds no variant's checkpoints")
    diverged_all = np.concatenate(diverged)
    summary = _summary(root, len(diverged_all))
    return Predictor(
        groups,
        preprocessing=preprocessing,
        diverged=diverged_all,
        best_member=_selected(summary, config, diverged_all, np.concatenate(best_losses)),
        config=config,
        left_out_of_ensemble=_left_out_of_ensemble(summary, len(diverged_all)),
    )


def _read_latest(
    directory: Path, components: Components
) -> tuple[dict[str, Any], Preprocessing, Path]:
    """The latest checkpoint's best weights and model state, hparams, diverged and
    best_val_loss (numpy), its preprocessing and its step directory."""
    reader = checkpoint.RunCheckpoints(directory, read_only=True)
    try:
        if not reader.steps():
            raise CheckpointError(f"{directory} holds no checkpoint")
        step = reader.steps()[-1]
        metadata = reader.meta(step)
        preprocessing = _preprocessing(metadata, reader.step_dir(step))
        _check_model_given(metadata.get("model", "mlp"), components, directory)
        fields = ("best_params", "best_model_state", "hparams", "diverged", "best_val_loss")
        tree = reader.restore_fields(step, {f: reader.shapes(step, f) for f in fields})
    finally:
        reader.close()
    return jax.tree_util.tree_map(np.asarray, tree), preprocessing, reader.step_dir(step)


def _variant_group(
    spec: run_spec.RunSpec, preprocessing: Preprocessing, tree: Mapping[str, Any], where: Path
) -> MemberGroup:
    """One variant's members as a MemberGroup, its first member's weights checked to fit."""
    family, removed = spec.family, spec.removed_hparams
    model_config, num_outputs = spec.config.model, preprocessing.num_outputs
    model = functools.partial(member_model, family, model_config, removed, num_outputs)
    first = {k: float(v[0]) for k, v in tree["hparams"].items()}
    one_member, one_state = jax.tree_util.tree_map(
        lambda leaf: leaf[0], (tree["best_params"], dict(tree["best_model_state"]))
    )
    export.check_fits(model(first), preprocessing.feature_shape, one_member, where, one_state)
    return _group(
        spec, preprocessing, model, tree["best_params"], tree["hparams"], tree["best_model_state"]
    )


def _summary(root: Path, num_members: int) -> Mapping[str, Any] | None:
    """summary.json of a finished run (None before it ends), its member indices checked."""
    path = root / run_files.SUMMARY
    if not path.exists():
        return None
    summary = run_readers.read_summary(path, run_readers.SOURCE_WAY_OUT)
    selected, averaged = summary["best_member"], summary.get("ensemble_members", [])
    if selected is not None and selected >= num_members:
        raise run_readers.damaged(
            path,
            f"its best_member {selected} is not one of the run's {num_members} members",
            run_readers.SOURCE_WAY_OUT,
        )
    if not isinstance(averaged, list) or not all(
        type(i) is int and 0 <= i < num_members for i in averaged
    ):
        raise run_readers.damaged(
            path,
            f"its ensemble_members must list member indices 0..{num_members - 1}",
            run_readers.SOURCE_WAY_OUT,
        )
    return summary


def _left_out_of_ensemble(summary: Mapping[str, Any] | None, num_members: int) -> np.ndarray | None:
    """bool [num_members]: the members summary.json's ensemble did not average (None: no
    summary yet, or one written before it listed them: the non-diverged members)."""
    if summary is None or "ensemble_members" not in summary:
        return None
    return ~np.isin(np.arange(num_members), summary["ensemble_members"])


def _selected(
    summary: Mapping[str, Any] | None, config: Any, diverged: np.ndarray, best_val_loss: np.ndarray
) -> int | None:
    """The member summary.json selected; for a run without one yet, the lowest validation loss
    when it selects by val_loss (else none: name a member)."""
    if summary is not None:
        return summary["best_member"]
    if config.restarts.select_by != "val_loss":
        return None
    losses = {"val_loss": best_val_loss}
    return ensemble.select_best(losses, diverged, "val_loss", greater_is_better=False)
