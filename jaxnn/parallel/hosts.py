"""Multi-host runs: checking the launcher's host flags and joining `jax.distributed`.

The same command runs on every host with `--coordinator_address` (process 0's HOST:PORT),
`--num_processes` and `--process_id`, or `--coordinator_address=auto` (JAX's cluster detection:
Cloud TPU, Slurm, Open MPI, Kubernetes). The join is bounded by `--distributed_timeout_s`, and
each way it can fail is one line, where JAX's runtime would abort with a stack trace.
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import jax

from jaxnn.errors import ConfigError

AUTO = "auto"
# Seconds JAX's join deadline is pushed past the caller's, so a watchdog can report first.
ABORT_GRACE_S = 30


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def split_address(address: str) -> tuple[str, int]:
    """(host, port) of 'host:port' or '[ipv6]:port' (ConfigError: no port, or one outside
    1..65535)."""
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
    """Checks the multi-host flags (ConfigError: the first inconsistent one); returns whether
    `jax.distributed` is to be initialised (False: no coordinator address and one process)."""
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
    """Joins this process to a multi-process run (call before anything else touches JAX);
    returns whether `jax.distributed` was initialised (False for a single-process run).

    Process 0 runs the coordinator on the address's port; every other process first waits for
    it to accept connections, so an unreachable one is a clear error rather than an abort.
    `on_timeout` is called with a one-line message, from another thread, when the join has not
    completed after `timeout_s` (JAX's runtime aborts some seconds later, so the launcher can
    print it and exit 2 first); None: JAX's own timeout and abort.

    Raises:
      ConfigError: bad flags, a coordinator port that process 0 cannot listen on, or a
        coordinator that does not answer within `timeout_s`.
    """
    if not check_distributed_args(coordinator_address, num_processes, process_id, timeout_s):
        return False
    deadline = time.monotonic() + timeout_s
    waiting_for, options = _reach_coordinator(
        coordinator_address, num_processes, process_id, timeout_s, deadline
    )
    remaining_s = max(1, math.ceil(deadline - time.monotonic()))
    watchdog = None
    if on_timeout is not None:
        message = f"waited {timeout_s} s for {waiting_for}; raise --distributed_timeout_s if slow"
        watchdog = threading.Timer(remaining_s, on_timeout, args=(message,))
        watchdog.daemon = True
        watchdog.start()
    try:
        grace_s = 0 if watchdog is None else ABORT_GRACE_S
        jax.distributed.initialize(initialization_timeout=remaining_s + grace_s, **options)
    except (RuntimeError, ValueError) as error:
        raise _join_failed(error, auto=coordinator_address == AUTO) from error
    finally:
        if watchdog is not None:
            watchdog.cancel()
    return True


def _reach_coordinator(
    coordinator_address: str, num_processes: int, process_id: int, timeout_s: int, deadline: float
) -> tuple[str, dict[str, Any]]:
    """Readies this process's side of the join (process 0 checks it can listen on the port,
    the others wait for the coordinator): (what the join waits for, in words; the arguments
    of `jax.distributed.initialize`)."""
    if coordinator_address == AUTO:
        return "the cluster's coordinator (--coordinator_address=auto)", {}
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
    options = dict(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    return waiting_for, options


def _join_failed(error: Exception, *, auto: bool) -> ConfigError:
    """The one line of a failed `jax.distributed.initialize` (with a hint for 'auto')."""
    detail = " ".join(str(error).split())
    hint = (
        " (--coordinator_address=auto found no Cloud TPU, Slurm, Open MPI or Kubernetes "
        "cluster; give --coordinator_address=HOST:PORT, --num_processes and --process_id)"
        if auto
        else ""
    )
    return ConfigError(f"jax.distributed.initialize failed: {detail}{hint}")


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
