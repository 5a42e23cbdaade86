"""Scale-out: the member axis of an ensemble sharded over a one-axis mesh (`members`) of devices.

Each of the D devices (`config.mesh.num_devices`, 0 = all) trains K/D members in one jitted
program; the data is replicated or split by example (`mesh.data`). When D does not divide K,
padding members (copies of member 0, `stopped` from the start) fill the mesh; every state,
metric and history that leaves it holds the K real members (checkpoints do not depend on D).
With one device nothing is placed: the program is the single-device one, bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnn.data import Dataset, device
from jaxnn.errors import ConfigError

# A members' state (leaves lead with the member axis; `stopped` and `diverged` flags) and an
# evaluation callback, named here by what this module needs: parallel sits below core.
State = TypeVar("State")
EvalCallback = Callable[[Any], None]

MEMBERS = "members"


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run's members and data live, and the padding that makes K fit the mesh.

    `mesh` is None on one device: every method is then the identity (or the single-device
    default).
    """

    mesh: Mesh | None
    num_members: int
    data: str = "replicated"

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.devices.size)

    @property
    def devices(self) -> list[jax.Device]:
        """The devices the members run on."""
        return jax.devices()[:1] if self.mesh is None else list(self.mesh.devices.flat)

    @property
    def num_slots(self) -> int:
        """Members the program runs: K rounded up to a multiple of the device count."""
        return -(-self.num_members // self.num_devices) * self.num_devices

    @property
    def num_padding(self) -> int:
        return self.num_slots - self.num_members

    @property
    def member_sharding(self) -> NamedSharding:
        """Leading (member) axis split over the mesh, other axes whole."""
        return NamedSharding(self._on_mesh(), P(MEMBERS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self._on_mesh(), P())

    def put_members(self, tree: Any) -> Any:
        """Arrays with the member axis first, split over the mesh (else on the default device)."""
        return jax.device_put(tree, None if self.mesh is None else self.member_sharding)

    def put_shared(self, tree: Any) -> Any:
        """Arrays every member reads, on every device of the mesh (else on the default device)."""
        return jax.device_put(tree, None if self.mesh is None else self.replicated)

    def _on_mesh(self) -> Mesh:
        """The mesh; a one-device placement has none, so it places nothing by sharding."""
        if self.mesh is None:
            raise ValueError("a one-device placement has no mesh to shard over")
        return self.mesh

    def state_shardings(self, state: State) -> State:
        """A sharding per leaf: the member axis sharded; `stopped` and `diverged` replicated, so
        the host can read them after every chunk even where the members span processes."""
        shardings = jax.tree_util.tree_map(lambda _: self.member_sharding, state)
        return shardings.replace(stopped=self.replicated, diverged=self.replicated)

    def jit_chunk(self, chunk: Callable[..., Any]) -> Any:
        """jit of the vmapped chunk; on a mesh its outputs keep the placement of its inputs."""
        if self.mesh is None:
            return jax.jit(chunk)

        def placed_chunk(
            state: State,
            data: device.TrainingData,
            start_step: jax.Array,
            order_key: jax.Array | None,
        ) -> tuple[State, dict[str, jax.Array]]:
            state, metrics = chunk(state, data, start_step, order_key)
            state = jax.lax.with_sharding_constraint(state, self.state_shardings(state))
            return state, jax.lax.with_sharding_constraint(metrics, self.replicated)

        return jax.jit(placed_chunk)

    def place_data(self, data: Dataset) -> device.TrainingData:
        """The train and validation splits on the mesh (replicated or split by example)."""
        if self.mesh is None:
            return device.device_data(data)
        sharding = self.member_sharding if self.data == "batch" else self.replicated

        def put(array: np.ndarray) -> jax.Array:
            host = np.asarray(array)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        return device.TrainingData(
            train=device.SplitData(put(data.x_train), put(data.y_train)),
            val=device.SplitData(put(data.x_val), put(data.y_val)),
        )

    def place_state(self, state: State) -> State:
        """The K-member state padded to `num_slots` members and sharded over the mesh."""
        if self.mesh is None:
            return state
        leaves = jax.tree_util.tree_leaves(state)
        if all(not isinstance(leaf, jax.Array) or leaf.is_fully_addressable for leaf in leaves):
            # A state on one local device (fresh or restored): through the host to every device.
            state = jax.device_get(state)
        # Also moves a state restored across hosts onto this mesh (whatever its device order).
        state = jax.device_put(state, self.replicated)
        return jax.jit(self._pad, out_shardings=self.state_shardings(state))(state)

    def _pad(self, state: State) -> State:
        if self.num_padding == 0:
            return state

        def pad(leaf: jax.Array) -> jax.Array:
            copies = jnp.repeat(leaf[:1], self.num_padding, axis=0)
            return jnp.concatenate([leaf, copies], axis=0)

        padded = jax.tree_util.tree_map(pad, state)
        is_padding = jnp.arange(self.num_slots) >= self.num_members
        return padded.replace(stopped=padded.stopped | is_padding)

    @functools.cached_property
    def _first_members(self) -> Any:
        """jit: the first K members of every leaf, replicated (shardings must divide evenly)."""
        cut = lambda s: jax.tree_util.tree_map(lambda leaf: leaf[: self.num_members], s)
        return jax.jit(cut, out_shardings=self.replicated)

    def real_members(self, state: State) -> State:
        """The K real members of a placed state (the padding cut off, replicated; else as is)."""
        return state if self.num_padding == 0 else self._first_members(state)

    def result_state(self, state: State) -> State:
        """The final K-member state, readable on every process (replicated across hosts)."""
        if self.mesh is not None and jax.process_count() > 1:
            return self._first_members(state)
        return self.real_members(state)

    def real_metrics(self, metrics: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Host metrics of one evaluation, padding members cut off ('step' is kept)."""
        if self.num_padding == 0:
            return metrics
        return {
            name: values if name == "step" else values[: self.num_members]
            for name, values in metrics.items()
        }

    def real_callback(self, on_eval: EvalCallback | None) -> EvalCallback | None:
        """`on_eval` seeing only the real members."""
        if on_eval is None or self.num_padding == 0:
            return on_eval

        def callback(evaluation: Any) -> None:
            metrics = self.real_metrics(evaluation.metrics)
            state = self.real_members(evaluation.state)
            on_eval(dataclasses.replace(evaluation, metrics=metrics, state=state))

        return callback


def placement(
    config: ml_collections.ConfigDict, num_members: int, data: Dataset | None = None
) -> Placement:
    """The placement of a run of `num_members` members under `config.mesh`.

    Raises:
      ConfigError: `mesh.data=batch` with split sizes that the device count does not divide.
    """
    requested = int(config.mesh.num_devices)
    devices = jax.devices()[:requested] if requested else jax.devices()
    if jax.process_count() == 1 and not requested:
        # Every device by default, but never more than members: a device holding only a
        # padding member would compute for nothing (a single model stays on one device).
        devices = devices[: max(1, min(len(devices), num_members))]
    if len(devices) == 1:
        return Placement(mesh=None, num_members=num_members)
    mode = config.mesh.data
    if mode == "batch" and data is not None:
        count = len(devices)
        if data.num_train % count or data.num_val % count:
            raise ConfigError(
                f"mesh.data=batch splits the data over {count} devices, but the train and "
                f"validation splits hold {data.num_train} and {data.num_val} examples; both must "
                f"be multiples of {count} (change dataset.validation_fraction or mesh.num_devices, "
                "or use mesh.data=replicated)"
            )
    return Placement(mesh=_members_mesh(devices), num_members=num_members, data=mode)


def _members_mesh(devices: list[jax.Device]) -> Mesh:
    """A one-axis mesh (`members`) over `devices`, in their order."""
    return jax.make_mesh(
        (len(devices),), (MEMBERS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


@functools.lru_cache(maxsize=32)
def even_placement(num_members: int, max_devices: int | None = None) -> Placement:
    """The members over as many of this process's devices as divide their number (no padding
    members): the largest divisor of `num_members` not above the device count (nor
    `max_devices`); no mesh when that is 1."""
    devices = jax.local_devices()[:max_devices]
    count = max(d for d in range(1, len(devices) + 1) if num_members % d == 0)
    mesh = None if count == 1 else _members_mesh(devices[:count])
    return Placement(mesh=mesh, num_members=num_members)


def describe(placed: Placement) -> str:
    """One line for the run's header: devices, members per device, padding."""
    if placed.mesh is None:
        return f"1 device ({jax.default_backend()})"
    per_device = placed.num_slots // placed.num_devices
    text = (
        f"{placed.num_devices} devices ({jax.default_backend()}, {jax.process_count()} "
        f"process(es)), {per_device} member(s) each, data {placed.data}"
    )
    if placed.num_padding:
        text += f", {placed.num_padding} padding member(s)"
    return text


def is_writer() -> bool:
    """True on the one process that writes the workdir's files (process 0)."""
    return jax.process_index() == 0
