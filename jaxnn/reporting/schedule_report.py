"""What a member schedule (`restarts.schedule`, `jaxnn.core.schedules`) adds to a run's files:
each member's `schedule` block and a top-level `schedule` block in summary.json, and a plot
(halving: every member's validation curve ending at the rung that pruned it; PBT: each
member's learning rate, or first searched hyperparameter, against steps)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxnn.config.schedule import Schedule
from jaxnn.core import schedules
from jaxnn.core.variants import VariantRun
from jaxnn.reporting import plots


def annotate(
    summary: dict[str, Any], runs: Sequence[VariantRun], rows: Sequence[Mapping[str, Any]]
) -> None:
    """Adds the schedule's blocks to `summary` (from `summarize_runs`, in place); nothing for a
    run without one. `rows` are every decision of the run (DIR/schedule.jsonl, global indices)."""
    first = runs[0]
    schedule = schedules.run_schedule(first.spec, len(first.result.members))
    if not schedule.active:
        return
    by_index = {member["index"]: member for member in summary["members"]}
    for run in runs:
        _annotate_members(by_index, run, rows)
    summary["schedule"] = _schedule_block(schedule, first, summary["members"])
    # What this launch trained and compiled (a resumed run: since the resume), with timing.
    summary.setdefault("timing", {})["schedule"] = [
        {key: run.result.schedule[key] for key in ("rungs", "sizes_compiled")}
        for run in runs
        if run.result.schedule is not None
    ]


def _annotate_members(
    by_index: Mapping[int, dict[str, Any]], run: VariantRun, rows: Sequence[Mapping[str, Any]]
) -> None:
    """Each member of one variant gets its `schedule` block, from the decisions about it."""
    members = run.result.members
    local = [
        schedules.shift_members(row, -run.offset)
        for row in rows
        if run.offset <= row["member"] < run.offset + len(members)
    ]
    hparams: list[Mapping[str, float]] = [m.hparams(run.spec) for m in members]
    blocks = schedules.member_blocks(run.spec, run.result.program, run.result.state, hparams, local)
    for member, block in zip(members, blocks or [], strict=False):
        by_index[member.index + run.offset]["schedule"] = block


def _schedule_block(
    schedule: Schedule, first: VariantRun, members: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """summary.json's top-level `schedule` block: the schedule's settings (halving: its rung
    ends and the member steps the members trained)."""
    program = first.result.program
    block: dict[str, Any] = {"kind": schedule.kind}
    if not schedule.halving:
        return block | {
            "interval": schedule.pbt_interval or program.eval_every,
            "fraction": schedule.pbt_fraction,
            "perturb": schedule.pbt_perturb,
            "resample": schedule.pbt_resample,
        }
    plan = schedules.plan_rungs(
        schedule, len(first.result.members), program.total_steps, program.eval_every
    )
    stopped_at = sum(m["schedule"]["stopped_at"] for m in members if "schedule" in m)
    return block | {
        "eta": schedule.eta,
        "rung_ends": list(plan.ends),
        "member_steps": int(stopped_at),
    }


def write_plot(
    summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]], directory: Path
) -> str | None:
    """plots/schedule.png for a run with a schedule (None without one)."""
    block = summary.get("schedule")
    if not block:
        return None
    directory.mkdir(parents=True, exist_ok=True)
    fig, ax = plots.plt.subplots(figsize=(6.4, 4.2))
    if block["kind"] == "pbt":
        _plot_pbt(ax, summary, history)
    else:
        _plot_halving(ax, summary, history, block)
    return plots.save(fig, directory / "schedule.png")


def _plot_pbt(ax: Any, summary: Mapping[str, Any], history: Sequence[Mapping[str, Any]]) -> None:
    """Each member's learning rate (or first searched hyperparameter) against steps."""
    name = _plotted_hparam(summary)
    end = max((int(h["step"][0]) for h in history), default=0)
    for member in summary["members"]:
        entries = member.get("schedule", {}).get("hparams", [])
        if not entries:
            continue
        steps = [e["step"] for e in entries] + [end]
        values = [e[name] for e in entries] + [entries[-1][name]]
        selected = member["index"] == summary.get("best_member")
        color, lw, alpha = ("tab:red", 2, 1.0) if selected else ("tab:blue", 1, 0.5)
        ax.step(steps, values, where="post", lw=lw, color=color, alpha=alpha)
    ax.set_yscale("log")
    ax.set(xlabel="step", ylabel=name, title=f"PBT: each member's {name} (selected in red)")


def _plot_halving(
    ax: Any,
    summary: Mapping[str, Any],
    history: Sequence[Mapping[str, Any]],
    block: Mapping[str, Any],
) -> None:
    """Every member's validation curve, ending at the rung that pruned it; the rungs dashed."""
    steps = np.array([float(h["step"][0]) for h in history])
    for j in range(len(summary["members"])):
        ax.plot(steps, np.array([h["val_loss"][j] for h in history], np.float64), lw=1, alpha=0.6)
    for end in block["rung_ends"][:-1]:
        ax.axvline(end, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss")
    ax.set_title(f"{block['kind']}: members leave at the rungs (dashed)")


def _plotted_hparam(summary: Mapping[str, Any]) -> str:
    for member in summary["members"]:
        entries = member.get("schedule", {}).get("hparams", [])
        if entries:
            names = [k for k in entries[0] if k != "step"]
            return "learning_rate" if "learning_rate" in names else names[0]
    return "learning_rate"
