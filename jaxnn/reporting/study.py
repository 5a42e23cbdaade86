"""What the course studies (experiments/activations.py, ...) share: their command line, their
config and data, their report.md and key-numbers JSON, and their figures (matplotlib, Agg backend).

A study is `python experiments/NAME.py --workdir=DIR [--smoke] [--data_dir=PATH]`; it writes
DIR/report.md, DIR/numbers.json and DIR/plots/*.png.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import ml_collections
import numpy as np

from jaxnn import data as data_lib
from jaxnn.io import atomic
from jaxnn.reporting.tables import markdown_table

NUMBERS = "numbers.json"


def main(
    doc: str, run: Callable[..., Mapping[str, Any]], argv: Sequence[str] | None = None
) -> Mapping[str, Any]:
    """Parses `--workdir`, `--smoke`, `--data_dir` and calls `run(workdir, smoke=, data_dir=)`."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--workdir", required=True, help="where report.md and plots/ go")
    parser.add_argument("--smoke", action="store_true", help="a seconds-long version (tests)")
    parser.add_argument(
        "--data_dir", default="", help="TFDS data_dir (default ~/tensorflow_datasets)"
    )
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    (workdir / "plots").mkdir(parents=True, exist_ok=True)
    numbers = run(workdir, smoke=args.smoke, data_dir=args.data_dir)
    print(f"wrote {workdir / 'report.md'}")
    return numbers


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
        if not np.isfinite(value):
            return "diverged" if np.isnan(value) else str(value)
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e3 else f"{value:.4f}"
    return str(value)


def save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return str(path)


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
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
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
    label: str = "validation loss",
) -> str:
    """Filled contour of values [Y, X] on a 2-D slice, with the solutions marked."""
    fig, ax = plt.subplots(figsize=(5.6, 4.6))
    finite = values[np.isfinite(values)]
    clipped = np.clip(values, None, np.quantile(finite, 0.95)) if finite.size else values
    filled = ax.contourf(x, y, clipped, levels=20, cmap="viridis")
    fig.colorbar(filled, ax=ax, label=label)
    for name, (px, py) in points.items():
        ax.plot(px, py, "w*", ms=12, mec="black")
        ax.annotate(name, (px, py), textcoords="offset points", xytext=(6, 6), color="white")
    ax.set_xlabel("direction 1 (plane units)")
    ax.set_ylabel("direction 2 (plane units)")
    ax.set_title(title)
    return save(fig, path)


def histogram(path: Path, values: np.ndarray, *, xlabel: str, title: str) -> str:
    """Histogram of finite values."""
    finite = np.asarray(values)[np.isfinite(values)]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.hist(finite, bins=max(5, min(30, finite.size // 2 + 1)), color="tab:blue", edgecolor="white")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.set_title(title)
    return save(fig, path)


def history_array(
    history: Sequence[Mapping[str, np.ndarray]], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Steps [E] and metric `name` [E, num_members] from an evaluation history."""
    steps = np.array([float(h["step"][0]) for h in history])
    return steps, np.stack([h[name] for h in history])


def first_step_reaching(steps: np.ndarray, values: np.ndarray, target: float) -> float | None:
    """The first evaluated step at which `values` <= target (None if never)."""
    hits = np.flatnonzero(np.asarray(values) <= target)
    return float(steps[hits[0]]) if hits.size else None


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
        series = {
            layer: (
                steps,
                np.array([diagnostics.layer_series(d, kind)[1][i].mean() for _, d in history]),
            )
            for i, layer in enumerate(layers)
        }
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
        if history[0][1].get(kind) is None:
            continue
        values = np.array([d[kind].mean() for _, d in history])
        written.append(
            lines(
                Path(plots_dir) / f"{kind}.png",
                {kind: (steps, values)},
                xlabel="training step",
                ylabel=kind.replace("_", " ") + " of hidden units",
                title=kind.replace("_", " ").capitalize()
                + " (validation split, mean over members)",
            )
        )
    return written


def study_data(
    get_config: Callable[[str | None], ml_collections.ConfigDict], *, smoke: bool, data_dir: str
) -> tuple[ml_collections.ConfigDict, data_lib.Dataset]:
    """A study's base config (its `smoke` variant when asked) with `data_dir`, and its data."""
    config = get_config("smoke" if smoke else None)
    config.dataset.data_dir = data_dir
    return config, data_lib.load(config.dataset)
