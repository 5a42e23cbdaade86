"""A run under its member schedule: the schedule's decisions between chunks (`halving.prune`,
PBT's exploit), and the live members gathered from the whole run's state into a batch of their
size, trained by the chunk program compiled for that size (one per size), and scattered back
after every chunk, so checkpoints, metrics and the final evaluation see every member.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import run_spec
from jaxnn.config import schedule as schedule_lib
from jaxnn.config.schedule import Schedule
from jaxnn.core import train
from jaxnn.core.loop import EvalCallback, Evaluation, LoopResult, host_metrics
from jaxnn.core.program import Program
from jaxnn.core.schedules import halving, members, pbt
from jaxnn.data import Dataset
from jaxnn.parallel import sharding


def run_schedule(spec: run_spec.RunSpec, num_members: int) -> Schedule:
    """The run's `restarts.schedule` as a checked value."""
    return schedule_lib.resolve(
        spec.config.restarts, searched=spec.search is not None, num_members=num_members
    )


def check_plan(spec: run_spec.RunSpec, program: Program, num_members: int) -> None:
    """Refuses, before anything is written, a schedule that the run's steps cannot carry out
    (ConfigError: `halving.plan_rungs`, `pbt.pbt_interval`)."""
    schedule = run_schedule(spec, num_members)
    _rung_plan(schedule, program, num_members)
    if schedule.kind == schedule_lib.PBT:
        pbt.pbt_interval(schedule, program)


def _rung_plan(schedule: Schedule, program: Program, num_members: int) -> halving.RungPlan | None:
    """The rungs of a halving or Hyperband schedule (None for the others)."""
    if not schedule.halving:
        return None
    return halving.plan_rungs(schedule, num_members, program.total_steps, program.eval_every)


@dataclasses.dataclass
class ScheduleResult(LoopResult):
    """The end of a scheduled launch with the schedule's record of it."""

    # the batch sizes whose chunk program this launch compiled, in order
    sizes: list[int] = dataclasses.field(default_factory=list)
    # per rung trained in this launch: rung, members, seconds, member-steps
    rungs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    # every decision of this launch (rows of DIR/schedule.jsonl, local member indices)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    member_steps: int = 0  # steps run times the members in the batch, summed over chunks

    def describe(self) -> dict[str, Any]:
        return {"sizes_compiled": list(self.sizes), "rungs": self.rungs, "events": self.events}


@dataclasses.dataclass(frozen=True)
class _Decisions:
    """What a run's schedule decides after a chunk: halving prunes at the rung ends, PBT
    exploits every `interval` steps."""

    schedule: Schedule
    program: Program
    select_by: str
    plan: halving.RungPlan | None
    interval: int
    exploit: Callable | None
    ranges: tuple[pbt.HparamRange, ...]
    key: jax.Array

    @classmethod
    def of(cls, trainer: Any, key: jax.Array) -> _Decisions:
        program: Program = trainer.program
        num = len(trainer.members)
        schedule = run_schedule(trainer.spec, num)
        plan = _rung_plan(schedule, program, num)
        ranges = pbt.hparam_ranges(trainer.spec)
        is_pbt = schedule.kind == schedule_lib.PBT
        exploit = pbt.make_exploit(schedule, ranges, num) if is_pbt else None
        select_by = trainer.spec.config.restarts.select_by
        interval = pbt.pbt_interval(schedule, program)
        return cls(schedule, program, select_by, plan, interval, exploit, ranges, key)

    def rung_ending(self, step: int) -> int | None:
        """The index of the halving rung that ends at `step` (the last one too), else None."""
        if self.plan is None:
            return None
        if self.plan.prunes_at(step) is None and step < self.program.total_steps:
            return None
        return self.plan.rung_of_step(step)

    def after_chunk(
        self, state: train.TrainState, step: int, metrics: Mapping[str, np.ndarray], data: Dataset
    ) -> tuple[train.TrainState, list[dict[str, Any]], bool]:
        """The state after the decisions at `step`, their event rows, and whether the live
        members must be gathered again."""
        rung = self.plan.prunes_at(step) if self.plan is not None else None
        if self.plan is not None and rung is not None:
            state, rows = halving.prune(
                state, self.plan, rung, step, data, self.program, self.select_by, self.schedule
            )
            return state, rows, True
        if self.exploit is None or step % self.interval or step >= self.program.total_steps:
            return state, [], False
        values = members.ranking_values(
            metrics[self.select_by],
            np.asarray(state.diverged),
            greater_is_better=self.program.greater_is_better(self.select_by),
        )
        state, source, destination = self.exploit(
            state, jnp.asarray(values, jnp.float32), pbt.decision_key(self.key, step)
        )
        return state, pbt.exploit_events(state, step, source, destination, self.ranges), True


