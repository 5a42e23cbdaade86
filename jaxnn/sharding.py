"""Scale-out: the member axis of an ensemble sharded over a device mesh, and multi-host runs.

The mesh has one axis, `members`, over the devices of the run (`config.mesh.num_devices`, 0 =
every device of every process). Every leaf of the stacked `TrainState` has the member axis
first and is placed with `NamedSharding(mesh, P('members'))`, so each of the D devices trains
K/D members, and the chunk program stays one jitted program that XLA partitions across the
devices. The train and validation splits are replicated on every device
(`mesh.data=replicated`, the default) or sharded along their example axis
(`mesh.data=batch`, for data sets too large to hold on each device; XLA then moves the rows
each member's batch needs between devices).

When K is not a multiple of D, the run is padded with D - K mod D padding members: copies of
member 0 that are marked `stopped` from the start, so they never take an optimiser step and
never keep the loop from ending early. They exist only inside `jaxnn.ensemble.fit_ensemble`:
every state, metric and history that leaves it holds the K real members (so checkpoints do not
depend on the device count). The price is (D - K mod D) / D of one device's work per step.

With one device nothing is placed and the program is the single-device one, bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxnn import train
from jaxnn.data import Dataset
from jaxnn.errors import ConfigError

MEMBERS = "members"
DATA_MODES = ("replicated", "batch")
AUTO = "auto"
# Seconds JAX's join deadline is pushed past the caller's, so a watchdog can report first.
ABORT_GRACE_S = 30


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate_mesh_config(mesh: ml_collections.ConfigDict) -> None:
    """Checks `config.mesh`; asks JAX for the device count only when a count is requested.

    Raises:
      ConfigError: a negative count, more devices than exist, a partial mesh in a multi-process
        run, or an unknown data mode.
    """
    _require(
        isinstance(mesh.num_devices, int) and mesh.num_devices >= 0,
        f"mesh.num_devices must be an integer >= 0 (0 = every device), got {mesh.num_devices!r}",
    )
    _require(
        mesh.data in DATA_MODES,
        f"mesh.data must be one of {', '.join(DATA_MODES)}, got {mesh.data!r}",
    )
    if mesh.num_devices == 0:
        return
    available = jax.device_count()
    _require(
        mesh.num_devices <= available,
        f"mesh.num_devices={mesh.num_devices} asks for more devices than exist: this run "
        f"sees {available} ({jax.default_backend()}); use 0 for all of them",
    )
    _require(
        jax.process_count() == 1 or mesh.num_devices == available,
        f"mesh.num_devices={mesh.num_devices} would leave devices of a {jax.process_count()}-"
        f"process run out of the mesh; use 0 (all {available} devices)",
    )


def mesh_devices(mesh_config: ml_collections.ConfigDict | None) -> list[jax.Device]:
    """The devices the run's mesh spans, in JAX's order."""
    devices = jax.devices()
    requested = 0 if mesh_config is None else int(mesh_config.num_devices)
    return devices[:requested] if requested else devices


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where a run's members and data live, and the padding that makes K fit the mesh.

    `mesh` is None on one device: every method is then the identity (or the single-device
    default), so a one-device run is the program it always was.
    """

    mesh: Mesh | None
    num_members: int
    data: str = "replicated"

    @property
    def num_devices(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.devices.size)

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
        return NamedSharding(self.mesh, P(MEMBERS))

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def state_shardings(self, state: train.TrainState) -> train.TrainState:
        """A sharding per leaf: the member axis sharded; `stopped` and `diverged` replicated.

        The two flags are replicated so the host can read them after every chunk (the early
        exit of `train.drive`) even where the members span processes.
        """
        shardings = jax.tree_util.tree_map(lambda _: self.member_sharding, state)
        return shardings.replace(stopped=self.replicated, diverged=self.replicated)

    def jit_chunk(self, chunk: Callable[..., Any]) -> Any:
        """jit of the vmapped chunk; on a mesh its outputs keep the placement of its inputs."""
        if self.mesh is None:
            return jax.jit(chunk)

        def placed_chunk(state, data, start_step, order_key):
            state, metrics = chunk(state, data, start_step, order_key)
            state = jax.lax.with_sharding_constraint(state, self.state_shardings(state))
            return state, jax.lax.with_sharding_constraint(metrics, self.replicated)

        return jax.jit(placed_chunk)

    def place_data(self, data: Dataset) -> train.TrainingData:
        """The train and validation splits on the mesh (replicated or split by example)."""
        if self.mesh is None:
            return train.device_data(data)
        sharding = self.member_sharding if self.data == "batch" else self.replicated

        def put(array: np.ndarray) -> jax.Array:
            host = np.asarray(array)
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        return train.TrainingData(
            train=train.SplitData(put(data.x_train), put(data.y_train)),
            val=train.SplitData(put(data.x_val), put(data.y_val)),
        )

    def place_state(self, state: train.TrainState) -> train.TrainState:
        """The K-member state padded to `num_slots` members and sharded over the mesh."""
        if self.mesh is None:
            return state
        if all(_addressable(leaf) for leaf in jax.tree_util.tree_leaves(state)):
            # A state on one local device (fresh or restored): through the host to every device.
            state = jax.device_put(jax.device_get(state), self.replicated)
        return jax.jit(self._pad, out_shardings=self.state_shardings(state))(state)

    def _pad(self, state: train.TrainState) -> train.TrainState:
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

    def real_members(self, state: train.TrainState) -> train.TrainState:
        """The K real members of a placed state (the padding cut off, replicated; else as is)."""
        return state if self.num_padding == 0 else self._first_members(state)

    def result_state(self, state: train.TrainState) -> train.TrainState:
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

    def real_callback(self, on_eval: train.EvalCallback | None) -> train.EvalCallback | None:
        """`on_eval` seeing only the real members."""
        if on_eval is None or self.num_padding == 0:
            return on_eval

        def callback(evaluation: train.Evaluation) -> None:
            on_eval(
                train.Evaluation(
                    step=evaluation.step,
                    metrics=self.real_metrics(evaluation.metrics),
                    state=self.real_members(evaluation.state),
                )
            )

        return callback


