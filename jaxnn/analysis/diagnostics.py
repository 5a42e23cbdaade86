"""Training diagnostics of every member, from a stacked `TrainState` between chunks in one extra
jitted dispatch per evaluation (the training program is the same with them on or off). Per member:

- `grad_norm/<layer>/<param>`, `weight_norm/<layer>/<param>`: L2 norm of the gradient of the
  mean training loss over the whole training split (no dropout), and of the parameter array.
- `update_ratio/<layer>/<param>`: ||u|| / ||w||, u the update the member's optimiser (its
  current state and hyperparameters) makes from that gradient.
- `dead_fraction[/<layer>]`, ReLU only: the fraction of hidden units whose pre-activation is
  <= 0 on every validation example (their output and gradient are zero on the whole split).
- `saturated_fraction[/<layer>]`, sigmoid and tanh only: the fraction of (validation example,
  unit) pairs whose |pre-activation| exceeds `SATURATION_THRESHOLDS`.

A unit diagnostic that does not apply to the activation is None, never 0. A family that reports
no pre-activations (`ModelFamily.preactivations`; a user's own model) has norms and ratios only.
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
    """Pre-activations [N, width] of every hidden layer by name, in order (no dropout; BatchNorm
    normalises by its running statistics); empty for a family that declares none."""
    if program.family.preactivations is None:
        return {}
    variables = {"params": params, **model_state}
    return program.family.preactivations(program.model(dict(hparams)), variables, x)


def unit_fractions(program: Program, pre: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Dead and saturated unit fractions from hidden pre-activations [N, width] per layer, only
    those that apply to the activation."""
    name = activation(program)
    flags: dict[str, dict[str, jax.Array]] = {}  # kind -> layer -> bool per unit
    if pre and name in DEAD_ACTIVATIONS:
        flags["dead_fraction"] = {layer: jnp.all(h <= 0, axis=0) for layer, h in pre.items()}
    if pre and name in SATURATION_THRESHOLDS:
        threshold = SATURATION_THRESHOLDS[name]
        flags["saturated_fraction"] = {layer: jnp.abs(h) > threshold for layer, h in pre.items()}
    out: dict[str, jax.Array] = {}
    for kind, by_layer in flags.items():
        out |= {f"{kind}/{layer}": jnp.mean(units) for layer, units in by_layer.items()}
        out[kind] = jnp.mean(jnp.concatenate([units.reshape(-1) for units in by_layer.values()]))
    return out


def member_diagnostics(
    state: Any, train_split: Any, val_split: Any, program: Program
) -> dict[str, jax.Array]:
    """Every diagnostic that applies of one member's `TrainState` (pure and vmappable):
    name -> float32 []. The splits are `SplitData(x, y)`."""

    def full_loss(params: Params) -> jax.Array:
        """Mean loss on the whole split, without dropout, the model state read only."""
        outputs, _ = state.apply_fn(params, state.model_state, train_split.x, state.hparams)
        return jnp.mean(program.loss(outputs, train_split.y))

    loss, grads = jax.value_and_grad(full_loss)(state.params)
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
    """Diagnostics of every member of a stacked `TrainState`, on `jaxnn.data.device.TrainingData`:
    name -> float64 [num_members], or None for a unit diagnostic that does not apply.

    Args:
      layers: `hidden_layers(state, data, program)`, when the caller has them already.
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
    return [
        {"step": int(step), "member": int(member)}
        | {name: None if v is None else float(v[row]) for name, v in diagnostics.items()}
        for row, member in enumerate(member_indices)
    ]


class Monitor:
    """An `on_eval` callback that appends every member's diagnostics to DIR/diagnostics.jsonl;
    `member_indices` are the global indices of the stacked state's rows."""

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
    diagnostics: Mapping[str, np.ndarray | None], kind: str
) -> tuple[list[str], np.ndarray]:
    """The layers and kernel values [num_layers, num_members] of one kind (e.g. 'grad_norm'):
    the hidden layers by index, then the head."""
    prefix = f"{kind}/"
    names = [
        k.removeprefix(prefix).removesuffix("/kernel")
        for k in diagnostics
        if k.startswith(prefix) and k.endswith("/kernel")
    ]

    def order(name: str) -> tuple[int, int]:
        head, _, index = name.rpartition("_")
        return (0, int(index)) if head == "hidden" and index.isdigit() else (1, 0)

    names.sort(key=order)
    values = [diagnostics[f"{prefix}{n}/kernel"] for n in names]
    rows = [v for v in values if v is not None]
    if len(rows) < len(values):
        raise ValueError(f"{kind} does not apply to every layer of these diagnostics")
    return names, np.stack(rows)
