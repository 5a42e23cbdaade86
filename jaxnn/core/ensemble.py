"""Random-start ensembles: the single-member unit of work under `jax.vmap`.

Members are the numeric sweep variants times `restarts.num` random starts, variant-major: member
`v * K + s` is start `s` of variant `v`, keyed `member_key(root, s)`, so every variant starts from
the same K initialisations. A search has `restarts.num` members: member i trains point i from
start i. Member i equals `jaxnn.core.loop.fit` run alone with its key and values.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, Unpack

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnn import front_end, run_spec
from jaxnn.core import groups, loop, memory, schedules, train
from jaxnn.core.program import HParams, Program, TransferArgs, build
from jaxnn.core.schedules import halving
from jaxnn.core.schedules import members as members_lib
from jaxnn.data import Dataset
from jaxnn.data.device import SplitData
from jaxnn.nn import metrics as metrics_lib
from jaxnn.nn.components import ComponentArgs, Components
from jaxnn.parallel import sharding
from jaxnn.predict.predictor import MemberGroup, Predictor, Predicts, member_group


@dataclasses.dataclass(frozen=True)
class Member:
    """One member of a run: which random start, and which swept values it trains with."""

    index: int
    seed_index: int
    swept: dict[str, float]  # config field -> value, for the swept fields only

    def hparams(self, spec: run_spec.RunSpec) -> dict[str, float]:
        """All numeric hyperparameters of this member (config values with the swept ones)."""
        fields = spec.numeric_fields()
        named = {fields[field].hparam: value for field, value in self.swept.items()}
        return {**spec.base_hparams, **named}


def num_members(spec: run_spec.RunSpec) -> int:
    """How many members a run has (numeric variants x random starts), without listing them."""
    return len(spec.sweep.numeric_variants()) * int(spec.config.restarts.num)


def members(spec: run_spec.RunSpec) -> list[Member]:
    """The members of a run, variant-major (see the module docstring)."""
    if spec.search is not None:
        return [
            Member(index=i, seed_index=i, swept=dict(point))
            for i, point in enumerate(spec.search.points)
        ]
    variants = spec.sweep.numeric_variants()
    num_starts = int(spec.config.restarts.num)
    return [
        Member(index=v * num_starts + s, seed_index=s, swept=variant)
        for v, variant in enumerate(variants)
        for s in range(num_starts)
    ]


def stacked_hparams(spec: run_spec.RunSpec, run_members: list[Member]) -> dict[str, jax.Array]:
    """Hyperparameters of every member: name -> float32 [num_members]."""
    rows = [member.hparams(spec) for member in run_members]
    return {name: jnp.asarray([row[name] for row in rows], jnp.float32) for name in rows[0]}


def member_keys(root: jax.Array, run_members: list[Member]) -> jax.Array:
    """Member keys uint32 [num_members, 2]."""
    seeds = jnp.asarray([member.seed_index for member in run_members], jnp.int32)
    return jax.vmap(train.member_key, in_axes=(None, 0))(root, seeds)


@dataclasses.dataclass
class EnsembleResult(Predicts):
    """A trained ensemble: the stacked state (leaves lead with the member axis), its history,
    and `predictor()` (`predict`, `score`, ...) on raw inputs with the selected member, any
    member, or the ensemble (`jaxnn.predict.predictor.Predictor`)."""

    state: train.TrainState
    program: Program
    members: list[Member]
    history: list[dict[str, np.ndarray]]
    steps_done: int
    compile_s: float
    train_s: float  # in the chunk programs (jaxnn.core.loop.LoopResult)
    data: Dataset  # what it was trained on (its validation split selects)
    config: ml_collections.ConfigDict
    program_bytes: int | None = None  # XLA's memory account of the chunk program, if it has one
    wall_s: float = 0.0  # the training loop after compiling, host work between chunks included
    start_step: int = 0  # where this launch's training started (a resumed run's checkpoint)
    # steps run times members in the batch (a schedule's shrinking batch); None: every member
    # ran every step from start_step to steps_done
    member_steps: int | None = None
    group_size: int = 0  # members per group on each device (0: all at once; mesh.member_group)
    memory: memory.RunBytes | None = None  # the estimate the run was checked against
    # restarts.schedule's record of this launch (jaxnn.core.schedules.ScheduleResult.describe)
    schedule: dict[str, Any] | None = None

    @property
    def diverged(self) -> np.ndarray:
        """bool [num_members]: whose training loss became non-finite."""
        return np.asarray(jax.device_get(self.state.diverged), bool)

    def validation_scores(self) -> np.ndarray:
        """float64 [num_members]: each member's `restarts.select_by` on the validation split."""
        metrics, _ = evaluate_members(self.state, self.program, self.data.x_val, self.data.y_val)
        return metrics[self.config.restarts.select_by.removeprefix("val_")]

    def best_member(self) -> int | None:
        """The member `restarts.select_by` selects on the validation split (None: all diverged)."""
        select_by = self.config.restarts.select_by
        return select_best(
            {select_by: self.validation_scores()},
            self.diverged,
            select_by,
            greater_is_better=self.program.greater_is_better(select_by),
        )

    def member_group(self) -> MemberGroup:
        """The members' best weights as one `jaxnn.predict.predictor.MemberGroup`."""
        return member_group(
            self.program,
            self.state.best_params,
            self.state.hparams,
            model_state=self.state.best_model_state,
        )

    def _make_predictor(self) -> Predictor:
        return Predictor(
            [self.member_group()],
            preprocessing=self.program.preprocessing,
            diverged=self.diverged,
            best_member=self.best_member(),
            config=self.config,
            left_out_of_ensemble=self.pruned(),
        )

    def pruned(self) -> np.ndarray | None:
        """bool [M]: the members a halving rung stopped in this result's launch (None: a run
        without a schedule)."""
        if self.schedule is None:
            return None
        return halving.pruned_at_rungs(len(self.members), self.schedule["events"])


