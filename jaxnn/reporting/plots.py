"""Plots of a run (matplotlib, Agg backend): one idea per figure, written into the workdir."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jaxnn.reporting.summary import excluded


def save(fig: Any, path: Path, *, dpi: int = 110) -> str:
    """Writes `fig` to `path` (tight layout), closes it and returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return str(path)


def validation_curves(
    history: Sequence[Mapping[str, np.ndarray]], best_member: int | None, path: Path
) -> str:
    """Every member's validation loss against training steps, the selected member highlighted."""
    steps = np.array([float(h["step"][0]) for h in history])
    val = np.stack([h["val_loss"] for h in history])  # [evals, members]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(steps, val, color="tab:blue", alpha=min(1.0, 3.0 / max(1, val.shape[1]) + 0.1), lw=1)
    if best_member is not None:
        label = f"selected (member {best_member})"
        ax.plot(steps, val[:, best_member], color="tab:red", lw=2, label=label)
        ax.legend()
    ax.set_xlabel("training step")
    ax.set_ylabel("validation loss")
    ax.set_title(f"Validation loss of {val.shape[1]} members")
    log_scale_if_wide(ax, val)
    return save(fig, path)


def final_loss_histogram(val_losses: np.ndarray, path: Path) -> str:
    """Histogram of the members' final (best) validation losses."""
    finite = val_losses[np.isfinite(val_losses)]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.hist(finite, bins=max(5, min(30, finite.size // 2 + 1)), color="tab:blue", edgecolor="white")
    ax.set_xlabel("best validation loss")
    ax.set_ylabel("members")
    ax.set_title(f"Spread of {finite.size} random starts")
    return save(fig, path)


def expected_best_of_k(curve: Sequence[float], path: Path) -> str:
    """Expected best validation loss of k random starts against k."""
    k = np.arange(1, len(curve) + 1)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(k, curve, marker="o", ms=3, color="tab:green")
    ax.set_xlabel("number of random starts k")
    ax.set_ylabel("expected best validation loss")
    ax.set_title("How many random starts pay off")
    if len(curve) > 8:
        ax.set_xscale("log", base=2)
    log_scale_if_wide(ax, np.asarray(curve))
    return save(fig, path)


def log_scale_if_wide(ax: Any, values: np.ndarray) -> None:
    """A log y axis when the positive finite values span more than a factor of 20."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    if finite.size and finite.min() > 0 and finite.max() / finite.min() > 20:
        ax.set_yscale("log")


def search_values(summary: Mapping[str, Any], path: Path) -> str:
    """A search: each member's best validation loss against each searched field's drawn value
    (one panel per field, log axis for a log-uniform range, and for losses spanning decades),
    the selected member in red. Diverged and exploded members (`jaxnn.core.explosion`) are
    crosses on the panel's top edge at their drawn value: marked, without setting the scale."""
    ranges = summary["search"]["ranges"]
    kept = [m for m in summary["members"] if not excluded(m) and np.isfinite(m["val_loss"])]
    left_out = [m for m in summary["members"] if excluded(m) or not np.isfinite(m["val_loss"])]
    best = next((m for m in kept if m["index"] == summary["best_member"]), None)
    fig, axes = plt.subplots(1, len(ranges), figsize=(4.0 * len(ranges), 3.8), squeeze=False)
    for ax, (field, spec) in zip(axes[0], ranges.items(), strict=True):
        values = np.array([m["hparams"][field] for m in kept])
        losses = np.array([m["val_loss"] for m in kept])
        ax.scatter(values, losses, s=14, color="tab:blue", alpha=0.7, label="member")
        if best is not None:
            label = f"selected (member {best['index']})"
            ax.scatter(best["hparams"][field], best["val_loss"], s=40, color="tab:red", label=label)
        log_scale_if_wide(ax, losses)
        if left_out:
            top = ax.get_ylim()[1]
            ax.scatter(
                [m["hparams"][field] for m in left_out],
                [top] * len(left_out),
                marker="x",
                s=30,
                color="tab:gray",
                clip_on=False,
                label=f"diverged or exploded ({len(left_out)}, off the scale)",
            )
            ax.set_ylim(top=top)
        # The whole range, a little wider so that draws at its ends are not cut in half.
        if spec["distribution"] == "loguniform":
            ax.set_xscale("log")
            ax.set_xlim(spec["low"] / 1.1, spec["high"] * 1.1)
        elif spec["high"] > spec["low"]:
            margin = 0.03 * (spec["high"] - spec["low"])
            ax.set_xlim(spec["low"] - margin, spec["high"] + margin)
        ax.set(xlabel=f"{field} ({spec['distribution']})", ylabel="best validation loss")
    axes[0][0].legend(fontsize="small")
    fig.suptitle(f"{summary['search']['method']} search of {len(summary['members'])} members")
    return save(fig, path)


def predictions_vs_targets(predictions: np.ndarray, targets: np.ndarray, path: Path) -> str:
    """Regression: the selected member's test predictions against the targets."""
    fig, ax = plt.subplots(figsize=(4.8, 4.8))
    p, t = np.ravel(predictions), np.ravel(targets)
    ax.scatter(t, p, s=8, alpha=0.6)
    lo, hi = float(min(t.min(), p.min())), float(max(t.max(), p.max()))
    ax.plot([lo, hi], [lo, hi], color="black", lw=1, ls="--", label="perfect")
    ax.set(xlabel="target", ylabel="prediction", title="Test predictions of the selected member")
    ax.legend()
    return save(fig, path)
