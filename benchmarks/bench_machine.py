"""The machine a benchmark runs on: its matmul rates, description and thread limits.

Imported after `jaxnn.parallel.cpu_devices.split_host_into_devices` (it imports JAX).
"""

from __future__ import annotations

import contextlib
import os
import platform
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

MATMUL_SIZE = 1024


def best_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """The fastest of `repeats` timed calls, after one untimed call (which compiles for jax)."""
    fn()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def matmul_gflops(repeats: int, *, with_torch: bool) -> dict[str, float]:
    """Dense float32 1024x1024 @ 1024x1024 rates in GFLOP/s: jax (jit), numpy, torch."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE), np.float32) for _ in range(2))
    gflop = 2 * MATMUL_SIZE**3 / 1e9
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    matmul = jax.jit(jnp.matmul)
    rates = {
        "jax": gflop / best_seconds(lambda: matmul(ja, jb).block_until_ready(), repeats),
        "numpy": gflop / best_seconds(lambda: a @ b, repeats),
    }
    if with_torch:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        rates["torch"] = gflop / best_seconds(lambda: ta @ tb, repeats)
    return rates


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(with_torch: bool) -> dict[str, Any]:
    """CPU model, cores, load and library versions of this run."""
    import sklearn

    info = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "torch": None,
        "torch_threads": None,
        "load_average_at_start": list(os.getloadavg()),
    }
    if with_torch:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
    return info


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def thread_limit(threads: int, *, with_torch: bool) -> Iterator[None]:
    """Limits BLAS and OpenMP pools (threadpoolctl) and torch's intra-op threads to `threads`."""
    from threadpoolctl import threadpool_limits

    if not with_torch:
        with threadpool_limits(limits=threads):
            yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield
    finally:
        torch.set_num_threads(before)
