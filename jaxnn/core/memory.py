"""What a run needs in memory, estimated from shapes before anything is allocated or written.

Per member: its state and the intermediates of one step and one evaluation; for the run: the
stacked state `STATE_COPIES` times, the activations of one group (`jaxnn.core.groups`), the
splits on every device and the host copy a checkpoint save takes. From `jax.eval_shape` and
`jax.make_jaxpr` of one member: one trace whatever the member count. `check_fits` refuses a run
whose estimate exceeds `USABLE_FRACTION` of the devices' or the host's available memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.data import Dataset
from jaxnn.errors import ConfigError

# Copies of the stacked state a chunk holds: its input, its output, and one working copy while
# the members are cut into groups and merged back.
STATE_COPIES = 3
MEMINFO = "/proc/meminfo"
# The share of the available memory a run may plan to use: the rest is for what the account
# leaves out (Python's records of every member, the writers' buffers, the compiler) and for
# the machine's other processes.
USABLE_FRACTION = 0.8
# Operations whose outputs XLA materialises (elementwise chains fuse into these).
MATERIALISED = frozenset(
    {"dot_general", "conv_general_dilated", "gather", "scatter", "scatter-add", "scatter_add"}
    | {"sort", "reduce_sum", "reduce_max", "reduce_min", "reduce_prod", "argmax", "argmin"}
    | {"cumsum", "cummax", "cumlogsumexp", "concatenate", "transpose", "dynamic_slice"}
    | {"dynamic_update_slice", "random_bits", "threefry2x32"}
)


@dataclasses.dataclass(frozen=True)
class MemberBytes:
    """One member's memory, in bytes."""

    params: int
    opt_state: int
    best_params: int
    other_state: int  # step, hparams, key, best loss, counters and flags
    step_activations: int  # intermediates of one training step (gradients included)
    eval_activations: int  # intermediates of evaluating the training and validation splits
    # model state and its best copy (BatchNorm's statistics), and the averaged weights
    model_state: int = 0

    @property
    def state(self) -> int:
        return self.params + self.opt_state + self.best_params + self.model_state + self.other_state

    @property
    def step_working_set(self) -> int:
        """What one member's training step touches: its state and the step's intermediates."""
        return self.state + self.step_activations

    @property
    def activations(self) -> int:
        return max(self.step_activations, self.eval_activations)


@dataclasses.dataclass(frozen=True)
class RunBytes:
    """A run's memory: the members' share, the data on every device, the checkpoint copy."""

    num_members: int
    live_members: int  # members whose activations exist at once (a group, or all)
    member: MemberBytes
    data: int  # the training and validation splits on one device
    num_devices: int
    accelerator: bool  # the device memory is not the host's
    predictions: int = 0  # one member's test predictions (float32 [N_test, O]), for the summary

    @property
    def device(self) -> int:
        """Bytes on the devices, all of them together."""
        return (
            STATE_COPIES * self.num_members * self.member.state
            + self.live_members * self.member.activations
            + self.num_devices * self.data
            + self.num_members * self.predictions
        )

    @property
    def checkpoint(self) -> int:
        """The host copy of the stacked state that a checkpoint save takes."""
        return self.num_members * self.member.state

    @property
    def host(self) -> int:
        """Bytes of host RAM (the devices' share too on a CPU backend): the checkpoint copy and
        the members' test predictions that the summary averages."""
        host = self.checkpoint + self.num_members * self.predictions
        return host + (0 if self.accelerator else self.device)

    def to_json(self) -> dict[str, Any]:
        return {
            "per_member": {**dataclasses.asdict(self.member), "state": self.member.state},
            "members": self.num_members,
            "live_members": self.live_members,
            "data_per_device": self.data,
            "predictions_per_member": self.predictions,
            "device_bytes": self.device,
            "checkpoint_bytes": self.checkpoint,
            "host_bytes": self.host,
        }


def tree_bytes(tree: Any) -> int:
    """Bytes of every array (or ShapeDtypeStruct) leaf of a pytree."""
    return sum(_array_bytes(leaf) for leaf in jax.tree_util.tree_leaves(tree))


def _array_bytes(array: Any) -> int:
    """Bytes of an array or abstract value; a typed PRNG key element counts as two uint32."""
    extended = jax.dtypes.issubdtype(array.dtype, jax.dtypes.extended)
    itemsize = 8 if extended else np.dtype(array.dtype).itemsize
    return int(np.prod(array.shape, dtype=np.int64)) * itemsize


def _jaxprs(value: Any) -> list[Any]:
    if isinstance(value, jax.extend.core.ClosedJaxpr):
        return [value.jaxpr]
    if isinstance(value, jax.extend.core.Jaxpr):
        return [value]
    if isinstance(value, list | tuple):
        return [j for item in value for j in _jaxprs(item)]
    return []


