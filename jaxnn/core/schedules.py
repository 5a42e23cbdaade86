"""Member schedules: successive halving and Hyperband (members leave the batch at rungs) and
population-based training (members take over better members' states), inside one run.

The host only decides when; every move of member state is a gather or a scatter on the device
(`x[idx]`, `x.at[idx].set(...)`, over the whole `TrainState` with `jax.tree_util.tree_map`, so
any field a state carries moves with it).

Halving. Rung r ends at `first_rung_steps * eta**r`; the last rung ends at the run's steps.
At the end of each rung but the last, the live members of each bracket (not stopped, not
diverged) are ranked by `restarts.select_by` on the validation split, evaluated with their
best weights as the final selection is; the best ceil(n / eta) go on and the others are
stopped (`stopped=True`: they keep their best weights and results). The next rung trains only
the survivors: the stacked state of the live members is gathered from the whole run's state
into a batch of their size, trained by the chunk program compiled for that size (one per size,
kept for the run and in the persistent compilation cache), and scattered back after every
chunk, so checkpoints, metrics and the final evaluation see every member. Which members are
live is read from the state itself (`stopped`, `diverged`), so a resume from any checkpoint,
mid-rung or at a rung's end, continues exactly. Hyperband runs brackets side by side in the
same batch: bracket s (s = P..0, P the number of rung ends before the last) starts pruning at
rung P - s, with members shared out in Hyperband's proportions ceil((P+1)/(s+1) * eta**s).

PBT. Every `pbt_interval` steps the members are ranked by `restarts.select_by` of their
current weights on the validation split (this chunk's evaluation); each of the bottom
`floor(n * pbt_fraction)` copies the whole state of a member drawn from the top as many
(parameters, optimiser state, model state, best weights and counters; its own member key
stays) and then, per searched field, multiplies the copied value by 1 - p or 1 + p or, with
probability `pbt_resample`, draws it anew from the search's range (clipped to the range). The
hyperparameters are state leaves, so nothing recompiles. The draws use
`fold_in(fold_in(root, PBT_TAG), step)`: a resume makes the same decisions.

Each decision is an event row (step, member, ...): halving `rung` and `score` of a pruned
member; PBT `parent` and the new hyperparameter values. `jaxnn.run` appends them to
DIR/schedule.jsonl and summary.json gets each member's `schedule` block (`member_blocks`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import run_spec
from jaxnn.config import schedule as schedule_lib
from jaxnn.config.schedule import Schedule
from jaxnn.core import groups, train
from jaxnn.core.loop import EvalCallback, Evaluation
from jaxnn.core.program import Program
from jaxnn.data import Dataset
from jaxnn.errors import ConfigError
from jaxnn.parallel import sharding

PBT_TAG = 0x9B7  # fold_in tag of PBT's decision keys under the run's root key


def run_schedule(spec: run_spec.RunSpec, num_members: int) -> Schedule:
    """The run's `restarts.schedule` as a checked value."""
    return schedule_lib.resolve(
        spec.config.restarts, searched=spec.search is not None, num_members=num_members
    )


# ---------------------------------------------------------------------------------------------
# Halving: the rungs and the brackets


@dataclasses.dataclass(frozen=True)
class RungPlan:
    """Where rungs end and which members each bracket holds.

    Attributes:
      ends: the global step at which each rung ends, increasing; the last is the run's steps.
      bracket: int [num_members]: each member's bracket (0 = the one that prunes from the
        first rung on).
      starts: per bracket, the index of the first rung after which it prunes (len(ends) - 1:
        never).
    """

    ends: tuple[int, ...]
    bracket: np.ndarray
    starts: tuple[int, ...]

    def rung_of_step(self, step: int) -> int:
        """The index of the rung that step `step` (a step count) ends or lies in."""
        for index, end in enumerate(self.ends):
            if step <= end:
                return index
        return len(self.ends) - 1

    def prunes_at(self, step: int) -> int | None:
        """The index of the rung that ends at `step` when members are pruned there, else None."""
        if step in self.ends[:-1]:
            return self.ends.index(step)
        return None


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


