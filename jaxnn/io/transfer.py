"""Transfer learning: start a run's members from the weights of a finished pretraining run.

`init_from.workdir` names the pretraining run and `init_from.member` its weights: `best` (its
`DIR/best/`) or a member index (that member's best-validation weights in its latest checkpoint).
The body (every top-level parameter outside the head: the family's `head`, or `model.head`) is
restored with its model state; the head only with `init_from.restore = all`, else each member
initialises it by its own key. The modes and what they do to BatchNorm: docs/transfer.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import ml_collections

from jaxnn.errors import CheckpointError, WorkdirError
from jaxnn.io import export, run_files, run_readers
from jaxnn.io.orbax_io import shape_text
from jaxnn.nn.family import ModelFamily, body_head_labels
from jaxnn.nn.layer_table import LayerOrder, layer_table

BODY = "body"


@dataclasses.dataclass(frozen=True)
class Source:
    """The pretraining run and member whose weights a transfer run starts from."""

    workdir: Path
    member: str | int  # 'best' or a member index
    config: ml_collections.ConfigDict  # the pretraining run's config
    param_shapes: Any  # the member's params as jax.ShapeDtypeStruct (no member axis)

    def describe(self) -> str:
        which = "its selected member (best/)" if self.member == "best" else f"member {self.member}"
        return f"{self.workdir}, {which}"


def program_options(init_from: ml_collections.ConfigDict, head: Sequence[str]) -> dict[str, Any]:
    """`Program` fields of a transfer run: body/head labels, frozen body, body lr scale;
    `head`: the top-level parameter names of the model's head (the rest is the body)."""
    if not init_from.workdir:
        return {}
    labels = functools.partial(body_head_labels, head=tuple(head))
    if init_from.mode == "feature_extraction":
        return {"param_labels": labels, "frozen_labels": (BODY,)}
    if init_from.body_lr_scale != 1.0:
        return {
            "param_labels": labels,
            "label_lr_scales": ((BODY, float(init_from.body_lr_scale)),),
        }
    return {}


def check_source(workdir: Path, config: ml_collections.ConfigDict, family: ModelFamily) -> Source:
    """Checks `init_from` against the pretraining run in `workdir` (`RunSpec.source_workdir`)
    without reading any weights.

    Raises:
      CheckpointError: the workdir is missing, not a jaxnn run, holds no checkpoint (or no
        `best/` for member 'best'), the member index is out of range, a checkpoint is
        unreadable, or the model family or one of its `transfer_fields` differs.
    """
    init_from = config.init_from
    prefix = f"init_from.workdir={init_from.workdir!r}"
    if not workdir.is_dir():
        raise CheckpointError(f"{prefix}: no such directory")
    config_path = workdir / "config.json"
    if not config_path.exists():
        raise CheckpointError(f"{prefix} is not a jaxnn run (it has no config.json)")
    member: str | int = init_from.member
    if member == "best":
        if not (workdir / run_files.BEST).is_dir():
            raise CheckpointError(
                f"{prefix} holds no exported best member ({workdir / run_files.BEST} is missing: "
                "is the run finished?); finish it or name a member with init_from.member"
            )
        param_shapes = export.best_param_shapes(workdir)
    else:
        member = int(init_from.member)
        try:
            param_shapes = export.member_param_shapes(workdir, member)
        except CheckpointError as error:
            raise CheckpointError(f"{prefix}: {error}") from error
    try:
        source_config = run_readers.read_config(config_path, run_readers.SOURCE_WAY_OUT)
    except WorkdirError as error:
        raise CheckpointError(f"{prefix}: {error}") from error
    theirs = source_config.model.name
    if theirs != config.model.name:
        raise CheckpointError(
            f"{prefix}: the pretrained run is of model.name={theirs} but this run is of "
            f"model.name={config.model.name}: layers transfer between runs of one model family; "
            f"pretrain a {config.model.name} run or set model.name={theirs}"
        )
    for field in family.transfer_fields:
        theirs = source_config.model[field]
        if theirs != config.model[field]:
            raise CheckpointError(
                f"{prefix}: model.{field}={config.model[field]!r} does not match the "
                f"pretrained run's {theirs!r} (its layers were trained with it)"
            )
    return Source(workdir, member, source_config, param_shapes)


