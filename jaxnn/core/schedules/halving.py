"""Successive halving and Hyperband: the rungs, the brackets, and who survives a rung.

Rung r ends at `first_rung_steps * eta**r`, the last at the run's steps. At each rung end but the
last, each bracket's live members are ranked by `restarts.select_by` of their best weights on
the validation split; the best ceil(n / eta) go on, the others stop (keeping their best weights).
Liveness is read from the state, so a resume from any checkpoint continues exactly. Hyperband's bracket s (s = P..0, P the rung ends before the last)
prunes from rung P - s on; members are shared out in the proportions ceil((P+1)/(s+1) * eta**s).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.config import schedule as schedule_lib
from jaxnn.config.schedule import Schedule
from jaxnn.core import train
from jaxnn.core.program import Program
from jaxnn.core.schedules import members
from jaxnn.data import Dataset
from jaxnn.data.device import SplitData
from jaxnn.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class RungPlan:
    """Where rungs end and which members each bracket holds."""

    ends: tuple[int, ...]  # the global step each rung ends at, increasing; the last: the run's
    bracket: np.ndarray  # int [num_members]: each member's (0: the one pruning from rung 0 on)
    starts: tuple[int, ...]  # per bracket, the first rung it prunes after (len(ends) - 1: never)

    def rung_of_step(self, step: int) -> int:
        """The index of the rung that step `step` (a step count) ends or lies in."""
        for index, end in enumerate(self.ends):
            if step <= end:
                return index
        return len(self.ends) - 1

    def prunes_at(self, step: int) -> int | None:
        """The index of the rung that ends at `step` when members are pruned there, else None."""
        return self.ends.index(step) if step in self.ends[:-1] else None


def auto_first_rung(num_members: int, eta: int, total_steps: int, eval_every: int) -> int:
    """The first rung when `first_rung_steps` is 0: as many rungs as take `num_members` down
    to one (ceil(log_eta n) prunings), rounded down to whole evaluations (at least one)."""
    prunings = max(1, math.ceil(math.log(num_members) / math.log(eta) - 1e-9))
    first = total_steps // eta**prunings
    return max(eval_every, first // eval_every * eval_every)


def plan_rungs(schedule: Schedule, num_members: int, total_steps: int, eval_every: int) -> RungPlan:
    """The rungs and brackets of a halving or Hyperband run.

    Raises:
      ConfigError: a first rung that is not a whole number of evaluations, or that leaves no
        rung before the end; Hyperband with fewer members than brackets.
    """
    first = schedule.first_rung_steps or auto_first_rung(
        num_members, schedule.eta, total_steps, eval_every
    )
    if first % eval_every:
        raise ConfigError(
            f"restarts.first_rung_steps={first} must be a multiple of training.eval_every="
            f"{eval_every} (members are ranked at evaluations)"
        )
    if first >= total_steps:
        raise ConfigError(
            f"restarts.first_rung_steps={first} leaves no rung before the run's {total_steps} "
            f"steps end; use fewer first-rung steps or train longer"
        )
    ends, end = [], first
    while end < total_steps:
        ends.append(end)
        end *= schedule.eta
    ends.append(total_steps)
    prunings = len(ends) - 1
    if schedule.kind == schedule_lib.HALVING:
        return RungPlan(tuple(ends), np.zeros(num_members, np.int32), (0,))
    sizes = [math.ceil((prunings + 1) / (s + 1) * schedule.eta**s) for s in range(prunings, -1, -1)]
    if num_members < len(sizes):
        raise ConfigError(
            f"restarts.schedule=hyperband runs {len(sizes)} brackets here (rungs end at "
            f"{', '.join(map(str, ends))}), but the run has {num_members} members; raise "
            f"restarts.num to at least {len(sizes)}"
        )
    counts = _share(num_members, sizes)
    bracket = np.repeat(np.arange(len(sizes), dtype=np.int32), counts)
    return RungPlan(tuple(ends), bracket, tuple(range(len(sizes))))


def _share(total: int, weights: list[int]) -> list[int]:
    """`total` split into len(weights) parts of at least 1, in proportion (largest remainder;
    `total == sum(weights)` gives the weights themselves)."""
    exact = [total * w / sum(weights) for w in weights]
    counts = [max(1, math.floor(x)) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    for i in order[: max(0, total - sum(counts))]:
        counts[i] += 1
    while sum(counts) > total:  # the parts raised to 1 are taken from the largest
        counts[counts.index(max(counts))] -= 1
    return counts


def survivors(
    plan: RungPlan, rung: int, live: np.ndarray, values: np.ndarray, eta: int
) -> np.ndarray:
    """bool [num_members]: who goes on after rung `rung`, per bracket the best ceil(n / eta) of
    its live members by `values` (lower first, ties to the lower index); the members of a
    bracket that does not prune yet all go on."""
    keep = np.array(live, bool)
    for bracket, start in enumerate(plan.starts):
        if rung < start:
            continue
        in_bracket = np.flatnonzero(live & (plan.bracket == bracket))
        if in_bracket.size == 0:
            continue
        kept = math.ceil(in_bracket.size / eta)
        order = in_bracket[np.lexsort((in_bracket, values[in_bracket]))]
        keep[order[kept:]] = False
    return keep


def predicted_sizes(plan: RungPlan, live: np.ndarray, eta: int, step: int) -> list[int]:
    """The batch sizes of the rungs after step `step` when no member stops by itself or
    diverges."""
    counts = [int(np.sum(live & (plan.bracket == b))) for b in range(len(plan.starts))]
    sizes = []
    for rung in range(len(plan.ends) - 1):
        if plan.ends[rung] <= step:
            continue
        counts = [
            math.ceil(c / eta) if rung >= start else c
            for c, start in zip(counts, plan.starts, strict=True)
        ]
        if sum(counts) and sum(counts) not in sizes:
            sizes.append(sum(counts))
    return sizes


@functools.partial(jax.jit, static_argnames=("program",))
def best_weight_metrics(
    state: train.TrainState, x: jax.Array, y: jax.Array, program: Program
) -> dict[str, jax.Array]:
    """Loss and metrics of every member's best weights on one split ([n] each)."""
    return jax.vmap(lambda member: train.evaluate_best(member, SplitData(x, y), program))(state)


