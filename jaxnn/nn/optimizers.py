"""Optax optimisers and learning-rate schedules from the `optimizer` config.

Every optimiser is a chain of optax pieces: an update direction (identity, trace, Adam or RMS
scaling), decoupled weight decay, then scaling by -learning_rate(count). Hyperparameters
(learning rate, momentum, weight decay) may be traced scalars, one per member of a vmapped
ensemble; the optimiser state's structure depends only on the config and the labels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnn.errors import ConfigError

Scalar = float | jax.Array
# name -> f(learning_rate schedule, momentum, weight_decay) -> optimiser.
OptimizerFactory = Callable[[optax.Schedule, Scalar, Scalar], optax.GradientTransformation]
# name -> f(opt_cfg, total_steps) -> unit schedule of a float32 count.
ScheduleFactory = Callable[[Any, int], optax.Schedule]

_UNSCALED = "__unscaled__"


def _lookup(registry: Mapping[str, Any], name: str, field: str) -> Any:
    if name not in registry:
        raise ConfigError(f"{field}: unknown {name!r}; choose one of {', '.join(sorted(registry))}")
    return registry[name]


def _decoupled(
    direction: optax.GradientTransformation,
    learning_rate: optax.Schedule,
    weight_decay: Scalar,
) -> optax.GradientTransformation:
    """direction, then + weight_decay * params, then * -learning_rate (as optax.adamw does).

    The decay step is always in the chain (its state is empty), so a swept weight decay needs
    no special structure; optax leaves a Python 0.0 out of the computation.
    """
    return optax.chain(
        direction,
        optax.add_decayed_weights(weight_decay),
        optax.scale_by_learning_rate(learning_rate),
    )


def _sgd(learning_rate: optax.Schedule, momentum: Scalar, weight_decay: Scalar):
    del momentum
    return _decoupled(optax.identity(), learning_rate, weight_decay)


def _momentum(learning_rate: optax.Schedule, momentum: Scalar, weight_decay: Scalar):
    # The trace is kept even for momentum 0 so every member has the same state structure.
    return _decoupled(optax.trace(decay=momentum), learning_rate, weight_decay)


def _nesterov(learning_rate: optax.Schedule, momentum: Scalar, weight_decay: Scalar):
    return _decoupled(optax.trace(decay=momentum, nesterov=True), learning_rate, weight_decay)


def _adam(learning_rate: optax.Schedule, momentum: Scalar, weight_decay: Scalar):
    del momentum
    return _decoupled(optax.scale_by_adam(), learning_rate, weight_decay)


def _adamw(learning_rate: optax.Schedule, momentum: Scalar, weight_decay: Scalar):
    del momentum
    return optax.adamw(learning_rate, weight_decay=weight_decay)


def _rmsprop(learning_rate: optax.Schedule, momentum: Scalar, weight_decay: Scalar):
    del momentum
    return _decoupled(optax.scale_by_rms(), learning_rate, weight_decay)


OPTIMIZERS: dict[str, OptimizerFactory] = {
    "sgd": _sgd,
    "momentum": _momentum,
    "nesterov": _nesterov,
    "adam": _adam,
    "adamw": _adamw,
    "rmsprop": _rmsprop,
}


def _step(opt_cfg: Any, total_steps: int) -> optax.Schedule:
    factors: dict[int, float] = {}
    for fraction in opt_cfg.boundaries:
        step = round(fraction * total_steps)
        factors[step] = factors.get(step, 1.0) * opt_cfg.decay_rate
    return optax.piecewise_constant_schedule(1.0, factors)


def _exponential(opt_cfg: Any, total_steps: int) -> optax.Schedule:
    return optax.exponential_decay(
        1.0,
        transition_steps=total_steps,
        decay_rate=opt_cfg.decay_rate,
        end_value=opt_cfg.decay_rate,
    )


def _warmup_cosine(opt_cfg: Any, total_steps: int) -> optax.Schedule:
    if opt_cfg.warmup_steps >= total_steps:
        raise ConfigError(
            f"optimizer.warmup_steps={opt_cfg.warmup_steps} must be smaller than the number of "
            f"training steps ({total_steps})"
        )
    return optax.warmup_cosine_decay_schedule(
        0.0, 1.0, opt_cfg.warmup_steps, total_steps, end_value=opt_cfg.end_fraction
    )


SCHEDULES: dict[str, ScheduleFactory] = {
    "constant": lambda opt_cfg, total_steps: optax.constant_schedule(1.0),
    "step": _step,
    "exponential": _exponential,
    "cosine": lambda opt_cfg, total_steps: optax.cosine_decay_schedule(
        1.0, total_steps, alpha=opt_cfg.end_fraction
    ),
    "warmup_cosine": _warmup_cosine,
    "linear": lambda opt_cfg, total_steps: optax.linear_schedule(
        1.0, opt_cfg.end_fraction, total_steps
    ),
}


def unit_schedule(opt_cfg: Any, total_steps: int) -> optax.Schedule:
    """The multiplier of the base learning rate at each step count: 1.0 at the peak.

    constant: 1. step: times decay_rate from step round(b * total_steps) for each boundary b.
    exponential: decay_rate ** (count / total_steps), held at decay_rate after. cosine and
    linear: from 1 to end_fraction at total_steps. warmup_cosine: 0 -> 1 linearly over
    warmup_steps, then cosine to end_fraction at total_steps.

    Raises:
      ConfigError: an unknown schedule, total_steps < 1, or warmup_steps >= total_steps.
    """
    factory = _lookup(SCHEDULES, opt_cfg.schedule, "optimizer.schedule")
    if total_steps < 1:
        raise ConfigError(f"the number of training steps must be >= 1, got {total_steps}")
    schedule = factory(opt_cfg, total_steps)

    def unit(count: jax.Array | int) -> jax.Array:
        # optax schedules divide the count by Python numbers: a float count keeps that legal
        # under strict dtype promotion.
        return jnp.asarray(schedule(jnp.asarray(count, jnp.float32)))

    return unit


def _relabel(param_labels: Any, rename: Callable[[str], str]) -> Callable[[Any], Any]:
    def labels(tree: Any) -> Any:
        given = param_labels(tree) if callable(param_labels) else param_labels
        return jax.tree.map(rename, given)

    return labels


def _with_labels(
    tx: optax.GradientTransformation,
    param_labels: Any,
    frozen_labels: Sequence[str],
    label_lr_scales: Mapping[str, Scalar],
) -> optax.GradientTransformation:
    frozen = frozenset(frozen_labels)
    if not frozen and not label_lr_scales:
        return tx
    if param_labels is None:
        raise ValueError("frozen_labels and label_lr_scales need param_labels")
    if frozen:
        # partition masks the frozen parameters out of the inner optimiser: no state for them,
        # and clipping sees only the trainable ones.
        trainable = _relabel(
            param_labels, lambda label: "frozen" if label in frozen else "trainable"
        )
        tx = optax.partition({"trainable": tx, "frozen": optax.set_to_zero()}, trainable)
    if label_lr_scales:
        transforms = {label: optax.scale(s) for label, s in label_lr_scales.items()}
        transforms[_UNSCALED] = optax.identity()
        scaled = _relabel(
            param_labels, lambda label: label if label in label_lr_scales else _UNSCALED
        )
        # Last, so a scale of 0 gives exactly zero update whatever came before.
        tx = optax.chain(tx, optax.partition(transforms, scaled))
    return tx


def make_optimizer(
    opt_cfg: Any,
    hparams: Mapping[str, Scalar],
    *,
    total_steps: int,
    param_labels: Any = None,
    label_lr_scales: Mapping[str, Scalar] | None = None,
    frozen_labels: Sequence[str] = (),
) -> optax.GradientTransformation:
    """The optimiser described by `opt_cfg`, with one member's hyperparameters.

    Args:
      opt_cfg: the `optimizer` config (name, schedule, clip_norm, ...).
      hparams: 'learning_rate', 'momentum', 'weight_decay' as floats or traced scalars; a
        missing one is taken from opt_cfg.
      total_steps: the length of the run, for the schedule.
      param_labels: a pytree of str labels like the params (or a callable params -> labels).
      label_lr_scales: label -> factor on that label's updates (applied last).
      frozen_labels: labels whose parameters get zero updates and keep no optimiser state.

    Returns:
      An optax GradientTransformation whose state structure depends only on opt_cfg and the
      labels, never on the hyperparameters' values.
    """
    factory = _lookup(OPTIMIZERS, opt_cfg.name, "optimizer.name")
    unit = unit_schedule(opt_cfg, total_steps)
    base_lr = hparams.get("learning_rate", opt_cfg.learning_rate)
    momentum = hparams.get("momentum", opt_cfg.momentum)
    weight_decay = hparams.get("weight_decay", opt_cfg.weight_decay)

    tx = factory(lambda count: base_lr * unit(count), momentum, weight_decay)
    if opt_cfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt_cfg.clip_norm), tx)
    return _with_labels(tx, param_labels, frozen_labels, label_lr_scales or {})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def validate_optimizer_config(opt_cfg: Any) -> None:
    """Checks the `optimizer` config fields; raises ConfigError naming the first bad one."""
    _lookup(OPTIMIZERS, opt_cfg.name, "optimizer.name")
    _lookup(SCHEDULES, opt_cfg.schedule, "optimizer.schedule")
    checks = [
        ("learning_rate", lambda v: v > 0, "must be > 0"),
        ("momentum", lambda v: 0 <= v < 1, "must be in [0, 1)"),
        ("weight_decay", lambda v: v >= 0, "must be >= 0"),
        ("clip_norm", lambda v: v >= 0, "must be >= 0 (0 = no clipping)"),
        ("warmup_steps", lambda v: isinstance(v, int) and v >= 0, "must be an integer >= 0"),
        ("decay_rate", lambda v: v > 0, "must be > 0"),
        ("end_fraction", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ]
    for field, valid, requirement in checks:
        value = getattr(opt_cfg, field)
        if not _is_number(value) or not valid(value):
            raise ConfigError(f"optimizer.{field} {requirement}, got {value!r}")
    boundaries = opt_cfg.boundaries
    ok = isinstance(boundaries, Sequence) and not isinstance(boundaries, str)
    ok = ok and all(_is_number(b) and 0 < b < 1 for b in boundaries)
    ok = ok and all(a < b for a, b in itertools.pairwise(boundaries))
    if not ok:
        raise ConfigError(
            f"optimizer.boundaries must be increasing fractions of the run in (0, 1), "
            f"e.g. (0.5, 0.75), got {boundaries!r}"
        )
