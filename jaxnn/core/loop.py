"""The chunked loop: compile the chunk program once, run it until the run's steps are done, and
call back between chunks (the only place where a run touches the host). `fit` trains one member.

The rules a run applies per chunk (jaxnn.sklearn's epoch rules) live in `drive`'s hook
(`between`), never in a loop of their own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Unpack

import jax
import ml_collections
import numpy as np

from jaxnn import front_end, run_spec
from jaxnn.core.program import Program, build
from jaxnn.core.train import TrainState, init_state, run_chunk
from jaxnn.data import Dataset
from jaxnn.data.device import device_data
from jaxnn.errors import ConfigError
from jaxnn.nn.components import ComponentArgs, Components
from jaxnn.predict.predictor import Predictor, Predicts, member_group


@dataclasses.dataclass
class Evaluation:
    """One evaluation as the host sees it: metric -> float64 [num_members]."""

    step: int
    metrics: dict[str, np.ndarray]
    state: TrainState
    # seconds since the first chunk was dispatched, compile excluded (for member-steps per second)
    elapsed_s: float = 0.0
    # this launch's member-steps so far under a schedule (None: steps since the start x members)
    member_steps: int | None = None
    # What a member schedule decided after this chunk (jaxnn.core.schedules): one row each.
    events: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    # bool [num_members]: the members this chunk trained (None: all); the others' metrics are NaN
    trained: np.ndarray | None = None


EvalCallback = Callable[[Evaluation], None]
# The hook between chunks (`drive`). A history row is {"step": int [1], metric: float64 [M], ...}.
Between = Callable[[Any, list[dict[str, np.ndarray]]], tuple[Any, bool]]


@dataclasses.dataclass(frozen=True)
class Steps:
    """How far a loop that is not a Program's runs (e.g. epochs as steps): `total_steps`, in
    chunks of `eval_every` steps."""

    total_steps: int
    eval_every: int = 1


@dataclasses.dataclass
class LoopResult:
    """The end of a training loop: final state, every evaluation, and timings."""

    state: TrainState
    history: list[dict[str, np.ndarray]]
    steps_done: int
    compile_s: float
    train_s: float  # in the chunk programs (and the read of their metrics)
    program_bytes: int | None = None  # XLA's memory account of the chunk program, if it has one
    wall_s: float = 0.0  # the whole loop after compiling, host work between chunks included
    start_step: int = 0


def program_bytes(compiled: Any) -> int | None:
    """Bytes a compiled program needs by XLA's account: arguments, outputs and scratch, less
    outputs that alias argument buffers. None where the backend gives no account."""
    memory = compiled.memory_analysis()
    if memory is None:
        return None
    return int(
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )


def drive(
    chunk_fn: Any,
    state: Any,
    data: Any,
    order_key: jax.Array | None,
    program: Program | Steps,
    *,
    start_step: int = 0,
    on_eval: EvalCallback | None = None,
    should_stop: Callable[[], bool] | None = None,
    between: Between | None = None,
) -> LoopResult:
    """Runs chunks from `start_step` until the run's steps are done or the loop is told to stop.

    `chunk_fn(state, data, step, order_key) -> (state, metrics)` is compiled once, ahead of
    time, so a later chunk cannot recompile. After each chunk, in this order:

    - `on_eval(Evaluation)` reports it (files, progress, checkpoints);
    - `between(state, history) -> (state, stop)` returns the state the next chunk starts from
      (each leaf's shape and dtype kept) and whether the loop ends (`history[-1]`: this chunk);
    - `should_stop()` is a signal's request (`jaxnn.interrupt`).

    A `TrainState` loop also ends when every member has stopped or diverged.
    """
    history: list[dict[str, np.ndarray]] = []
    step = start_step
    started = time.perf_counter()
    compiled = chunk_fn.lower(state, data, _step(step), order_key).compile()
    compile_s = time.perf_counter() - started
    train_s = 0.0
    loop_started = time.perf_counter()
    while step < program.total_steps:
        started = time.perf_counter()
        state, metrics = compiled(state, data, _step(step), order_key)
        metrics = host_metrics(metrics)
        train_s += time.perf_counter() - started
        step = min(step + program.eval_every, program.total_steps)
        history.append({"step": np.array([step]), **metrics})
        if on_eval is not None:
            elapsed_s = time.perf_counter() - loop_started
            on_eval(Evaluation(step=step, metrics=metrics, state=state, elapsed_s=elapsed_s))
        stop = False
        if between is not None:
            state, stop = between(state, history)
        if stop or _members_done(state) or (should_stop is not None and should_stop()):
            break
    return LoopResult(
        state=state,
        history=history,
        steps_done=step,
        compile_s=compile_s,
        train_s=train_s,
        program_bytes=program_bytes(compiled),
        wall_s=time.perf_counter() - loop_started,
        start_step=start_step,
    )


def host_metrics(metrics: Mapping[str, jax.Array]) -> dict[str, np.ndarray]:
    """A chunk's metrics read to the host: float64 [num_members] each."""
    return {k: np.atleast_1d(np.asarray(v, np.float64)) for k, v in jax.device_get(metrics).items()}


def _step(step: int) -> np.ndarray:
    # A host array, which the compiled call puts on the device itself (jnp.asarray(step) would
    # compile a program of its own, and jax.device_put costs more than the call's own put).
    return np.asarray(step, np.int32)


def _members_done(state: Any) -> bool:
    """Whether every member of a TrainState has stopped or diverged (False for other states)."""
    return isinstance(state, TrainState) and bool(
        np.all(jax.device_get(state.stopped | state.diverged))
    )


@dataclasses.dataclass
class FitResult(Predicts):
    """A trained single model: its state and its evaluation history; `predictor()` (and
    `predict`, `score`, ...) predicts on raw inputs with its best-validation weights."""

    state: TrainState
    program: Program
    history: list[dict[str, np.ndarray]]
    compile_s: float
    train_s: float
    config: ml_collections.ConfigDict | None = None

    def _make_predictor(self) -> Predictor:
        stacked = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf)[None], self.state)
        group = member_group(
            self.program, stacked.best_params, stacked.hparams, model_state=stacked.best_model_state
        )
        return Predictor(
            [group],
            preprocessing=self.program.preprocessing,
            diverged=np.asarray(stacked.diverged, bool),
            best_member=0,
            config=self.config,
        )