def _addressable(leaf: Any) -> bool:
    return not isinstance(leaf, jax.Array) or leaf.is_fully_addressable


def placement(
    config: ml_collections.ConfigDict, num_members: int, data: Dataset | None = None
) -> Placement:
    """The placement of a run of `num_members` members under `config.mesh`.

    A config without a `mesh` section (one written before it existed) runs on one device.

    Raises:
      ConfigError: `mesh.data=batch` with split sizes that the device count does not divide.
    """
    mesh_config = config.get("mesh")
    devices = mesh_devices(mesh_config)
    if len(devices) == 1:
        return Placement(mesh=None, num_members=num_members)
    mode = mesh_config.data
    if mode == "batch" and data is not None:
        count = len(devices)
        _require(
            data.num_train % count == 0 and data.num_val % count == 0,
            f"mesh.data=batch splits the data over {count} devices, but the train and "
            f"validation splits hold {data.num_train} and {data.num_val} examples; both must "
            f"be multiples of {count} (change dataset.validation_fraction or mesh.num_devices, "
            "or use mesh.data=replicated)",
        )
    mesh = jax.make_mesh(
        (len(devices),), (MEMBERS,), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )
    return Placement(mesh=mesh, num_members=num_members, data=mode)


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


# --- Multi-host ---------------------------------------------------------------------------