def ranking_values(
    scores: np.ndarray, diverged: np.ndarray, *, greater_is_better: bool
) -> np.ndarray:
    """float64 [n]: lower ranks first; diverged members and non-finite scores last."""
    values = (
        -np.asarray(scores, np.float64) if greater_is_better else np.asarray(scores, np.float64)
    )
    return np.where(np.asarray(diverged, bool) | ~np.isfinite(values), np.inf, values)


def survivors(
    plan: RungPlan,
    rung: int,
    live: np.ndarray,
    values: np.ndarray,
    eta: int,
) -> np.ndarray:
    """bool [num_members]: who goes on after rung `rung`, per bracket the best ceil(n / eta) of
    its live members by `values` (lower first, ties to the lower index); the members of a
    bracket that does not prune yet all go on."""
    keep = np.array(live, bool)
    for bracket, start in enumerate(plan.starts):
        if rung < start:
            continue
        members = np.flatnonzero(live & (plan.bracket == bracket))
        if members.size == 0:
            continue
        kept = math.ceil(members.size / eta)
        order = members[np.lexsort((members, values[members]))]
        keep[order[kept:]] = False
    return keep


# ---------------------------------------------------------------------------------------------
# Moves of member state on the device


@jax.jit
def gather(state: train.TrainState, index: jax.Array) -> train.TrainState:
    """The members `index` of a stacked state, in that order."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], state)


@jax.jit
def scatter(
    state: train.TrainState, index: jax.Array, members: train.TrainState
) -> train.TrainState:
    """`state` with members `index` replaced by the stacked `members`."""
    return jax.tree_util.tree_map(lambda leaf, new: leaf.at[index].set(new), state, members)


@jax.jit
def stop_members(state: train.TrainState, pruned: jax.Array) -> train.TrainState:
    """`state` with the members where `pruned` (bool [n]) stopped."""
    return state.replace(stopped=state.stopped | pruned)


@functools.partial(jax.jit, static_argnames=("program",))
def best_weight_metrics(
    state: train.TrainState, x: jax.Array, y: jax.Array, program: Program
) -> dict[str, jax.Array]:
    """Loss and metrics of every member's best weights on one split ([n] each)."""
    from jaxnn.data.device import SplitData

    return jax.vmap(
        lambda m: train.evaluate(
            m, m.best_params, SplitData(x, y), program, model_state=m.best_model_state
        )
    )(state)


def copy_members(
    state: train.TrainState, destination: jax.Array, source: jax.Array
) -> train.TrainState:
    """`state` where member `destination[i]` holds member `source[i]`'s whole state but its
    own member key (QDax-style `x.at[dst].set(x[src])` over every leaf)."""
    copied = jax.tree_util.tree_map(lambda leaf: leaf.at[destination].set(leaf[source]), state)
    return copied.replace(member_key=state.member_key)


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


def make_exploit(
    schedule: Schedule, ranges: tuple[HparamRange, ...], num_members: int
) -> Callable[[train.TrainState, jax.Array, jax.Array], Any]:
    """The jitted PBT step: (state, values float32 [n] lower first, key) -> (state, source,
    destination): the bottom members copy a top member and perturb or redraw its values."""
    replaced = math.floor(num_members * schedule.pbt_fraction)

    def exploit(state: train.TrainState, values: jax.Array, key: jax.Array):
        order = jnp.argsort(values, stable=True)
        top, bottom = order[:replaced], order[num_members - replaced :]
        source = top[jax.random.randint(jax.random.fold_in(key, 0), (replaced,), 0, replaced)]
        state = copy_members(state, bottom, source)
        hparams = dict(state.hparams)
        for j, spec in enumerate(ranges):
            k_up, k_draw, k_new = jax.random.split(jax.random.fold_in(key, j + 1), 3)
            copied = hparams[spec.hparam][bottom]
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
            new = jnp.clip(new, spec.low, spec.high).astype(hparams[spec.hparam].dtype)
            hparams[spec.hparam] = hparams[spec.hparam].at[bottom].set(new)
        return state.replace(hparams=hparams), source, bottom

    return jax.jit(exploit)


# ---------------------------------------------------------------------------------------------
# The driver


@dataclasses.dataclass
class _Sized:
    """The chunk program of one batch size and where its members live."""

    placement: sharding.Placement
    compiled: Any
    data: Any


