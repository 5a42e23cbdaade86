"""Averaged weights: an exponential moving average of a member's weights (`optimizer.ema_decay`).

With a decay d in (0, 1) a member keeps `optax.ema`'s average of its weights w_t after each
optimiser step it takes: m_0 = 0, m_t = d * m_{t-1} + (1 - d) * w_t, averaged m_t / (1 - d ** t)
(a weighted mean of w_1 .. w_t). Evaluation, the best weights and the export read the averaged
weights; the optimiser trains the raw ones; the model state is not averaged. The decay is a
per-member number (d = 0: no averaging); when it is 0 and not varied, members keep no average.
"""

from __future__ import annotations

from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
import optax

from jaxnn.config.fields import NumericField

Params = Any
# A member's average: optax.EmaState(count, ema), or {} when the run keeps none.
EmaState: TypeAlias = optax.EmaState | dict[str, Any]

EMA_DECAY = NumericField(
    "optimizer.ema_decay",
    "ema_decay",
    lambda v: 0.0 <= v < 1.0,
    "must be in [0, 1) (0 = no averaged weights)",
    # Not carried unless swept: a run without averaging keeps its members' hparams (and old
    # checkpoints) as they were, and a constant decay stays a Python float.
    constant_unless_swept=True,
)
NUMERIC_FIELDS: tuple[NumericField, ...] = (EMA_DECAY,)


def run_decay(opt_cfg: Any, varied_fields: frozenset[str]) -> float | None:
    """The config's decay when the run's members keep averaged weights (a decay > 0, or one
    that a sweep or search varies), else None."""
    decay = float(opt_cfg.ema_decay)
    return decay if decay > 0 or EMA_DECAY.field in varied_fields else None


def init(params: Params, decay: float | None) -> EmaState:
    """A member's empty average (count 0), or {} when the run keeps none (`decay` None)."""
    if decay is None:
        return {}
    return optax.ema(0.0).init(params)


def update(state: EmaState, params: Params, decay: float | jax.Array) -> EmaState:
    """The average after a step that left the weights at `params` (optax.ema's update)."""
    if not state:
        return state
    # debias=False: the state is the same either way, and `averaged` debiases on demand.
    _, new_state = optax.ema(decay, debias=False).update(params, state)
    return new_state


def averaged(state: EmaState, params: Params, decay: float | jax.Array) -> Params:
    """The debiased averaged weights, or `params` when the run keeps no average or the member
    has not taken a step yet."""
    if isinstance(state, dict):  # {}: the run keeps no average
        return params
    debiased = optax.tree.bias_correction(state.ema, decay, state.count.astype(jnp.float32))
    started = state.count > 0
    return jax.tree_util.tree_map(lambda a, p: jnp.where(started, a, p), debiased, params)
