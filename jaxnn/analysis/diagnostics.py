"""Training diagnostics of every member: per-layer gradient and weight norms, dead and saturated
units, and the update-to-weight ratio.

All diagnostics are computed from a (stacked) `TrainState` between chunks, in one extra jitted
dispatch per evaluation, so the training program itself is unchanged whether they are on or
off (`diagnostics.enabled`). Definitions (per member):

- `grad_norm/<layer>/<param>`: L2 norm of the gradient of the mean training loss over the
  whole training split (no dropout) with respect to that parameter array.
- `weight_norm/<layer>/<param>`: L2 norm of the parameter array.
- `update_ratio/<layer>/<param>`: ||u|| / ||w||, where u is the update the member's optimiser
  (with its current state and hyperparameters) makes from that full-split gradient.
- `dead_fraction` and `dead_fraction/<layer>`: fraction of hidden ReLU units whose
  pre-activation is <= 0 on every validation example (so their output and gradient are zero
  on the whole split). Only ReLU units can die: for any other activation the value is None
  (not applicable), never 0.
- `saturated_fraction` and `saturated_fraction/<layer>`: for sigmoid and tanh, the fraction
  of (validation example, unit) pairs whose |pre-activation| exceeds `SATURATION_THRESHOLDS`
  (4 for sigmoid, 2 for tanh: there the derivative has fallen to 7% of its maximum); None for
  other activations. The hidden layers are those whose pre-activations the model family
  reports (`ModelFamily.preactivations`: `hidden_<i>` for the MLP; each conv layer's channels,
  a unit at every position, for cnn1d and cnn2d; every activation's input for resnet, read
  with the member's BatchNorm statistics); a family that reports none (a user's own model)
  has the norms and ratios only.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxnn.core.program import Params, Program
from jaxnn.core.train import optimizer_update
from jaxnn.io import atomic

# |pre-activation| beyond which a unit counts as saturated: where sigmoid'(x) / sigmoid'(0) and
# tanh'(x) / tanh'(0) have both fallen to about 0.07.
SATURATION_THRESHOLDS = {"sigmoid": 4.0, "tanh": 2.0}
DEAD_ACTIVATIONS = ("relu",)


def layer_norms(tree: Params) -> dict[str, jax.Array]:
    """L2 norm of every array of a parameter-like pytree: 'hidden_0/kernel' -> float32 []."""
    flat = traverse_util.flatten_dict(tree, sep="/")
    return {name: jnp.sqrt(jnp.sum(jnp.square(leaf))) for name, leaf in flat.items()}


def full_loss(
    state: Any, params: Params, x: jax.Array, y: jax.Array, program: Program
) -> jax.Array:
    """Mean loss of `params` on a whole split, without dropout and with the model state read
    (not updated): what the gradient norms use."""
    outputs, _ = state.apply_fn(params, state.model_state, x, state.hparams)
    return jnp.mean(program.loss(outputs, y))


def activation(program: Program) -> str | None:
    """The activation of the hidden units, where the model family names one."""
    field = program.family.activation_field
    return None if field is None else str(program.model_config[field])


def preactivations(
    program: Program,
    params: Params,
    model_state: Mapping[str, Any],
    hparams: Mapping[str, jax.Array],
    x: jax.Array,
) -> dict[str, jax.Array]:
    """Pre-activations [N, width] of every hidden layer by name, in order (no dropout, the
    model state read: BatchNorm normalises by its running statistics); empty for a model
    family that declares none."""
    if program.family.preactivations is None:
        return {}
    variables = {"params": params, **model_state}
    return program.family.preactivations(program.model(dict(hparams)), variables, x)


def unit_fractions(program: Program, pre: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Dead and saturated unit fractions from hidden pre-activations [N, width] per layer.

    Keys are only present where they apply: `dead_fraction*` for ReLU, `saturated_fraction*` for
    sigmoid and tanh.
    """
    name = activation(program)
    out: dict[str, jax.Array] = {}
    if not pre:
        return out
    if name in DEAD_ACTIVATIONS:
        dead = {layer: jnp.all(h <= 0, axis=0) for layer, h in pre.items()}  # bool [width]
        for layer, units in dead.items():
            out[f"dead_fraction/{layer}"] = jnp.mean(units)
        out["dead_fraction"] = jnp.mean(jnp.concatenate(list(dead.values())))
    threshold = None if name is None else SATURATION_THRESHOLDS.get(name)
    if threshold is not None:
        saturated = {layer: jnp.abs(h) > threshold for layer, h in pre.items()}
        for layer, units in saturated.items():
            out[f"saturated_fraction/{layer}"] = jnp.mean(units)
        out["saturated_fraction"] = jnp.mean(
            jnp.concatenate([s.reshape(-1) for s in saturated.values()])
        )
    return out