def fit(
    config: ml_collections.ConfigDict,
    data: Dataset,
    key: jax.Array,
    *,
    hparams: Mapping[str, float] | None = None,
    order_key: jax.Array | None = None,
    on_eval: EvalCallback | None = None,
    between: Between | None = None,
    **components: Unpack[ComponentArgs],
) -> FitResult:
    """Trains one model: the single-member path (member i of an ensemble equals this with its key).

    `key` is the member key (`member_key(root, i)` reproduces member i of a run); `hparams`
    override the config's by name ('learning_rate', ...); `order_key` is the batch-order key of a
    `batch_order=shared` run, or None; `between` is `drive`'s hook; `components` the user's own
    parts (`jaxnn.nn.components.ComponentArgs`).

    Raises:
      ConfigError: a bad config or component, an unknown hyperparameter name, a sweep with
        structural fields (one model is one program), or a numeric sweep or search whose
        fields `hparams` does not set (one model is one point).
    """
    spec = front_end.resolve_call(config, data, key, Components.of(**components))
    spec = spec.single_program("fit")
    program, apply_fn, make_tx = build(spec, data)  # every member's value checked, data rules too
    spec.check_one_member("jaxnn.fit", hparams)
    member_hparams = _member_hparams(spec, hparams)
    state = jax.jit(lambda h, k: init_state(program, h, k, apply_fn=apply_fn, make_tx=make_tx))(
        member_hparams, key
    )
    chunk_fn = jax.jit(lambda s, d, t, o: run_chunk(s, d, t, o, program=program))
    on_device = device_data(data)
    loop = drive(chunk_fn, state, on_device, order_key, program, on_eval=on_eval, between=between)
    return FitResult(
        state=loop.state,
        program=program,
        history=loop.history,
        compile_s=loop.compile_s,
        train_s=loop.train_s,
        config=spec.config,
    )


def _member_hparams(spec: run_spec.RunSpec, hparams: Mapping[str, float] | None) -> dict:
    """The config's hyperparameters of the one member, with `hparams`' values in their place."""
    member_hparams = spec.base_hparams
    unknown = sorted(set(hparams or {}) - set(member_hparams))
    if unknown:
        raise ConfigError(
            f"hparams names {unknown[0]!r}, which this run does not have; its hyperparameters "
            f"are {', '.join(member_hparams)}"
        )
    return member_hparams | dict(hparams or {})
