"""One XLA CPU device per core, arranged before JAX starts its backends.

XLA's single default CPU device keeps about one core busy; one device per core lets the member
axis be sharded over the cores (`jaxnn.parallel.sharding`). `import jaxnn` splits the host
(`split_on_import`) unless `JAXNN_SPLIT_CPU=0`, which works until JAX's backends start (XLA reads
XLA_FLAGS then); after that `hint_all_cores` says how to get every core. This module imports
nothing from JAX at import time."""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping
from typing import TextIO

FLAG = "--xla_force_host_platform_device_count"
SWITCH = "JAXNN_SPLIT_CPU"
_OFF = ("0", "false", "off", "no")
_hinted = False


def split_host_into_devices(
    environ: MutableMapping[str, str], num_devices: int | None = None
) -> int | None:
    """Adds `--xla_force_host_platform_device_count` to XLA_FLAGS in `environ` (default count:
    the cores this process may use); returns the count set, or None when XLA_FLAGS already
    named one or JAX's backends have already started."""
    flags = environ.get("XLA_FLAGS", "")
    bridge = sys.modules.get("jax._src.xla_bridge")  # XLA reads XLA_FLAGS when it starts
    if FLAG in flags or (bridge is not None and bridge.backends_are_initialized()):
        return None
    count = num_devices or len(os.sched_getaffinity(0))
    environ["XLA_FLAGS"] = f"{flags} {FLAG}={count}".strip()
    return count


def split_disabled(environ: MutableMapping[str, str]) -> bool:
    """Whether the user turned the split of `import jaxnn` off (`JAXNN_SPLIT_CPU=0`)."""
    return environ.get(SWITCH, "1").strip().lower() in _OFF


def split_on_import(environ: MutableMapping[str, str]) -> int | None:
    """What `import jaxnn` does: the launcher's split, unless `JAXNN_SPLIT_CPU=0`."""
    return None if split_disabled(environ) else split_host_into_devices(environ)


def unused_cores_message(environ: MutableMapping[str, str]) -> str | None:
    """One line on how to train on every core, when this process's JAX has one CPU device on a
    host with several cores that the user did not choose (None otherwise). Call after JAX
    started."""
    import jax

    cores = len(os.sched_getaffinity(0))
    if (
        jax.default_backend() != "cpu"
        or cores < 2
        or jax.device_count() > 1
        or split_disabled(environ)
        or FLAG in environ.get("XLA_FLAGS", "")
    ):
        return None
    return (
        f"jaxnn: JAX started before jaxnn was imported, so this run uses one CPU device of "
        f"the {cores} cores; import jaxnn before using JAX (or set XLA_FLAGS={FLAG}={cores} "
        f"before JAX starts) to train on every core, or JAXNN_SPLIT_CPU=0 to keep one device"
    )


def hint_all_cores(environ: MutableMapping[str, str], out: TextIO = sys.stderr) -> None:
    """Prints `unused_cores_message` once per process (the first run that could use it)."""
    global _hinted
    if _hinted:
        return
    message = unused_cores_message(environ)
    if message is not None:
        _hinted = True
        print(message, file=out, flush=True)