@dataclasses.dataclass
class _Sized:
    """The chunk program of one batch size and where its members live."""

    placement: sharding.Placement
    compiled: Any
    data: Any


class _Programs:
    """The chunk program of each batch size, compiled once per launch; under halving the
    later rungs' sizes compile on a thread while the first rung trains."""

    def __init__(self, trainer: Any, data: Dataset, decisions: _Decisions) -> None:
        self.trainer, self.data, self.decisions = trainer, data, decisions
        self.sized: dict[int, _Sized] = {}
        self.sizes: list[int] = []
        self.compile_s = 0.0
        self.pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.early: dict[int, concurrent.futures.Future] = {}

    def of_size(self, size: int, state: train.TrainState, step: int) -> _Sized:
        """The program of a batch of `size` members: kept, from the thread, or compiled now."""
        if size not in self.sized:
            started = time.perf_counter()
            ahead = self.early.pop(size, None)
            self.sized[size] = (
                ahead.result() if ahead else _compile(self.trainer, self.data, size, state, step)
            )
            self.sizes.append(size)
            self.compile_s += time.perf_counter() - started
            plan = self.decisions.plan
            if plan is not None and not self.early and self.pool is None:
                self.pool, self.early = _compile_ahead(
                    self.trainer, self.data, plan, self.decisions.schedule, state, step
                )
        return self.sized[size]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


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
    decisions in `Evaluation.events`. A state whose training is over comes back as it came.
    """
    total, every = trainer.program.total_steps, trainer.program.eval_every
    decisions = _Decisions.of(trainer, key)
    programs = _Programs(trainer, data, decisions)
    record = _Record(len(trainer.members), on_eval)
    step, live = start_step, None
    try:
        while step < total:
            if live is None:  # the live members gathered into a batch of their size
                live = np.flatnonzero(members.live_mask(state))
                if live.size == 0:
                    break
                current = programs.of_size(int(live.size), state, step)
                index = jnp.asarray(live, jnp.int32)
                batch = current.placement.place_state(members.gather(state, index))
                rung_started, rung_from = time.perf_counter(), step
            started = time.perf_counter()
            batch, state, metrics = _train_chunk(trainer, current, batch, state, live, step)
            record.train_s += time.perf_counter() - started
            record.member_steps += int(live.size) * (min(step + every, total) - step)
            step = min(step + every, total)
            rung = decisions.rung_ending(step)
            if rung is not None:
                jax.block_until_ready(state)
                record.rungs.append(
                    {
                        "rung": rung,
                        "members": int(live.size),
                        "seconds": time.perf_counter() - rung_started,
                        "member_steps": int(live.size * (step - rung_from)),
                    }
                )
            state, chunk_events, regather = decisions.after_chunk(state, step, metrics, data)
            record.evaluated(step, metrics, state, chunk_events, live, programs.compile_s)
            live = None if regather else live
            if not members.live_mask(state).any() or (should_stop is not None and should_stop()):
                break
    finally:
        programs.close()
    return record.result(state, step, programs)


@dataclasses.dataclass
class _Record:
    """What a scheduled launch keeps and tells as it goes: every evaluation (to the callback
    too), the decisions, the rungs' costs, and its timings."""

    num_members: int
    on_eval: EvalCallback | None
    history: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rungs: list[dict[str, float]] = dataclasses.field(default_factory=list)
    train_s: float = 0.0
    member_steps: int = 0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def evaluated(
        self,
        step: int,
        metrics: dict[str, np.ndarray],
        state: train.TrainState,
        events: list[dict[str, Any]],
        live: np.ndarray,
        compile_s: float,
    ) -> None:
        """Keeps the evaluation at `step` of the chunk that trained `live`, and tells on_eval."""
        self.events.extend(events)
        self.history.append({"step": np.array([step]), **metrics})
        if self.on_eval is None:
            return
        self.on_eval(
            Evaluation(
                step=step,
                metrics=metrics,
                state=state,
                elapsed_s=time.perf_counter() - self.started - compile_s,
                member_steps=self.member_steps,
                events=events,
                trained=np.isin(np.arange(self.num_members), live),
            )
        )

    def result(self, state: train.TrainState, step: int, programs: _Programs) -> ScheduleResult:
        return ScheduleResult(
            state=state,
            history=self.history,
            steps_done=step,
            compile_s=programs.compile_s,
            train_s=self.train_s,
            sizes=programs.sizes,
            rungs=self.rungs,
            events=self.events,
            wall_s=time.perf_counter() - self.started - programs.compile_s,
            member_steps=self.member_steps,
        )