def member_diagnostics(
    state: Any, train_split: Any, val_split: Any, program: Program
) -> dict[str, jax.Array]:
    """Every diagnostic of one member (pure and vmappable); see the module docstring.

    Args:
      state: one member's `jaxnn.core.train.TrainState`.
      train_split, val_split: `SplitData(x, y)` of the training and validation splits.

    Returns:
      name -> float32 [] (only the diagnostics that apply to the activation).
    """
    loss, grads = jax.value_and_grad(full_loss, argnums=1)(
        state, state.params, train_split.x, train_split.y, program
    )
    updates, _ = optimizer_update(state, grads, loss)
    grad_norms, weight_norms = layer_norms(grads), layer_norms(state.params)
    update_norms = layer_norms(updates)
    out = {f"grad_norm/{k}": v for k, v in grad_norms.items()}
    out |= {f"weight_norm/{k}": v for k, v in weight_norms.items()}
    out |= {
        f"update_ratio/{k}": update_norms[k] / jnp.maximum(weight_norms[k], 1e-12)
        for k in weight_norms
    }
    pre = preactivations(program, state.params, state.model_state, state.hparams, val_split.x)
    return out | unit_fractions(program, pre)


@functools.partial(jax.jit, static_argnames="program")
def _stacked(
    state: Any, train_split: Any, val_split: Any, program: Program
) -> dict[str, jax.Array]:
    return jax.vmap(member_diagnostics, in_axes=(0, None, None, None))(
        state, train_split, val_split, program
    )


def not_applicable(program: Program, layers: Sequence[str]) -> list[str]:
    """Names of the unit diagnostics that do not apply to the program's activation (None)."""
    name = activation(program)
    names = []
    if name not in DEAD_ACTIVATIONS:
        names += ["dead_fraction", *(f"dead_fraction/{layer}" for layer in layers)]
    if name not in SATURATION_THRESHOLDS:
        names += ["saturated_fraction", *(f"saturated_fraction/{layer}" for layer in layers)]
    return names


def hidden_layers(state: Any, data: Any, program: Program) -> list[str]:
    """The names of the hidden layers the family reports pre-activations of (shapes only)."""
    first = jax.tree_util.tree_map(lambda leaf: leaf[0], state)
    shapes = jax.eval_shape(
        lambda s, x: preactivations(program, s.params, s.model_state, s.hparams, x),
        first,
        data.val.x,
    )
    return list(shapes)


def compute(
    state: Any, data: Any, program: Program, *, layers: Sequence[str] | None = None
) -> dict[str, np.ndarray | None]:
    """Diagnostics of every member of a stacked state.

    Args:
      state: a stacked `TrainState` (leading member axis on every leaf).
      data: `jaxnn.data.device.TrainingData` (the train and validation splits on the device).
      layers: `hidden_layers(state, data, program)`, when the caller has them already.

    Returns:
      name -> float64 [num_members], and name -> None for unit diagnostics that do not apply
      to the activation (e.g. `dead_fraction` of a tanh net).
    """
    values = jax.device_get(_stacked(state, data.train, data.val, program))
    out: dict[str, np.ndarray | None] = {
        k: np.asarray(v, np.float64) for k, v in sorted(values.items())
    }
    if layers is None:
        layers = hidden_layers(state, data, program)
    return out | dict.fromkeys(not_applicable(program, layers))


def records(
    step: int, diagnostics: Mapping[str, np.ndarray | None], member_indices: Sequence[int]
) -> list[dict[str, Any]]:
    """diagnostics.jsonl rows of one evaluation: {"step", "member", <name>: value or None}."""
    rows = []
    for row, member in enumerate(member_indices):
        record: dict[str, Any] = {"step": int(step), "member": int(member)}
        for name, values in diagnostics.items():
            record[name] = None if values is None else float(values[row])
        rows.append(record)
    return rows


class Monitor:
    """An `on_eval` callback that appends every member's diagnostics to DIR/diagnostics.jsonl.

    Args:
      path: the diagnostics.jsonl file.
      data: the `TrainingData` the run trains on.
      member_indices: the (global) member index of each row of the stacked state.
    """

    def __init__(
        self, path: Path, data: Any, program: Program, member_indices: Sequence[int]
    ) -> None:
        self._path = Path(path)
        self._data = data
        self._program = program
        self._indices = list(member_indices)
        self._layers: list[str] | None = None  # traced once, at the first evaluation
        self.history: list[tuple[int, dict[str, np.ndarray | None]]] = []

    def __call__(self, evaluation: Any) -> None:
        if self._layers is None:
            self._layers = hidden_layers(evaluation.state, self._data, self._program)
        values = compute(evaluation.state, self._data, self._program, layers=self._layers)
        self.history.append((evaluation.step, values))
        atomic.append_jsonl(self._path, records(evaluation.step, values, self._indices))


def layer_series(
    diagnostics: Mapping[str, np.ndarray | None], kind: str, param: str = "kernel"
) -> tuple[list[str], np.ndarray]:
    """The layers and values [num_layers, num_members] of one kind (e.g. 'grad_norm'), in order.

    Hidden layers come first by index, then the head.
    """
    prefix = f"{kind}/"
    names = [
        k.removeprefix(prefix).removesuffix(f"/{param}")
        for k in diagnostics
        if k.startswith(prefix) and k.endswith(f"/{param}")
    ]

    def order(name: str) -> tuple[int, int]:
        head, _, index = name.rpartition("_")
        return (0, int(index)) if head == "hidden" and index.isdigit() else (1, 0)

    names.sort(key=order)
    values = [diagnostics[f"{prefix}{n}/{param}"] for n in names]
    rows = [v for v in values if v is not None]
    if len(rows) < len(values):
        raise ValueError(f"{kind} does not apply to every layer of these diagnostics")
    return names, np.stack(rows)