@dataclasses.dataclass
class ScheduleResult:
    """The end of a scheduled run (like `jaxnn.core.loop.LoopResult`) with the schedule's record.

    Attributes:
      sizes: the batch sizes whose chunk program this launch compiled, in order.
      rungs: per rung trained in this launch: rung, members, seconds, member-steps.
      events: every decision of this launch (rows of DIR/schedule.jsonl, local member indices).
    """

    state: train.TrainState
    history: list[dict[str, np.ndarray]]
    steps_done: int
    compile_s: float
    train_s: float
    sizes: list[int]
    rungs: list[dict[str, float]]
    events: list[dict[str, Any]]
    wall_s: float = 0.0  # the loop after compiling (as LoopResult.wall_s), compiles left out
    member_steps: int = 0  # steps run times the members in the batch, summed over chunks

    def describe(self) -> dict[str, Any]:
        return {"sizes_compiled": list(self.sizes), "rungs": self.rungs, "events": self.events}


def check_plan(spec: run_spec.RunSpec, program: Program, num_members: int) -> None:
    """Refuses, before anything is written, a schedule that the run's steps cannot carry out.

    Raises:
      ConfigError: see `plan_rungs`; a PBT interval that is not a whole number of evaluations.
    """
    schedule = run_schedule(spec, num_members)
    if schedule.halving:
        plan_rungs(schedule, num_members, program.total_steps, program.eval_every)
    if schedule.kind == schedule_lib.PBT:
        pbt_interval(schedule, program)


def pbt_interval(schedule: Schedule, program: Program) -> int:
    """Steps between PBT exploits (`restarts.pbt_interval`, 0: every evaluation)."""
    interval = schedule.pbt_interval or program.eval_every
    if interval % program.eval_every:
        raise ConfigError(
            f"restarts.pbt_interval={interval} must be a multiple of training.eval_every="
            f"{program.eval_every} (members are ranked at evaluations)"
        )
    return interval


