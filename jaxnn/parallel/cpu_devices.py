"""One XLA CPU device per core, arranged before JAX starts (the launcher and benchmarks call it).

XLA runs a jitted program of small matmuls on one CPU device with little intra-op parallelism,
so a vmapped ensemble on the default single CPU device keeps one core busy. Splitting the host
into one device per core lets the member axis be sharded over the cores (`jaxnn.parallel.sharding`), each
core training its share of the members. On a GPU or TPU host the accelerator stays JAX's
default backend, and the extra host devices are unused.

This module imports nothing from JAX: it must run before JAX reads XLA_FLAGS.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

FLAG = "--xla_force_host_platform_device_count"


def split_host_into_devices(
    environ: MutableMapping[str, str], num_devices: int | None = None
) -> int | None:
    """Adds `--xla_force_host_platform_device_count` to XLA_FLAGS unless it is already there.

    Args:
      environ: the environment to change (os.environ in the launcher).
      num_devices: devices to split the host into; default: the cores this process may use.

    Returns:
      The device count set, or None when XLA_FLAGS already named one or JAX already started.
    """
    flags = environ.get("XLA_FLAGS", "")
    if FLAG in flags or "jax" in sys.modules:
        return None
    count = num_devices or len(os.sched_getaffinity(0))
    environ["XLA_FLAGS"] = f"{flags} {FLAG}={count}".strip()
    return count