def prune(
    state: train.TrainState,
    plan: RungPlan,
    rung: int,
    step: int,
    data: Dataset,
    program: Program,
    select_by: str,
    schedule: Schedule,
) -> tuple[train.TrainState, list[dict[str, Any]]]:
    """Stops the members that rung `rung` leaves behind; their event rows (step, member, rung,
    score)."""
    is_live = members.live_mask(state)
    live = np.flatnonzero(is_live)
    scores = np.full(is_live.size, np.nan)
    if live.size:
        batch = members.gather(state, jnp.asarray(live, jnp.int32))
        metrics = best_weight_metrics(
            batch, jnp.asarray(data.x_val), jnp.asarray(data.y_val), program
        )
        scores[live] = np.asarray(jax.device_get(metrics[select_by.removeprefix("val_")]))
    values = members.ranking_values(
        scores,
        np.asarray(jax.device_get(state.diverged)),
        greater_is_better=program.greater_is_better(select_by),
    )
    keep = survivors(plan, rung, is_live, values, schedule.eta)
    pruned = is_live & ~keep
    state = state.replace(stopped=state.stopped | jnp.asarray(pruned))
    rows = [
        {"step": int(step), "member": int(i), "rung": int(rung), "score": float(scores[i])}
        for i in np.flatnonzero(pruned)
    ]
    return state, rows


def member_blocks(
    plan: RungPlan, steps: np.ndarray, events: Sequence[Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Each member's `schedule` block of summary.json: its bracket, the rung it reached (the
    index of the last rung it trained in), the step its training stopped at, and whether a
    rung pruned it. `steps` int [n] are the members' steps; `events` the run's decisions."""
    pruned = {row["member"]: row for row in events if "rung" in row}
    return [
        {
            "bracket": int(plan.bracket[i]),
            "rung": int(pruned[i]["rung"]) if i in pruned else plan.rung_of_step(int(step)),
            "stopped_at": int(pruned[i]["step"]) if i in pruned else int(step),
            "pruned": i in pruned,
        }
        for i, step in enumerate(steps)
    ]


def pruned_at_rungs(
    num_members: int, decisions: Iterable[Mapping[str, Any]], offset: int = 0
) -> np.ndarray:
    """bool [num_members]: the members a halving rung stopped, from a member schedule's
    decisions (rows of DIR/schedule.jsonl: one with a `rung` per pruned member), whose member
    indices start at `offset`."""
    pruned = np.zeros(num_members, bool)
    for row in decisions:
        if "rung" in row and offset <= row["member"] < offset + num_members:
            pruned[row["member"] - offset] = True
    return pruned