def _layer_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """'layer/name' -> shape for every array of a params tree (or of its abstract shapes)."""
    return {name: shape for name, shape, _ in layer_table(tree)}


def check_shapes(
    target: Any,
    source: Any,
    layers: list[str],
    describe: str,
    *,
    head: Sequence[str],
    order: LayerOrder | None = None,
    target_state: Any = None,
    source_state: Any = None,
) -> None:
    """Raises CheckpointError naming the first layer (in layer order) of `layers` (those
    restored) whose shape differs between this run's single-member params `target` and the
    pretrained `source`, then the first model state array (collection -> layer -> arrays) that
    differs. Trees may hold arrays or their shapes."""
    target_shapes = _layer_shapes({name: target[name] for name in layers})
    source_shapes = _layer_shapes(
        {name: tree for name, tree in source.items() if name not in head or name in layers}
    )
    in_order = [name for name, _, _ in layer_table({**source, **target}, order=order)]
    in_order += [name for name in source_shapes if name not in in_order]
    for name in in_order:
        mine, theirs = target_shapes.get(name), source_shapes.get(name)
        if mine == theirs:  # the same shape, or a layer that neither side restores
            continue
        if mine is None:
            detail = f"has shape {shape_text(theirs)} in the checkpoint but is not in this model"
        else:
            there = "is not" if theirs is None else shape_text(theirs)
            detail = f"has shape {shape_text(mine)} in this model but {there} in the checkpoint"
        raise CheckpointError(
            f"init_from: layer {name} {detail} ({describe}); the model's body must match the "
            "pretrained run's"
        )
    mine_state = _layer_shapes(target_state or {})  # names 'collection/layer/array'
    for name, shape in _layer_shapes(source_state or {}).items():
        here = mine_state.get(name)
        if here != shape:
            detail = "is not" if here is None else f"has shape {shape_text(here)}"
            raise CheckpointError(
                f"init_from: model state {name} {detail} in this model but has shape "
                f"{shape_text(shape)} in the checkpoint ({describe}); the model's body must "
                "match the pretrained run's"
            )


def load_pretrained(
    source: Source,
    config: ml_collections.ConfigDict,
    target_params: Any,
    *,
    head: Sequence[str],
    order: LayerOrder | None = None,
    target_state: Any = None,
) -> dict[str, Any]:
    """Reads the pretrained layers a run starts from (the head only with `init_from.restore =
    all`), with their model state, and checks their shapes against this run's single-member
    `target_params` and `target_state` (arrays or shapes; `check_shapes`).

    Returns:
      Flax variables of those layers as numpy arrays (`pretrained=` for ensemble.fit_ensemble):
      {'params': {layer: ...}, and each model state collection's entries of the same layers}.

    Raises:
      CheckpointError: a layer's shape differs, or the checkpoint is unreadable.
    """
    restore = config.init_from.restore
    layers = [name for name in target_params if restore == "all" or name not in head]
    stored = [name for name in layers if name in source.param_shapes]
    if source.member == "best":
        variables = {
            "params": export.read_best(source.workdir, "params", stored),
            **export.read_best(source.workdir, "model_state", stored),
        }
    else:
        variables = export.restore_member(
            source.workdir, int(source.member), layers=stored, with_state=True
        )
    state = {name: tree for name, tree in variables.items() if name != "params" and tree}
    describe = source.describe()
    check_shapes(
        target_params,
        source.param_shapes,
        layers,
        describe,
        head=head,
        order=order,
        target_state=target_state,
        source_state=state,
    )
    return {"params": variables["params"], **state}