def intermediate_bytes(jaxpr: Any) -> int:
    """Bytes of the values a jaxpr materialises, its nested jaxprs' included: the outputs of
    the operations XLA writes to memory (`MATERIALISED`); elementwise operations fuse into
    their consumers and are not counted. An estimate of what one call holds, not a bound."""
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in MATERIALISED:
            avals = [var.aval for var in eqn.outvars]
            total += sum(
                _array_bytes(a) for a in avals if hasattr(a, "shape") and hasattr(a, "dtype")
            )
        for param in eqn.params.values():
            total += sum(intermediate_bytes(inner) for inner in _jaxprs(param))
    return total


def member_bytes(
    init: Callable[[Any, jax.Array], Any],
    hparams: Mapping[str, float | jax.Array],
    *,
    step: Callable[[Any, Any, jax.Array], Any] | None = None,
    evaluate: Callable[[Any, jax.Array, jax.Array], Any] | None = None,
    batch: tuple[jax.ShapeDtypeStruct, ...] = (),
    splits: tuple[tuple[jax.ShapeDtypeStruct, jax.ShapeDtypeStruct], ...] = (),
) -> MemberBytes:
    """One member's account, from shapes alone of the functions that make and train it.

    `init(hparams, key)` makes a `TrainState` (hparams' names matter, not their values);
    `step(state, batch, global_step)` is traced on `batch` (x, y, mask) and `evaluate(state,
    x, y)` on each of `splits`; without them, the state alone (zero activations).
    """
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    state = jax.eval_shape(init, hparams, key)
    member = _state_bytes(state)
    if step is None or evaluate is None:
        return member
    global_step = jax.ShapeDtypeStruct((), jnp.int32)
    step_bytes = intermediate_bytes(jax.make_jaxpr(step)(state, batch, global_step).jaxpr)
    eval_bytes = max(
        intermediate_bytes(jax.make_jaxpr(evaluate)(state, x, y).jaxpr) for x, y in splits
    )
    return dataclasses.replace(member, step_activations=step_bytes, eval_activations=eval_bytes)


def _state_bytes(state: Any) -> MemberBytes:
    """One member's account of its state alone (zero activations)."""
    params, opt_state, best = (
        tree_bytes(part) for part in (state.params, state.opt_state, state.best_params)
    )
    model_state = tree_bytes((state.model_state, state.best_model_state, state.ema))
    return MemberBytes(
        params=params,
        opt_state=opt_state,
        best_params=best,
        other_state=tree_bytes(state) - params - opt_state - best - model_state,
        step_activations=0,
        eval_activations=0,
        model_state=model_state,
    )


def run_bytes(
    member: MemberBytes, data: Dataset, *, num_members: int, live_members: int, num_devices: int
) -> RunBytes:
    """The account of a run of `num_members` members (`live_members` running at once) on
    `num_devices` devices of JAX's default backend."""
    splits = (data.x_train, data.y_train, data.x_val, data.y_val)
    return RunBytes(
        num_members=num_members,
        live_members=live_members,
        member=member,
        data=sum(np.asarray(split).size * 4 for split in splits),  # float32 / int32 on device
        num_devices=num_devices,
        accelerator=jax.default_backend() != "cpu",
        predictions=len(data.x_test) * data.num_outputs * 4,
    )


def available_bytes(backend: str, devices: list[jax.Device]) -> tuple[int | None, str]:
    """(bytes, where) of the memory a run may use: the devices' limit on an accelerator that
    reports one, else the host's available RAM (None if neither is known)."""
    if backend != "cpu":
        limits = [(d.memory_stats() or {}).get("bytes_limit", 0) for d in devices]
        if limits and all(limits):
            return int(sum(limits)), f"{len(devices)} {backend} device(s)"
    return host_available_bytes(), "host RAM"


def host_available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo (psutil's account where /proc is missing), or None."""
    try:
        with open(MEMINFO) as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def gib(count: int) -> str:
    """A byte count as people read it (GiB, MiB or KiB)."""
    for unit, size in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count / 2**10:.1f} KiB"


def check_fits(need: RunBytes, backend: str, devices: list[jax.Device]) -> None:
    """Refuses a run that needs more memory than the machine has.

    Raises:
      ConfigError: one line with what the run needs and what is available.
    """
    if need.accelerator:
        have, where = available_bytes(backend, devices)
        if have is not None and need.device > USABLE_FRACTION * have:
            _refuse(need, need.device, have, where)
    have = host_available_bytes()
    if have is not None and need.host > USABLE_FRACTION * have:
        _refuse(need, need.host, have, "host RAM")


def _refuse(need: RunBytes, needed: int, have: int, where: str) -> None:
    member = need.member
    activations = (
        f", {gib(member.activations)} of activations for each of the {need.live_members} "
        "member(s) running at once"
        if member.activations
        else ""
    )
    raise ConfigError(
        f"the run needs about {gib(needed)} of memory but {where} has {gib(have)} available "
        f"(a run may use {USABLE_FRACTION:.0%}): {need.num_members} member(s) x "
        f"{gib(member.state)} of state (parameters, optimiser, best weights) and "
        f"{gib(need.predictions)} of test predictions{activations}, {gib(need.data)} of data "
        "per device; lower restarts.num, the sweep's size or the model's size"
    )