@dataclasses.dataclass
class Trainer:
    """The compiled pieces of an ensemble run: what `fit_ensemble` and resumption share."""

    spec: run_spec.RunSpec
    program: Program
    members: list[Member]
    init_fn: Any
    order_key: jax.Array | None  # None: each member draws its own batches
    placement: sharding.Placement  # where members and data live; on one device, nowhere special
    group_size: int = 0  # members per group on each device (0: all at once; jaxnn.core.groups)
    memory: memory.RunBytes | None = None  # the run's memory estimate (jaxnn.core.memory)

    def chunk_for(self, placement: sharding.Placement) -> Any:
        """The jitted chunk of the members under `placement`, `group_size` at a time."""
        chunk = functools.partial(train.run_chunk, program=self.program)
        grouped = groups.grouped_vmap(
            chunk,
            (0, None, None, None if self.order_key is not None else 0),
            num_members=placement.num_slots,
            group_size=self.group_size,
            num_shards=placement.num_devices,
        )
        return placement.jit_chunk(grouped)

    @functools.cached_property
    def chunk_fn(self) -> Any:
        return self.chunk_for(self.placement)


def make_trainer(
    spec: run_spec.RunSpec, data: Dataset, key: jax.Array, **transfer: Unpack[TransferArgs]
) -> Trainer:
    """Builds the vmapped init and chunk functions of a run (nothing is compiled yet); the
    run's memory is checked (`jaxnn.core.memory`) before the members are listed.

    Raises:
      ConfigError: a shape that does not fit the data, a `config.mesh` that does not, or a run
        that needs more memory than the machine has.
    """
    config = spec.config
    program, apply_fn, make_tx = build(spec, data, **transfer)
    placement = sharding.placement(config, num_members(spec), data)
    init_one = functools.partial(train.init_state, program, apply_fn=apply_fn, make_tx=make_tx)
    group, need = _checked_memory(spec, program, init_one, data, placement)
    run_members = members(spec)
    schedules.check_plan(spec, program, len(run_members))
    shared = config.training.batch_order == "shared"

    def init_fn(
        hparams: HParams, keys: jax.Array, pretrained: Mapping[str, Any] | None
    ) -> train.TrainState:
        return jax.vmap(lambda h, k: init_one(h, k, pretrained=pretrained))(hparams, keys)

    return Trainer(
        spec=spec,
        program=program,
        members=run_members,
        init_fn=jax.jit(init_fn),
        order_key=train.shared_order_key(key) if shared else None,
        placement=placement,
        group_size=group,
        memory=need,
    )


