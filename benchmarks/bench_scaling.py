"""The scaling curve of restarts.py: per-member cost against K, for jaxnn and its peers.

For each K of `Settings.scaling_members` (full: 1, 8, 32, 128, 512, 1024, 4096) jaxnn's ensemble
trains `Settings.scaling_steps` steps per member (the second of two runs, as the main table);
torch.func's vmapped ensemble and scikit-learn's sequential restarts train the same recipe for
each K in increasing order until their next K would need more than `Settings.scaling_budget_s`
(predicted from the last K's time, linear in K), so the curve shows each at the K's it reaches.
The JSON records every point with jaxnn's memory account per member (`jaxnn.core.memory`) and
XLA's account of the chunk program; the PNG plots seconds per member (per 1000 steps) against K,
log-log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_records import Settings, Timing, log

PER_STEPS = 1000  # the plot's and the table's unit: seconds per member for 1000 steps


def reachable(
    run: Callable[[int], Timing], ladder: tuple[int, ...], budget_s: float
) -> list[Timing]:
    """`run(K)` for each K of the ladder, stopping before a K predicted to take over the budget."""
    timings: list[Timing] = []
    for members in ladder:
        if timings:
            last = timings[-1]
            predicted = last.train_s * members / last.members
            if predicted > budget_s:
                log(
                    f"  K={members} would take about {predicted:.0f} s (budget {budget_s:.0f} s): stop"
                )
                break
        timing = run(members)
        log(f"  {timing.method} K={members}: {per_thousand(timing):.4f} s/member/1000 steps")
        timings.append(timing)
    return timings


def per_thousand(timing: Timing) -> float:
    return timing.train_s / timing.members * PER_STEPS / timing.steps


def baseline_settings(settings: Settings, members: int) -> Settings:
    """The settings of one baseline point: K members (timed all), the scaling steps."""
    return dataclasses.replace(
        settings, steps=settings.scaling_steps, members=members, baseline_members=members
    )


def curve_json(curves: dict[str, list[Timing]]) -> dict[str, Any]:
    """Every point of every method, with its seconds per member per 1000 steps."""
    return {
        name: [{**t.to_json(), "per_member_s_per_1000_steps": per_thousand(t)} for t in timings]
        for name, timings in curves.items()
    }


def cost_ratios(jaxnn: list[Timing], reference: int = 32) -> dict[str, float]:
    """Per-member cost of each K over that of K=`reference` (jaxnn's flat-cost figures)."""
    by_k = {t.members: per_thousand(t) for t in jaxnn}
    if reference not in by_k:
        return {}
    return {f"K={k}/K={reference}": cost / by_k[reference] for k, cost in by_k.items()}


def print_curve(curves: dict[str, list[Timing]], steps: int) -> None:
    ladder = sorted({t.members for timings in curves.values() for t in timings})
    names = list(curves)
    print(
        f"\nPer-member cost against K: seconds per member per {PER_STEPS} steps ({steps} trained)"
    )
    header = f"{'K':>6} " + " ".join(f"{name:>22}" for name in names)
    print(header)
    print("-" * len(header))
    for k in ladder:
        cells = []
        for name in names:
            point = next((t for t in curves[name] if t.members == k), None)
            cells.append(f"{per_thousand(point):>22.4f}" if point else f"{'-':>22}")
        print(f"{k:>6d} " + " ".join(cells))
    ratios = cost_ratios(curves.get("jaxnn", []))
    if ratios:
        print(
            "jaxnn per-member cost against K=32: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        )


def plot_curve(curves: dict[str, list[Timing]], path: Path, title: str) -> None:
    """Seconds per member per 1000 steps against K, log-log, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.4, 4.4))
    for name, timings in curves.items():
        if timings:
            ks = [t.members for t in timings]
            axes.plot(ks, [per_thousand(t) for t in timings], marker="o", label=name)
    axes.set_xscale("log", base=2)
    axes.set_yscale("log")
    axes.set_xlabel("members trained together, K")
    axes.set_ylabel(f"seconds per member per {PER_STEPS} steps")
    axes.set_title(title, fontsize=9)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