def _train_chunk(
    trainer: Any,
    current: _Sized,
    batch: train.TrainState,
    state: train.TrainState,
    live: np.ndarray,
    step: int,
) -> tuple[train.TrainState, train.TrainState, dict[str, np.ndarray]]:
    """One chunk of the `live` members' batch: the batch, the run's state with it scattered
    back, and every member's metrics ([n] by name, NaN outside the batch)."""
    batch, metrics = current.compiled(
        batch, current.data, jnp.asarray(step, jnp.int32), trainer.order_key
    )
    metrics = current.placement.real_metrics(host_metrics(metrics))
    index = jnp.asarray(live, jnp.int32)
    state = members.scatter(state, index, _local(current.placement.real_members(batch)))
    full = {k: np.full(len(trainer.members), np.nan) for k in metrics}
    for k, values in metrics.items():
        full[k][live] = values
    return batch, state, full


def _compile_ahead(
    trainer: Any,
    data: Dataset,
    plan: halving.RungPlan,
    schedule: Schedule,
    state: train.TrainState,
    step: int,
) -> tuple[concurrent.futures.ThreadPoolExecutor | None, dict[int, concurrent.futures.Future]]:
    """Starts compiling the predicted later batch sizes on one thread (XLA drops the GIL)."""
    live = members.live_mask(state)
    current = int(live.sum())
    wanted = [n for n in halving.predicted_sizes(plan, live, schedule.eta, step) if n != current]
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
    placed_data = placement.place_data(data)
    example = placement.place_state(members.gather(state, jnp.arange(size, dtype=jnp.int32)))
    compiled = (
        trainer.chunk_for(placement)
        .lower(example, placed_data, jnp.asarray(step, jnp.int32), trainer.order_key)
        .compile()
    )
    return _Sized(placement, compiled, placed_data)


def member_blocks(
    spec: run_spec.RunSpec,
    program: Program,
    state: train.TrainState,
    initial_hparams: list[Mapping[str, float]],
    events: Sequence[Mapping[str, Any]],
) -> list[dict[str, Any]] | None:
    """Each member's `schedule` block of summary.json (`halving.member_blocks` or
    `pbt.member_blocks`; None without a schedule); `events`: the run's decisions, local indices."""
    num = len(initial_hparams)
    schedule = run_schedule(spec, num)
    if not schedule.active:
        return None
    plan = _rung_plan(schedule, program, num)
    if plan is not None:
        return halving.member_blocks(plan, np.asarray(jax.device_get(state.step)), events)
    return pbt.member_blocks(pbt.hparam_ranges(spec), initial_hparams, events)


def shift_members(row: Mapping[str, Any], offset: int) -> dict[str, Any]:
    """A decision row with its member indices (`member`, PBT's `parent`) moved by `offset`:
    a variant's local indices made global (offset > 0), or back (offset < 0)."""
    row = dict(row, member=row["member"] + offset)
    if "parent" in row:
        row["parent"] += offset
    return row
