"""The ranking of a run's members as text and Markdown tables, and report.md."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def _named(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{k} {_format(v)}" for k, v in values.items())


def _hparam_format(value: Any) -> str:
    # Four significant digits: a drawn learning rate of 0.00207 must not read 0.0021.
    return f"{value:.4g}" if isinstance(value, float) else _format(value)


def _hparams_text(hparams: Mapping[str, Any]) -> str:
    return " ".join(f"{k.split('.')[-1]}={_hparam_format(v)}" for k, v in hparams.items()) or "-"


def ranking_rows(summary: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the ranking table: members from best to worst by the selection metric."""
    metric = "accuracy" if summary["dataset"]["task"] == "classification" else "r2"
    select_by = summary["selected_by"]
    sign = -1.0 if summary["selection_greater_is_better"] else 1.0
    extra = [] if select_by in ("val_loss", f"val_{metric}") else [select_by]

    def key(member: Mapping[str, Any]) -> tuple[int, float]:
        value = member.get(select_by)
        if value is None or member["diverged"] or member.get("exploded", False):
            return (1, math.inf)
        return (0, sign * float(value))

    # A member marked exploded (jaxnn.core.explosion) gets its own column when there is one.
    exploded = ["exploded"] if any(m.get("exploded") for m in summary["members"]) else []

    header = ["rank", "member", "seed", "hyperparameters", "val loss", f"val {metric}"]
    header += [f"test {metric}", *(name.replace("_", " ") for name in extra), "diverged", *exploded]
    rows = []
    for rank, member in enumerate(sorted(summary["members"], key=key), start=1):
        marker = " *" if member["index"] == summary["best_member"] else ""
        hparams = _hparams_text({**member.get("variant", {}), **member["hparams"]})
        values = [member["val_loss"], member.get(f"val_{metric}"), member.get(f"test_{metric}")]
        values += [*(member.get(name) for name in extra), member["diverged"]]
        values += [member.get(name, False) for name in exploded]
        first = [f"{rank}{marker}", str(member["index"]), str(member["seed"]), hparams]
        rows.append(first + [_format(value) for value in values])
    return header, rows


def text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned plain-text table."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def ranking_table(summary: Mapping[str, Any], *, limit: int | None = None) -> str:
    """The ranking table the launcher prints at the end of a run (best member marked *)."""
    header, rows = ranking_rows(summary)
    table = text_table(header, rows[:limit])
    if limit is not None and len(rows) > limit:
        table += f"\n... {len(rows) - limit} more members in report.md and summary.json"
    return table


def throughput_text(timing: Mapping[str, Any]) -> str:
    """The run's timing in words, each figure saying what it counts (summary.json's `timing`)."""
    return (
        f"Compile {timing['compile_s']:.1f} s. Training {timing['wall_s']:.1f} s wall time "
        f"(metrics and checkpoints between chunks included; {timing['train_s']:.1f} s in the "
        f"compiled chunks): {timing['member_steps']} member-steps (steps run x members), "
        f"{timing['member_steps_per_s']:.0f} member-steps/s of wall time, "
        f"{timing['device_member_steps_per_s']:.0f} in the chunks alone."
    )


def ensemble_members_text(summary: Mapping[str, Any]) -> str:
    """Which members the ensemble averages (`jaxnn.reporting.summary.in_ensemble`), in words."""
    if "num_pruned" not in summary:
        return "the members that neither diverged nor exploded"
    return (
        "the members that neither diverged, exploded nor were pruned at a rung "
        f"({summary['num_pruned']} pruned member(s) left out)"
    )


def schedule_text(summary: Mapping[str, Any]) -> str | None:
    """A member schedule (summary.json's `schedule` blocks) in one line: its kind, its rungs
    and the members that trained in each, its member-steps; PBT: its interval and copies.
    None for a run without one."""
    block = summary.get("schedule")
    if not block:
        return None
    members = [m["schedule"] for m in summary["members"] if "schedule" in m]
    if block["kind"] == "pbt":
        copies = sum(len(m["lineage"]) for m in members)
        return (
            f"Schedule: pbt every {block['interval']} steps, the bottom {block['fraction']:.0%} "
            f"of {len(members)} members copy a top member and scale its values by "
            f"1 -/+ {block['perturb']:g} (redrawn with probability {block['resample']:g}): "
            f"{copies} copies."
        )
    ends = block["rung_ends"]
    trained = [sum(m["rung"] >= rung for m in members) for rung in range(len(ends))]
    unpruned = len(members) * ends[-1]
    return (
        f"Schedule: {block['kind']} with eta {block['eta']}, rungs ending at steps "
        f"{', '.join(map(str, ends))}, members per rung {' -> '.join(map(str, trained))}: "
        f"{block['member_steps']} member-steps, {block['member_steps'] / unpruned:.0%} of the "
        f"{unpruned} of every member trained to step {ends[-1]}."
    )


def report_markdown(summary: Mapping[str, Any], plots: Sequence[str]) -> str:
    """report.md: the tables of summary.json in words and numbers, linking the plots."""
    data = summary["dataset"]
    lines = [
        f"# jaxnn run on {data['name']}",
        "",
        f"{data['task'].capitalize()}: {data['num_train']} train / {data['num_val']} validation / "
        f"{data['num_test']} test examples. {len(summary['members'])} members, selected by "
        f"{summary['selected_by']} (never by test).",
        "",
    ]
    schedule = schedule_text(summary)
    if schedule:
        lines += [schedule, ""]
    if summary["best_member"] is None:
        lines += ["**Every member diverged or exploded**: there is no selected member.", ""]
    else:
        lines += [
            f"Selected member {summary['best_member']}: {_named(summary['best'])}.",
            f"Ensemble average of {ensemble_members_text(summary)}: {_named(summary['ensemble'])}.",
            "",
        ]
    for name, metrics in (summary.get("baselines") or {}).items():
        lines.append(f"Baseline {name}: {_named(metrics)}.")
    stats = summary.get("restart_stats") or {}
    if stats.get("num_finite"):
        curve = stats["expected_best_of_k"]
        lines += [
            "",
            "## Restarts",
            "",
            f"Validation loss quantiles: {_named(stats['val_loss_quantiles'])}. Fraction within "
            f"{stats['tolerance']:.0%} of the best: "
            f"{stats['fraction_within_tolerance']:.2f}. Expected best of 1 start: "
            f"{_format(curve[0])}; of {len(curve)}: {_format(curve[-1])}.",
        ]
    header, rows = ranking_rows(summary)
    lines += ["", "## Ranking", "", markdown_table(header, rows), ""]
    if plots:
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots] + [""]
    if summary.get("timing"):
        lines.append(throughput_text(summary["timing"]))
    return "\n".join(lines) + "\n"