def drive(
    trainer: Any,
    state: train.TrainState,
    data: Dataset,
    key: jax.Array,
    *,
    start_step: int = 0,
    on_eval: EvalCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> ScheduleResult:
    """Trains a `jaxnn.core.ensemble.Trainer`'s members under its `restarts.schedule`.

    `state` is every member's stacked state (fresh or restored); the callback sees every
    member after every chunk (members outside the batch with NaN metrics) with the chunk's
    decisions in `Evaluation.events`.
    """
    program: Program = trainer.program
    config = trainer.spec.config
    num = len(trainer.members)
    schedule = run_schedule(trainer.spec, num)
    plan = (
        plan_rungs(schedule, num, program.total_steps, program.eval_every)
        if schedule.halving
        else None
    )
    interval = pbt_interval(schedule, program)
    exploit = (
        make_exploit(schedule, hparam_ranges(trainer.spec), num)
        if schedule.kind == schedule_lib.PBT
        else None
    )
    select_by = config.restarts.select_by
    greater = program.greater_is_better(select_by)
    sized: dict[int, _Sized] = {}
    sizes: list[int] = []
    history: list[dict[str, np.ndarray]] = []
    rungs: list[dict[str, float]] = []
    events: list[dict[str, Any]] = []
    compile_s = train_s = 0.0
    step = start_step
    live: np.ndarray | None = None
    batch = None
    rung_started, rung_members, rung_from = time.perf_counter(), 0, step
    loop_started, member_steps = time.perf_counter(), 0
    # Halving: the later rungs' programs compile on a thread while the first rung trains.
    pool: concurrent.futures.ThreadPoolExecutor | None = None
    early: dict[int, concurrent.futures.Future] = {}
    try:
        while step < program.total_steps:
            if live is None:
                done = np.asarray(jax.device_get(state.stopped | state.diverged), bool)
                live = np.flatnonzero(~done)
                if live.size == 0:
                    break
                if live.size not in sized:
                    started = time.perf_counter()
                    ahead = early.pop(int(live.size), None)
                    if ahead is not None:
                        sized[live.size] = ahead.result()
                    else:
                        sized[live.size] = _compile(trainer, data, live.size, state, step)
                    sizes.append(int(live.size))
                    compile_s += time.perf_counter() - started
                    if plan is not None and not early and pool is None:
                        pool, early = _compile_ahead(trainer, data, plan, schedule, state, step)
                current = sized[live.size]
                index_host = live
                index = jnp.asarray(live, jnp.int32)
                batch = current.placement.place_state(gather(state, index))
                rung_started, rung_members, rung_from = time.perf_counter(), live.size, step
            started = time.perf_counter()
            batch, metrics = current.compiled(
                batch, current.data, jnp.asarray(step, jnp.int32), trainer.order_key
            )
            metrics = {
                k: np.atleast_1d(np.asarray(v, np.float64))
                for k, v in jax.device_get(metrics).items()
            }
            train_s += time.perf_counter() - started
            member_steps += int(live.size) * (
                min(step + program.eval_every, program.total_steps) - step
            )
            step = min(step + program.eval_every, program.total_steps)
            metrics = current.placement.real_metrics(metrics)
            state = scatter(state, index, _local(current.placement.real_members(batch)))
            full = {k: np.full(num, np.nan) for k in metrics}
            for k, values in metrics.items():
                full[k][live] = values
            chunk_events: list[dict[str, Any]] = []
            rung = plan.prunes_at(step) if plan is not None else None
            if plan is not None and (rung is not None or step >= program.total_steps):
                jax.block_until_ready(state)
                rungs.append(
                    {
                        "rung": plan.rung_of_step(step),
                        "members": int(rung_members),
                        "seconds": time.perf_counter() - rung_started,
                        "member_steps": int(rung_members * (step - rung_from)),
                    }
                )
            if rung is not None:
                state, chunk_events = _prune(
                    state, plan, rung, step, data, program, select_by, schedule
                )
                live = None
            elif exploit is not None and step % interval == 0 and step < program.total_steps:
                values = ranking_values(
                    full[select_by], np.asarray(state.diverged), greater_is_better=greater
                )
                pbt_key = jax.random.fold_in(jax.random.fold_in(key, PBT_TAG), step)
                state, source, destination = exploit(
                    state, jnp.asarray(values, jnp.float32), pbt_key
                )
                chunk_events = _pbt_events(
                    state, step, source, destination, hparam_ranges(trainer.spec)
                )
                live = None
            events.extend(chunk_events)
            history.append({"step": np.array([step]), **full})
            if on_eval is not None:
                trained = np.zeros(num, bool)
                trained[index_host] = True
                on_eval(
                    Evaluation(
                        step=step,
                        metrics=full,
                        state=state,
                        elapsed_s=time.perf_counter() - loop_started - compile_s,
                        member_steps=member_steps,
                        events=chunk_events,
                        trained=trained,
                    )
                )
            if np.all(jax.device_get(state.stopped | state.diverged)):
                break
            if should_stop is not None and should_stop():
                break
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
    return ScheduleResult(
        state=state,
        history=history,
        steps_done=step,
        compile_s=compile_s,
        train_s=train_s,
        sizes=sizes,
        rungs=rungs,
        events=events,
        wall_s=time.perf_counter() - loop_started - compile_s,
        member_steps=member_steps,
    )


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


def _compile_ahead(
    trainer: Any,
    data: Dataset,
    plan: RungPlan,
    schedule: Schedule,
    state: train.TrainState,
    step: int,
) -> tuple[concurrent.futures.ThreadPoolExecutor | None, dict[int, concurrent.futures.Future]]:
    """Starts compiling the predicted later batch sizes on one thread (XLA compiles without
    the GIL); a size that does not come is never waited for."""
    live = ~np.asarray(jax.device_get(state.stopped | state.diverged), bool)
    current = int(live.sum())
    wanted = [n for n in predicted_sizes(plan, live, schedule.eta, step) if n != current]
    if not wanted:
        return None, {}
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="jaxnn-compile")
    return pool, {n: pool.submit(_compile, trainer, data, n, state, step) for n in wanted}


def _local(state: train.TrainState) -> train.TrainState:
    """A state on a mesh brought to the default device (the whole run's state lives there)."""
    leaves = jax.tree_util.tree_leaves(state)
    if all(getattr(leaf, "sharding", None) is None or len(leaf.devices()) == 1 for leaf in leaves):
        return state
    return jax.device_put(jax.device_get(state))