def _checked_memory(
    spec: run_spec.RunSpec,
    program: Program,
    init_one: Callable[..., train.TrainState],
    data: Dataset,
    placement: sharding.Placement,
) -> tuple[int, memory.RunBytes]:
    """(the members' group size, the run's memory estimate), checked against the machine's:
    the state alone first (a model too large to hold is refused before its step is traced)."""
    label_shape, label_dtype = tuple(np.shape(data.y_train)[1:]), np.asarray(data.y_train).dtype

    def split(count: int) -> tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct]:
        return (
            jax.ShapeDtypeStruct((count, *program.feature_shape), jnp.float32),
            jax.ShapeDtypeStruct((count, *label_shape), label_dtype),
        )

    batch = (*split(program.batch_size), jax.ShapeDtypeStruct((program.batch_size,), jnp.bool_))
    step = functools.partial(train.train_step, program=program)

    def evaluate(state: train.TrainState, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        return train.evaluate(state, state.params, SplitData(x, y), program)

    per_device = placement.num_slots // placement.num_devices
    for traced in (False, True):
        member = memory.member_bytes(
            init_one,
            spec.base_hparams,
            step=step if traced else None,
            evaluate=evaluate if traced else None,
            batch=batch,
            splits=(split(program.num_train), split(data.num_val)),
        )
        # mesh.member_group, else the backend's size; one at least a device's share: all at once
        group = int(spec.config.mesh.member_group) or groups.auto_group_size(
            jax.default_backend(), member.step_working_set
        )
        group = 0 if group >= per_device else group
        need = memory.run_bytes(
            member,
            data,
            num_members=placement.num_slots,
            live_members=placement.num_devices * (group or per_device),
            num_devices=placement.num_devices,
        )
        memory.check_fits(need, jax.default_backend(), placement.devices)
    return group, need


def init_members(
    trainer: Trainer, key: jax.Array, pretrained: Mapping[str, Any] | None = None
) -> train.TrainState:
    """The stacked initial state of every member."""
    hparams = stacked_hparams(trainer.spec, trainer.members)
    return trainer.init_fn(hparams, member_keys(key, trainer.members), pretrained)


def fit_ensemble(
    config: ml_collections.ConfigDict,
    data: Dataset,
    key: jax.Array,
    *,
    on_eval: loop.EvalCallback | None = None,
    sweep: Any = None,
    state: train.TrainState | None = None,
    start_step: int = 0,
    pretrained: Mapping[str, Any] | None = None,
    transfer: TransferArgs | None = None,
    **components: Unpack[ComponentArgs],
) -> EnsembleResult:
    """Trains every member of the run together: one jitted dispatch per chunk for all members.

    On several devices the members are sharded over `config.mesh` (`jaxnn.parallel.sharding`);
    the state, metrics and history given to `on_eval` and returned hold the real members only.

    Args:
      key: the run's root key (`jax.random.PRNGKey(config.seed)`).
      on_eval: called after every evaluation with metrics of shape [num_members].
      sweep: the sweep (a string, a mapping field -> values, or a Sweep) in place of
        `config.restarts.sweep`; numeric fields only (see `jaxnn.core.variants.fit_variants`).
      state: a stacked state to continue from (from a run on any number of devices), with
        `start_step` its global step.
      pretrained: the layers every member starts from (transfer), as Flax variables:
        {'params': {layer: ...}} and their model state, e.g. {'batch_stats': {layer: ...}}.
      transfer: param labels and learning-rate scales for transfer (`TransferArgs`).
      **components: the user's own parts (`jaxnn.nn.components.ComponentArgs`).

    Raises:
      ConfigError: any mistake in the config or the components, or a sweep with several
        structural variants (several programs: use `fit_variants` or `jaxnn.run`).
    """
    spec = front_end.resolve_call(config, data, key, Components.of(**components), sweep=sweep)
    trainer = make_trainer(spec.single_program("fit_ensemble"), data, key, **(transfer or {}))
    return train_members(
        trainer,
        data,
        key,
        on_eval=on_eval,
        state=state,
        start_step=start_step,
        pretrained=pretrained,
    )


def train_members(
    trainer: Trainer,
    data: Dataset,
    key: jax.Array,
    *,
    on_eval: loop.EvalCallback | None = None,
    state: train.TrainState | None = None,
    start_step: int = 0,
    pretrained: Mapping[str, Any] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> EnsembleResult:
    """Trains a built trainer's members from `state` (or from their initialisation), asking
    `should_stop` between chunks.

    A state whose training is over is returned placed as a trained one would be, without
    compiling anything, so that the final evaluation computes the same bits either way.
    """
    placement = trainer.placement
    if state is None:
        state = init_members(trainer, key, pretrained)
    # A scheduled run's driver returns a finished state as it came (on one device).
    if schedules.run_schedule(trainer.spec, len(trainer.members)).active:
        scheduled = schedules.drive(
            trainer,
            state,
            data,
            key,
            start_step=start_step,
            on_eval=on_eval,
            should_stop=should_stop,
        )
        return _result(
            trainer,
            data,
            dataclasses.replace(scheduled, start_step=start_step),
            member_steps=scheduled.member_steps,
            schedule=scheduled.describe(),
        )
    if is_finished(state, start_step, trainer.program):
        placed = placement.result_state(placement.place_state(state))
        trained = loop.LoopResult(placed, [], start_step, 0.0, 0.0, start_step=start_step)
        return _result(trainer, data, trained)
    result = loop.drive(
        trainer.chunk_fn,
        placement.place_state(state),
        placement.place_data(data),
        trainer.order_key,
        trainer.program,
        start_step=start_step,
        on_eval=placement.real_callback(on_eval),
        should_stop=should_stop,
    )
    history = [placement.real_metrics(entry) for entry in result.history]
    state = placement.result_state(result.state)
    return _result(trainer, data, dataclasses.replace(result, state=state, history=history))


def _result(
    trainer: Trainer, data: Dataset, run: loop.LoopResult, **schedule: Any
) -> EnsembleResult:
    """The EnsembleResult of a trainer's `run` on `data` (`schedule`: a scheduled run's record)."""
    loop_fields = {f.name: getattr(run, f.name) for f in dataclasses.fields(loop.LoopResult)}
    return EnsembleResult(
        **loop_fields,
        program=trainer.program,
        members=trainer.members,
        group_size=trainer.group_size,
        memory=trainer.memory,
        data=data,
        config=trainer.spec.config,
        **schedule,
    )


def is_finished(state: train.TrainState, step: int, program: Program) -> bool:
    """Whether a run at global step `step` has nothing left to train."""
    return step >= program.total_steps or not members_lib.live_mask(state).any()


def member_state(state: train.TrainState, index: int) -> train.TrainState:
    """Member `index` of a stacked state, as a single-member state."""
    return jax.tree_util.tree_map(lambda leaf: leaf[index], state)


@functools.partial(jax.jit, static_argnames=("program", "group_size"))
def _final_eval(
    state: train.TrainState, x: jax.Array, y: jax.Array, program: Program, group_size: int
) -> tuple[dict[str, jax.Array], jax.Array]:
    def one(member: train.TrainState) -> tuple[dict[str, jax.Array], jax.Array]:
        metrics = train.evaluate_best(member, SplitData(x, y), program)
        outputs, _ = member.apply_fn(member.best_params, member.best_model_state, x, member.hparams)
        return metrics, program.predict(outputs)

    num = int(state.step.shape[0])
    return groups.grouped_vmap(one, (0,), num_members=num, group_size=group_size)(state)


def evaluate_members(
    state: train.TrainState, program: Program, x: np.ndarray, y: np.ndarray, *, group_size: int = 0
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Loss and metrics of every member's best weights on one split, and their predictions
    [M, N, O]; `group_size` members at a time (0: all at once)."""
    metrics, predictions = _final_eval(
        state, jnp.asarray(x), jnp.asarray(y), program, int(group_size)
    )
    metrics = {k: np.asarray(v, np.float64) for k, v in metrics.items()}
    return metrics, np.asarray(predictions)


def ensemble_metrics(
    predictions: np.ndarray, targets: np.ndarray, program: Program, included: np.ndarray
) -> dict[str, float]:
    """Test metrics of the averaged prediction of the included members (diverged ones excluded):
    accuracy of the averaged probabilities, or R2 and RMSE of the averaged regression."""
    if not included.any():
        return {}
    mean = jnp.asarray(predictions[included].mean(axis=0))
    builtin = metrics_lib.builtin_metrics(program.task, program.target_std)
    return {
        f"test_{name}": float(metric.fn(mean, jnp.asarray(targets)))
        for name, metric in builtin.items()
    }


def select_best(
    member_metrics: Mapping[str, np.ndarray],
    diverged: np.ndarray,
    select_by: str,
    *,
    greater_is_better: bool,
) -> int | None:
    """Index of the best non-diverged member by a validation metric (None if all diverged);
    ties go to the lowest index."""
    values = members_lib.ranking_values(
        member_metrics[select_by], diverged, greater_is_better=greater_is_better
    )
    if not np.isfinite(values).any():
        return None
    return int(np.argmin(values))