def is_writer() -> bool:
    """True on the one process that writes the workdir's files (process 0)."""
    return jax.process_index() == 0


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of 'host:port' or '[ipv6]:port'.

    Raises:
      ConfigError: no port, or a port outside 1..65535.
    """
    host, _, port = address.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    _require(
        bool(host) and port.isdigit() and 0 < int(port) < 65536,
        f"--coordinator_address must be HOST:PORT (e.g. 10.0.0.1:1234) with a port in "
        f"1..65535, got {address!r}",
    )
    return host, int(port)


def check_distributed_args(
    coordinator_address: str, num_processes: int, process_id: int, timeout_s: int
) -> bool:
    """Checks the multi-host flags; returns whether `jax.distributed` is to be initialised.

    No coordinator address and one process is an ordinary single-process run. 'auto' leaves
    the coordinator, process count and id to JAX's cluster detection (Cloud TPU, Slurm,
    Open MPI, Kubernetes).

    Raises:
      ConfigError: on the first inconsistent flag.
    """
    _require(timeout_s >= 1, f"--distributed_timeout_s must be >= 1, got {timeout_s}")
    _require(num_processes >= 1, f"--num_processes must be >= 1, got {num_processes}")
    if coordinator_address == AUTO:
        _require(
            num_processes == 1 and process_id == 0,
            "--coordinator_address=auto detects the process count and id from the cluster; "
            "leave --num_processes and --process_id unset",
        )
        return True
    if not coordinator_address:
        _require(
            num_processes == 1,
            f"--num_processes={num_processes} needs --coordinator_address=HOST:PORT (the "
            "address of process 0), or --coordinator_address=auto on a TPU pod or Slurm",
        )
        _require(process_id == 0, "--process_id needs --coordinator_address and --num_processes")
        return False
    split_address(coordinator_address)
    _require(
        0 <= process_id < num_processes,
        f"--process_id={process_id} is out of range for --num_processes={num_processes} "
        f"(0..{num_processes - 1})",
    )
    return True


def initialize_distributed(
    coordinator_address: str,
    num_processes: int,
    process_id: int,
    *,
    timeout_s: int,
    on_timeout: Callable[[str], None] | None = None,
) -> bool:
    """Joins this process to a multi-process run (call before anything else touches JAX).

    Process 0 runs the coordinator on the address's port; every other process first waits for
    the coordinator to accept connections, so an unreachable one is a clear error rather than
    the runtime's abort. The whole join is bounded by `timeout_s`.

    Args:
      coordinator_address: process 0's HOST:PORT, 'auto' (cluster detection) or '' (none).
      num_processes, process_id: the run's size and this process's place in it.
      timeout_s: seconds the join may take.
      on_timeout: called with a one-line message, from another thread, when the join has not
        completed after `timeout_s` (JAX's runtime aborts the process some seconds later; the
        launcher prints the message and exits 2 first). None: JAX's own timeout and abort.

    Returns:
      Whether `jax.distributed` was initialised (False for a single-process run).

    Raises:
      ConfigError: bad flags, a coordinator port that process 0 cannot listen on, or a
        coordinator that does not answer within `timeout_s`.
    """
    if not check_distributed_args(coordinator_address, num_processes, process_id, timeout_s):
        return False
    deadline = time.monotonic() + timeout_s
    if coordinator_address == AUTO:
        waiting_for = "the cluster's coordinator (--coordinator_address=auto)"
        options: dict[str, Any] = {}
    else:
        host, port = split_address(coordinator_address)
        if process_id == 0:
            _check_can_listen(coordinator_address, port)
            waiting_for = (
                f"the other {num_processes - 1} process(es) at the coordinator "
                f"{coordinator_address} (start the same command with --process_id=1.."
                f"{num_processes - 1})"
            )
        else:
            _wait_for_coordinator(coordinator_address, host, port, timeout_s, deadline)
            waiting_for = (
                f"every process of the run at {coordinator_address} (is each of the "
                f"{num_processes} processes started, with its own --process_id?)"
            )
        options = {
            "coordinator_address": coordinator_address,
            "num_processes": num_processes,
            "process_id": process_id,
        }
    # With a watchdog, JAX's own deadline comes later, so the watchdog speaks first.
    grace_s = 0 if on_timeout is None else ABORT_GRACE_S
    remaining_s = max(1, math.ceil(deadline - time.monotonic()))
    watchdog = None
    if on_timeout is not None:
        message = f"waited {timeout_s} s for {waiting_for}; raise --distributed_timeout_s if slow"
        watchdog = threading.Timer(remaining_s, on_timeout, args=(message,))
        watchdog.daemon = True
        watchdog.start()
    try:
        jax.distributed.initialize(initialization_timeout=remaining_s + grace_s, **options)
    except (RuntimeError, ValueError) as error:
        detail = " ".join(str(error).split())
        hint = ""
        if coordinator_address == AUTO:
            hint = (
                " (--coordinator_address=auto found no Cloud TPU, Slurm, Open MPI or "
                "Kubernetes cluster; give --coordinator_address=HOST:PORT, --num_processes "
                "and --process_id)"
            )
        raise ConfigError(f"jax.distributed.initialize failed: {detail}{hint}") from error
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return True


def _check_can_listen(address: str, port: int) -> None:
    # JAX binds the coordinator to every interface on the port ([::]:port).
    with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as error:
            raise ConfigError(
                f"process 0 runs the coordinator but cannot listen on port {port} of "
                f"--coordinator_address={address} ({error.strerror}); choose a free port"
            ) from error


def _wait_for_coordinator(
    address: str, host: str, port: int, timeout_s: int, deadline: float
) -> None:
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        remaining = max(0.1, min(1.0, deadline - time.monotonic()))
        try:
            with socket.create_connection((host, port), timeout=remaining):
                return
        except OSError as error:
            last_error = error
            time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    reason = (last_error.strerror or str(last_error)) if last_error else "no answer"
    raise ConfigError(
        f"cannot reach the coordinator at {address} within {timeout_s} s ({reason}); start "
        "process 0 there first, check the address and port, or raise --distributed_timeout_s"
    )