def _compile(trainer: Any, data: Dataset, size: int, state: train.TrainState, step: int) -> _Sized:
    """The chunk program of a batch of `size` members, compiled ahead of time."""
    placement = sharding.placement(trainer.spec.config, size, data)
    shared = trainer.order_key is not None
    chunk = functools.partial(train.run_chunk, program=trainer.program)
    grouped = groups.grouped_vmap(
        chunk,
        (0, None, None, None if shared else 0),
        num_members=placement.num_slots,
        group_size=trainer.group_size,
        num_shards=placement.num_devices,
    )
    placed_data = placement.place_data(data)
    example = placement.place_state(gather(state, jnp.arange(size, dtype=jnp.int32)))
    compiled = (
        placement.jit_chunk(grouped)
        .lower(example, placed_data, jnp.asarray(step, jnp.int32), trainer.order_key)
        .compile()
    )
    return _Sized(placement, compiled, placed_data)


def _prune(
    state: train.TrainState,
    plan: RungPlan,
    rung: int,
    step: int,
    data: Dataset,
    program: Program,
    select_by: str,
    schedule: Schedule,
) -> tuple[train.TrainState, list[dict[str, Any]]]:
    """Stops the members that rung `rung` leaves behind; their event rows."""
    done = np.asarray(jax.device_get(state.stopped | state.diverged), bool)
    live = np.flatnonzero(~done)
    scores = np.full(done.size, np.nan)
    if live.size:
        batch = gather(state, jnp.asarray(live, jnp.int32))
        metrics = best_weight_metrics(
            batch, jnp.asarray(data.x_val), jnp.asarray(data.y_val), program
        )
        scores[live] = np.asarray(jax.device_get(metrics[select_by.removeprefix("val_")]))
    values = ranking_values(
        scores,
        np.asarray(jax.device_get(state.diverged)),
        greater_is_better=program.greater_is_better(select_by),
    )
    keep = survivors(plan, rung, ~done, values, schedule.eta)
    pruned = ~done & ~keep
    state = stop_members(state, jnp.asarray(pruned))
    rows = [
        {"step": int(step), "member": int(i), "rung": int(rung), "score": float(scores[i])}
        for i in np.flatnonzero(pruned)
    ]
    return state, rows


def _pbt_events(
    state: train.TrainState,
    step: int,
    source: jax.Array,
    destination: jax.Array,
    ranges: tuple[HparamRange, ...],
) -> list[dict[str, Any]]:
    source, destination = np.asarray(source), np.asarray(destination)
    hparams = {r.hparam: np.asarray(jax.device_get(state.hparams[r.hparam])) for r in ranges}
    return [
        {
            "step": int(step),
            "member": int(dst),
            "parent": int(src),
            **{name: float(values[dst]) for name, values in hparams.items()},
        }
        for src, dst in zip(source, destination, strict=True)
    ]


# ---------------------------------------------------------------------------------------------
# What summary.json says


def member_blocks(
    spec: run_spec.RunSpec,
    program: Program,
    state: train.TrainState,
    initial_hparams: list[Mapping[str, float]],
    events: list[Mapping[str, Any]],
) -> list[dict[str, Any]] | None:
    """Each member's `schedule` block of summary.json (None for a run without a schedule).

    Halving: its bracket, the rung it reached (the index of the last rung it trained in), the
    step its training stopped at, and whether a rung pruned it. PBT: its lineage (step,
    parent) and its hyperparameter history (step 0: its searched values; then each copy's).
    `events` are every decision of the run (DIR/schedule.jsonl), with local member indices.
    """
    num = len(initial_hparams)
    schedule = run_schedule(spec, num)
    if not schedule.active:
        return None
    steps = np.asarray(jax.device_get(state.step))
    if schedule.halving:
        plan = plan_rungs(schedule, num, program.total_steps, program.eval_every)
        pruned = {row["member"]: row for row in events if "rung" in row}
        blocks = []
        for i in range(num):
            row = pruned.get(i)
            blocks.append(
                {
                    "bracket": int(plan.bracket[i]),
                    "rung": int(row["rung"]) if row else plan.rung_of_step(int(steps[i])),
                    "stopped_at": int(row["step"]) if row else int(steps[i]),
                    "pruned": row is not None,
                }
            )
        return blocks
    ranges = hparam_ranges(spec)
    blocks = [
        {
            "lineage": [],
            "hparams": [
                {"step": 0, **{r.hparam: float(initial_hparams[i][r.hparam]) for r in ranges}}
            ],
        }
        for i in range(num)
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
