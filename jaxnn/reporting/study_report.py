"""What a study writes into its workdir: report.md, numbers.json and its figures (matplotlib,
Agg backend) under plots/.

The studies themselves, and their command line, are under experiments/studies/.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from jaxnn.io import atomic
from jaxnn.reporting import plots
from jaxnn.reporting.tables import markdown_table

NUMBERS = "numbers.json"


def write_report(
    workdir: Path,
    title: str,
    paragraphs: Sequence[str],
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]],
    plots: Sequence[str],
    numbers: Mapping[str, Any],
) -> None:
    """report.md (paragraphs, titled tables, plot links) and numbers.json in `workdir`."""
    lines = [f"# {title}", ""]
    for paragraph in paragraphs:
        lines += [paragraph, ""]
    for caption, header, rows in tables:
        formatted = [[_cell(v) for v in row] for row in rows]
        lines += [f"## {caption}", "", markdown_table(header, formatted), ""]
    if plots:
        lines += ["## Plots", ""]
        lines += [f"![{Path(p).stem}]({Path(p).relative_to(workdir)})" for p in plots]
        lines.append("")
    atomic.write_text_atomic(workdir / "report.md", "\n".join(lines))
    atomic.write_json_atomic(workdir / NUMBERS, numbers)


def _cell(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return "diverged" if math.isnan(number) else str(number)
        return f"{number:.3g}" if abs(number) < 1e-2 or abs(number) >= 1e3 else f"{number:.4f}"
    return str(value)


def save(fig: Any, path: Path) -> str:
    """Writes `fig` to `path` (tight layout, 80 dpi), closes it and returns the path."""
    return plots.save(fig, path, dpi=80)


def lines(
    path: Path,
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logx: bool = False,
    logy: bool = False,
    styles: Mapping[str, Mapping[str, Any]] | None = None,
) -> str:
    """One figure of labelled curves: label -> (x, y)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, lw=1.5, **(styles or {}).get(label, {}))
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if len(series) > 1:
        ax.legend(fontsize=7, ncol=2 if len(series) > 6 else 1)
    return save(fig, path)


def contour(
    path: Path,
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    points: Mapping[str, tuple[float, float]],
    *,
    title: str,
) -> str:
    """Filled contour of validation losses [Y, X] on a 2-D slice, with the solutions marked."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    finite = values[np.isfinite(values)]
    clipped = np.clip(values, None, np.quantile(finite, 0.95)) if finite.size else values
    filled = ax.contourf(x, y, clipped, levels=20, cmap="viridis")
    fig.colorbar(filled, ax=ax, label="validation loss")
    for name, (px, py) in points.items():
        ax.plot(px, py, "w*", ms=12, mec="black")
        ax.annotate(name, (px, py), textcoords="offset points", xytext=(6, 6), color="white")
    ax.set(xlabel="direction 1 (plane units)", ylabel="direction 2 (plane units)", title=title)
    return save(fig, path)


def histogram(path: Path, values: np.ndarray, *, xlabel: str, title: str) -> str:
    """Histogram of finite values."""
    finite = np.asarray(values)[np.isfinite(values)]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.hist(finite, bins=max(5, min(30, finite.size // 2 + 1)), color="tab:blue", edgecolor="white")
    ax.set(xlabel=xlabel, ylabel="count", title=title)
    return save(fig, path)


def diagnostics_figures(
    history: Sequence[tuple[int, Mapping[str, np.ndarray | None]]], plots_dir: Path
) -> list[str]:
    """Per-layer gradient norm and update-to-weight ratio against steps (mean over members),
    and the dead/saturated fraction where it applies, from `diagnostics.Monitor.history`."""
    from jaxnn.analysis import diagnostics

    if not history:
        return []
    steps = np.array([step for step, _ in history], np.float64)
    written = []
    for kind, ylabel in (
        ("grad_norm", "gradient norm of the layer's kernel"),
        ("update_ratio", "update-to-weight ratio of the kernel"),
    ):
        layers, _ = diagnostics.layer_series(history[0][1], kind)
        # [steps, layers], each the mean over members
        means = np.array([diagnostics.layer_series(d, kind)[1].mean(axis=1) for _, d in history])
        series = {layer: (steps, means[:, i]) for i, layer in enumerate(layers)}
        written.append(
            lines(
                Path(plots_dir) / f"{kind}.png",
                series,
                xlabel="training step",
                ylabel=ylabel,
                title=f"{ylabel.capitalize()} per layer (mean over members)",
                logy=True,
            )
        )
    for kind in ("dead_fraction", "saturated_fraction"):
        fractions = [f for _, d in history if (f := d.get(kind)) is not None]
        if len(fractions) < len(history):  # not applicable to this activation
            continue
        values = np.array([f.mean() for f in fractions])
        words = kind.replace("_", " ")
        written.append(
            lines(
                Path(plots_dir) / f"{kind}.png",
                {kind: (steps, values)},
                xlabel="training step",
                ylabel=f"{words} of hidden units",
                title=f"{words.capitalize()} (validation split, mean over members)",
            )
        )
    return written
