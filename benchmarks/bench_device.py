"""The GPU mode of restarts.py: how the ensemble's cost per member falls as K grows on one chip.

For each K (default 1, 32, 256, 1024, 4096) the benchmark recipe's ensemble trains 6000 steps per
member on JAX's default device (a GPU when jax[cuda12] is installed; the CPU otherwise, which
is what the smoke test runs): wall time after compilation, member-steps per second, seconds per
member, peak device memory, and achieved FLOP/s against the chip's measured float32 matmul
rate (and its nominal float32 peak when the card is one we know).

Peak memory: the device allocator's `peak_bytes_in_use` where the backend reports it (GPU, TPU;
K runs in increasing order, so each K's peak is the largest so far), and always XLA's own
account of the chunk program (arguments + outputs + temporaries - aliased).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from bench_machine import best_seconds
from bench_records import Recipe, log

from jaxnn import data as data_lib
from jaxnn.core import ensemble

DEVICE_MEMBERS = (1, 32, 256, 1024, 4096)
SMOKE_MEMBERS = (1, 4)
DEVICE_STEPS = 6000
GPU_MATMUL_SIZE = 8192
CPU_MATMUL_SIZE = 1024
# Nominal dense float32 (non-tensor-core) peaks, FLOP/s, by a substring of device_kind.
NOMINAL_FP32_PEAK = {"H200": 67e12, "H100": 67e12, "A100": 19.5e12, "L4": 30.3e12}


@dataclasses.dataclass
class DeviceRun:
    members: int
    steps: int
    train_s: float
    compile_s: float
    program_bytes: int  # XLA's memory account of the chunk program
    peak_bytes: int | None  # the allocator's peak so far, where the backend reports it
    test_accuracy: float

    @property
    def member_steps_per_s(self) -> float:
        return self.members * self.steps / self.train_s

    @property
    def per_member_s(self) -> float:
        return self.train_s / self.members


def device_matmul_rate(repeats: int) -> tuple[int, float]:
    """(size, FLOP/s) of a jitted float32 size x size matmul on the default device."""
    size = GPU_MATMUL_SIZE if jax.default_backend() != "cpu" else CPU_MATMUL_SIZE
    a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    seconds = best_seconds(lambda: matmul(a, b).block_until_ready(), repeats)
    return size, 2 * size**3 / seconds


def nominal_peak(device_kind: str) -> float | None:
    for name, peak in NOMINAL_FP32_PEAK.items():
        if name in device_kind:
            return peak
    return None


def allocator_peak() -> int | None:
    stats = jax.local_devices()[0].memory_stats()
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def run_device_scaling(
    make_config: Any,
    accuracy: Any,
    data: data_lib.Dataset,
    *,
    members: tuple[int, ...],
    steps: int,
) -> list[DeviceRun]:
    """The ensemble for each K, in increasing order, `steps` steps per member."""
    runs = []
    for k in sorted(members):
        config = make_config(steps=steps, members=k)
        result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(config.seed))
        memory = result.program_bytes or 0
        run = DeviceRun(
            members=k,
            steps=steps,
            train_s=result.train_s,
            compile_s=result.compile_s,
            program_bytes=memory,
            peak_bytes=allocator_peak(),
            test_accuracy=accuracy(result.state),
        )
        log(
            f"K={k}: {run.train_s:.2f} s for {steps} steps, {run.member_steps_per_s:,.0f} "
            f"member-steps/s, program {memory / 2**20:.1f} MiB"
        )
        runs.append(run)
    return runs


def device_report(recipe: Recipe, runs: list[DeviceRun], repeats: int) -> dict[str, Any]:
    """Prints the K table and returns its JSON."""
    device = jax.local_devices()[0]
    size, rate = device_matmul_rate(repeats)
    peak = nominal_peak(device.device_kind)
    rows = []
    print(
        f"\nDevice mode on {device.platform} ({device.device_kind}): MLP "
        f"{'-'.join(map(str, recipe.layer_sizes))}, batch {recipe.batch_size}, "
        f"{runs[0].steps} steps per member; float32 {size}x{size} matmul {rate / 1e12:.2f} TFLOP/s"
        + (f", nominal float32 peak {peak / 1e12:.1f} TFLOP/s" if peak else "")
    )
    header = (
        f"{'K':>5} {'train s':>9} {'member-steps/s':>15} {'s/member':>10} "
        f"{'program MiB':>12} {'peak MiB':>9} {'TFLOP/s':>8} {'of matmul':>10}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        flops = recipe.flops_per_member_step * run.member_steps_per_s
        peak_mib = "-" if run.peak_bytes is None else f"{run.peak_bytes / 2**20:.0f}"
        print(
            f"{run.members:>5d} {run.train_s:>9.2f} {run.member_steps_per_s:>15,.0f} "
            f"{run.per_member_s:>10.4f} {run.program_bytes / 2**20:>12.1f} {peak_mib:>9} "
            f"{flops / 1e12:>8.3f} {100 * flops / rate:>9.1f}%"
        )
        rows.append(
            {
                **dataclasses.asdict(run),
                "member_steps_per_s": run.member_steps_per_s,
                "per_member_s": run.per_member_s,
                "flops_per_s": flops,
                "fraction_of_matmul": flops / rate,
                "fraction_of_nominal_peak": flops / peak if peak else None,
            }
        )
    first, last = runs[0], runs[-1]
    drop = first.per_member_s / last.per_member_s
    print(
        f"per-member cost falls {drop:.1f}x from K={first.members} to K={last.members} "
        f"(K={last.members}: {last.train_s:.1f} s of training for {last.steps} steps)"
    )
    return {
        "platform": device.platform,
        "device_kind": device.device_kind,
        "matmul_size": size,
        "matmul_flops_per_s": rate,
        "nominal_fp32_peak": peak,
        "runs": rows,
        "per_member_cost_drop": drop,
    }
