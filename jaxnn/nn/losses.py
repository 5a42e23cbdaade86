"""Per-example losses and evaluation metrics.

Classification targets are int labels [B]; regression targets are float [B, O]. Losses that
compare outputs with targets elementwise (mse, mae, huber, binary_cross_entropy) compare a
classifier's outputs with one_hot(labels) and average over the O outputs.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnn.config.fields import Choice
from jaxnn.errors import ConfigError
from jaxnn.nn.components import Components
from jaxnn.nn.lookup import lookup
from jaxnn.nn.metrics import Metric, builtin_metrics

TASKS = ("classification", "regression")
CLASSIFICATION_ONLY = ("cross_entropy", "binary_cross_entropy")

Loss = Callable[..., jax.Array]


def _as_targets(outputs: jax.Array, targets: jax.Array) -> jax.Array:
    """Int labels [B] -> one-hot [B, O] in the outputs' dtype; float targets [B, O] as they are."""
    targets = jnp.asarray(targets)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        return jax.nn.one_hot(targets, outputs.shape[-1], dtype=outputs.dtype)
    if targets.shape != outputs.shape:
        raise ValueError(f"targets of shape {targets.shape} do not match outputs {outputs.shape}")
    return targets.astype(outputs.dtype)


def _cross_entropy(outputs: jax.Array, targets: jax.Array, *, huber_delta: float) -> jax.Array:
    del huber_delta
    targets = jnp.asarray(targets)
    if jnp.issubdtype(targets.dtype, jnp.integer):
        return optax.losses.softmax_cross_entropy_with_integer_labels(outputs, targets)
    return optax.losses.softmax_cross_entropy(outputs, _as_targets(outputs, targets))


def _elementwise(error: Callable[[jax.Array, jax.Array, float], jax.Array]) -> Loss:
    """The loss that averages error(outputs, targets, huber_delta) [B, O] over the O outputs
    (a classifier's targets as one-hot labels)."""

    def loss(outputs: jax.Array, targets: jax.Array, *, huber_delta: float) -> jax.Array:
        return error(outputs, _as_targets(outputs, targets), huber_delta).mean(axis=-1)

    return loss


# name -> f(outputs [B, O], targets, *, huber_delta) -> per-example loss [B].
LOSSES: dict[str, Loss] = {
    "cross_entropy": _cross_entropy,
    "binary_cross_entropy": _elementwise(
        lambda outputs, targets, delta: optax.losses.sigmoid_binary_cross_entropy(outputs, targets)
    ),
    "mse": _elementwise(
        lambda outputs, targets, delta: optax.losses.squared_error(outputs, targets)
    ),
    "mae": _elementwise(lambda outputs, targets, delta: jnp.abs(outputs - targets)),
    "huber": _elementwise(
        lambda outputs, targets, delta: optax.losses.huber_loss(outputs, targets, delta=delta)
    ),
}


# The config's `loss`: a name of LOSSES (the message lists them).
NAME_RULE = Choice("loss", LOSSES)


def _lookup_loss(name: str) -> Loss:
    return lookup(LOSSES, name, "loss")


def per_example_loss(
    name: str, outputs: jax.Array, targets: jax.Array, *, huber_delta: float = 1.0
) -> jax.Array:
    """The loss `name` of each example [B]: outputs [B, O] (logits for the cross entropies),
    targets int labels [B] or float [B, O]; huber turns linear beyond `huber_delta`."""
    return _lookup_loss(name)(outputs, targets, huber_delta=huber_delta)


def check_loss_for_task(name: str, task: str) -> None:
    """Raises ConfigError when the loss is unknown or does not apply to the task."""
    _lookup_loss(name)
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task == "regression" and name in CLASSIFICATION_ONLY:
        usable = sorted(set(LOSSES) - set(CLASSIFICATION_ONLY))
        raise ConfigError(
            f"loss {name!r} needs a classification data set; for regression use one of "
            f"{', '.join(usable)}"
        )


def validate_loss_config(loss: str, huber_delta: float) -> None:
    """Checks the `loss` and `huber_delta` config fields; raises ConfigError."""
    problem = NAME_RULE.problem(loss)
    if problem is not None:
        raise ConfigError(problem)
    valid = isinstance(huber_delta, int | float) and not isinstance(huber_delta, bool)
    if not valid or not (math.isfinite(huber_delta) and huber_delta > 0):
        raise ConfigError(f"huber_delta must be a finite number > 0, got {huber_delta!r}")


def predictions(name: str, task: str, outputs: jax.Array) -> jax.Array:
    """What an ensemble averages: softmax (cross_entropy), sigmoid (binary_cross_entropy),
    raw outputs otherwise. outputs [B, O] -> [B, O]."""
    del task  # The loss alone decides how outputs are read.
    if name == "cross_entropy":
        return jax.nn.softmax(outputs, axis=-1)
    if name == "binary_cross_entropy":
        return jax.nn.sigmoid(outputs)
    return outputs


PerExampleLoss = Callable[[jax.Array, jax.Array], jax.Array]
Predict = Callable[[jax.Array], jax.Array]


def loss_fn(name: str, *, huber_delta: float = 1.0) -> PerExampleLoss:
    """The registered loss `name` as a function (outputs [B, O], targets) -> per-example [B]."""
    loss = _lookup_loss(name)
    return lambda outputs, targets: loss(outputs, targets, huber_delta=huber_delta)


def default_predict(loss: str | None, task: str) -> Predict:
    """What an ensemble averages for a loss: `predictions` of a registered loss; for a user's
    own loss (None), softmax probabilities in classification and raw outputs in regression."""
    if loss is None:
        loss = "cross_entropy" if task == "classification" else "mse"
    return lambda outputs: predictions(loss, task, outputs)


def task_functions(
    config: Any,
    components: Components,
    task: str,
    target_std: tuple[float, ...],
) -> tuple[PerExampleLoss, Predict, tuple[tuple[str, Metric], ...]]:
    """A run's per-example loss, prediction function and metrics (built-in, then the user's):
    the user's components where given, else the config's `loss`."""
    loss = components.loss or loss_fn(config.loss, huber_delta=float(config.huber_delta))
    predict = components.predict or default_predict(None if components.loss else config.loss, task)
    metrics = (*builtin_metrics(task, target_std).items(), *components.metrics)
    return loss, predict, metrics
