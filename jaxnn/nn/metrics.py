"""Evaluation metrics: the built-in ones of each task, and the `Metric` value users bring.

A metric maps a split's model outputs [N, O] and its targets (int labels [N], or regression
targets [N, O] as the model is trained on them, i.e. standardised) to one float32 scalar. It is
computed on every member at every evaluation of the training, train and validation splits, and
at the end on the test split; `restarts.select_by=val_NAME` selects members by it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

MetricFn = Callable[[jax.Array, jax.Array], jax.Array]
# Names a user's metric cannot take: the loss, and the built-in metrics of either task.
RESERVED = ("loss", "accuracy", "r2", "rmse", "batch_loss")


@dataclasses.dataclass(frozen=True)
class Metric:
    """A metric and whether greater is better (selection maximises or minimises it); a plain
    function given for a Metric counts as greater-is-better, as scikit-learn's scorers do."""

    fn: MetricFn
    greater_is_better: bool = True


def as_metric(value: Metric | MetricFn) -> Metric:
    """A Metric from a Metric or a plain function (greater is better)."""
    if isinstance(value, Metric):
        return value
    if not callable(value):
        raise TypeError(f"a metric must be a function (outputs, targets) -> scalar, got {value!r}")
    return Metric(fn=value)


def metric_for_task(task: str) -> str:
    """The headline metric of a task: accuracy for classification, R2 for regression."""
    return "accuracy" if task == "classification" else "r2"


def builtin_metrics(task: str, target_std: Sequence[float] = ()) -> dict[str, Metric]:
    """The metrics every run of a task reports: accuracy; or R2 and RMSE (in target units)."""
    if task == "classification":
        return {"accuracy": Metric(accuracy)}
    std = jnp.asarray(target_std or (1.0,), jnp.float32)
    return {
        "r2": Metric(r2),
        "rmse": Metric(lambda outputs, targets: rmse(outputs * std, targets * std), False),
    }


def accuracy(scores: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose highest score [B, C] is at their label [B]."""
    return jnp.mean(jnp.argmax(scores, axis=-1) == labels)


def _per_output(predictions: jax.Array, targets: jax.Array) -> tuple[jax.Array, jax.Array]:
    predictions, targets = jnp.asarray(predictions), jnp.asarray(targets)
    if predictions.ndim == 1:
        predictions, targets = predictions[:, None], targets[:, None]
    return predictions, targets.astype(predictions.dtype)


def r2(predictions: Any, targets: Any) -> jax.Array:
    """1 - SS_res / SS_tot of each output of predictions, targets [B, O] (or [B]), averaged over
    outputs; as scikit-learn's r2_score, an output with constant targets scores 1 if predicted
    exactly, else 0."""
    predictions, targets = _per_output(predictions, targets)
    ss_res = jnp.sum((targets - predictions) ** 2, axis=0)
    ss_tot = jnp.sum((targets - targets.mean(axis=0)) ** 2, axis=0)
    safe_tot = jnp.where(ss_tot > 0, ss_tot, 1.0)
    exact = jnp.where(ss_res > 0, 0.0, 1.0)  # constant targets: 1 if predicted exactly
    return jnp.where(ss_tot > 0, 1 - ss_res / safe_tot, exact).mean()


def rmse(predictions: Any, targets: Any) -> jax.Array:
    """Root mean squared error of each output of predictions, targets [B, O] (or [B]), averaged
    over outputs (as scikit-learn)."""
    predictions, targets = _per_output(predictions, targets)
    return jnp.sqrt(jnp.mean((targets - predictions) ** 2, axis=0)).mean()
