"""Population-based training: members take over better members' states between chunks.

Every `pbt_interval` steps each of the bottom `floor(n * pbt_fraction)` members by
`restarts.select_by` copies the whole state (but its member key) of one of the top as many, then
per searched field multiplies the value by 1 -/+ p or, with probability `pbt_resample`, draws it
anew. Hyperparameters are state leaves, so nothing recompiles; the draws use `decision_key`, so a
resume makes the same decisions. Each copy is an event row (step, member, parent, values).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import run_spec
from jaxnn.config.schedule import Schedule
from jaxnn.core import train
from jaxnn.core.program import Program
from jaxnn.core.schedules import members
from jaxnn.errors import ConfigError

PBT_TAG = 0x9B7  # fold_in tag of PBT's decision keys under the run's root key


@dataclasses.dataclass(frozen=True)
class HparamRange:
    """A searched field as PBT perturbs it: the hyperparameter name and its range."""

    field: str
    hparam: str
    distribution: str
    low: float
    high: float
    integer: bool


def hparam_ranges(spec: run_spec.RunSpec) -> tuple[HparamRange, ...]:
    """The searched fields of a run, by the hyperparameter names members carry them under."""
    if spec.search is None:
        return ()
    fields = spec.numeric_fields()
    return tuple(
        HparamRange(
            field, fields[field].hparam, r.distribution, r.low, r.high, bool(fields[field].integer)
        )
        for field, r in spec.search.ranges.items()
    )


def pbt_interval(schedule: Schedule, program: Program) -> int:
    """Steps between PBT exploits (`restarts.pbt_interval`, 0: every evaluation).

    Raises:
      ConfigError: an interval that is not a whole number of evaluations.
    """
    interval = schedule.pbt_interval or program.eval_every
    if interval % program.eval_every:
        raise ConfigError(
            f"restarts.pbt_interval={interval} must be a multiple of training.eval_every="
            f"{program.eval_every} (members are ranked at evaluations)"
        )
    return interval


def decision_key(root: jax.Array, step: int) -> jax.Array:
    """The key of the exploit at `step`: the same on a resume."""
    return jax.random.fold_in(jax.random.fold_in(root, PBT_TAG), step)


def make_exploit(
    schedule: Schedule, ranges: tuple[HparamRange, ...], num_members: int
) -> Callable[[train.TrainState, jax.Array, jax.Array], Any]:
    """The jitted PBT step: (state, values float32 [n] lower first, key) -> (state, source,
    destination): the bottom members copy a top member and perturb or redraw its values."""
    replaced = math.floor(num_members * schedule.pbt_fraction)

    def exploit(
        state: train.TrainState, values: jax.Array, key: jax.Array
    ) -> tuple[train.TrainState, jax.Array, jax.Array]:
        order = jnp.argsort(values, stable=True)
        top, bottom = order[:replaced], order[num_members - replaced :]
        source = top[jax.random.randint(jax.random.fold_in(key, 0), (replaced,), 0, replaced)]
        state = members.copy_members(state, bottom, source)
        hparams = dict(state.hparams)
        for j, spec in enumerate(ranges):
            copied = hparams[spec.hparam][bottom]
            new = _explore(schedule, spec, copied, jax.random.fold_in(key, j + 1))
            hparams[spec.hparam] = hparams[spec.hparam].at[bottom].set(new)
        return state.replace(hparams=hparams), source, bottom

    return jax.jit(exploit)


def _explore(schedule: Schedule, spec: HparamRange, copied: jax.Array, key: jax.Array) -> jax.Array:
    """The copied values [r] of one field perturbed by 1 -/+ p, or drawn anew from its range."""
    replaced = copied.shape[0]
    k_up, k_draw, k_new = jax.random.split(key, 3)
    up = jax.random.bernoulli(k_up, 0.5, (replaced,))
    perturbed = copied * jnp.where(up, 1 + schedule.pbt_perturb, 1 - schedule.pbt_perturb)
    u = jax.random.uniform(k_draw, (replaced,))
    if spec.distribution == "loguniform":
        drawn = jnp.exp(math.log(spec.low) + u * (math.log(spec.high) - math.log(spec.low)))
    elif spec.integer:
        drawn = jnp.floor(spec.low + u * (spec.high + 1 - spec.low))
    else:
        drawn = spec.low + u * (spec.high - spec.low)
    new = jnp.where(
        jax.random.bernoulli(k_new, schedule.pbt_resample, (replaced,)), drawn, perturbed
    )
    if spec.integer:
        new = jnp.round(new)
    return jnp.clip(new, spec.low, spec.high).astype(copied.dtype)


def exploit_events(
    state: train.TrainState,
    step: int,
    source: jax.Array,
    destination: jax.Array,
    ranges: tuple[HparamRange, ...],
) -> list[dict[str, Any]]:
    """The event rows of one exploit: each destination's parent and new values."""
    hparams = {r.hparam: np.asarray(jax.device_get(state.hparams[r.hparam])) for r in ranges}
    return [
        {
            "step": int(step),
            "member": int(dst),
            "parent": int(src),
            **{name: float(values[dst]) for name, values in hparams.items()},
        }
        for src, dst in zip(np.asarray(source), np.asarray(destination), strict=True)
    ]


def member_blocks(
    ranges: tuple[HparamRange, ...],
    initial_hparams: list[Mapping[str, float]],
    events: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """Each member's `schedule` block of summary.json: its lineage (step, parent) and its
    hyperparameter history (step 0: its searched values; then each copy's)."""
    blocks = [
        {
            "lineage": [],
            "hparams": [{"step": 0, **{r.hparam: float(initial[r.hparam]) for r in ranges}}],
        }
        for initial in initial_hparams
    ]
    for row in sorted(events, key=lambda r: (r["step"], r["member"])):
        if "parent" not in row:
            continue
        block = blocks[row["member"]]
        block["lineage"].append({"step": int(row["step"]), "parent": int(row["parent"])})
        block["hparams"].append(
            {"step": int(row["step"]), **{r.hparam: float(row[r.hparam]) for r in ranges}}
        )
    return blocks
