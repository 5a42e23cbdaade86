"""Batch size: from 1 example to the full training split, at equal epochs and at equal steps.

Command:
    python experiments/studies/batch_size.py --workdir=runs/batch_size

Finding it reproduces: at equal epochs, mid-sized batches win: many cheap steps beat few
exact ones (full-batch gradient descent makes the least progress per epoch), while batch 1
at the same learning rate is too noisy and slow in wall time; at equal steps, larger batches
reach a lower loss per step (less gradient noise) with diminishing returns, at a cost in
examples and wall time. Measured (MLP 100-100, SGD lr 0.05, 3600 training examples): after
10 epochs the final validation loss is 1.92 / 1.23 / 1.55 / 2.30 for batch 1 / 10 / 100 /
3600; after 1000 steps it is 2.30 / 1.36 / 1.29 / 1.29, the full batch taking 34 s of
training against 0.4-1 s.

Its base config is experiments/batch_size.py (whose launch.py sweep covers the equal-epochs
regime over batch 1, 10 and 100). The batch size is structural: one compiled program per
size, each vmapping its random starts. `--smoke` runs a tiny version in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
from experiments import batch_size
from experiments.studies import cli, eval_history
from jaxnn.config.sweep import with_values
from jaxnn.core import ensemble
from jaxnn.reporting import study_report

BATCH_SIZES = (1, 10, 100, 0)  # 0 = the full training split
STEPS = 1000


def run(workdir: Path, *, smoke: bool = False, data_dir: str = "") -> dict[str, Any]:
    config, data = cli.study_data(batch_size.get_config, smoke=smoke, data_dir=data_dir)
    key = jax.random.PRNGKey(config.seed)
    num_train = data.num_train
    sizes = [num_train if b == 0 else b for b in (BATCH_SIZES if not smoke else (1, 0))]
    epochs = int(config.training.epochs)
    equal_steps = 20 if smoke else STEPS
    regimes = {
        "equal epochs": lambda b: {
            "training.epochs": epochs,
            "training.steps": 0,
            "training.eval_every": max(1, -(-num_train // b)),
        },
        "equal steps": lambda b: {
            "training.epochs": 0,
            "training.steps": equal_steps,
            "training.eval_every": max(1, equal_steps // 10),
        },
    }
    curves: dict[str, dict[int, dict[str, np.ndarray]]] = {}
    rows, numbers = [], {"num_train": num_train, "epochs": epochs, "steps": equal_steps, "runs": {}}
    for regime, fields in regimes.items():
        curves[regime] = {}
        for size in sizes:
            run_config = with_values(
                config, {"training.batch_size": size, "restarts.sweep": "", **fields(size)}
            )
            result = ensemble.fit_ensemble(run_config, data, key)
            steps, val = eval_history.history_array(result.history, "val_loss")
            wall = result.train_s * np.arange(1, len(steps) + 1) / len(steps)
            val_mean = np.nanmean(val, axis=1)
            curves[regime][size] = {
                "steps": steps,
                "epochs": steps * size / num_train,
                "wall": wall,
                "val": val_mean,
            }
            entry = {
                "steps": int(steps[-1]),
                "epochs": float(steps[-1] * size / num_train),
                "train_s": result.train_s,
                "final_val_loss": float(val_mean[-1]),
            }
            numbers["runs"][f"{regime}, batch {size}"] = entry
            rows.append([regime, size, *entry.values()])
    plots = []
    for regime, by_size in curves.items():
        for axis, label in (
            ("steps", "training step"),
            ("epochs", "epoch"),
            ("wall", "training wall time (s)"),
        ):
            plots.append(
                study_report.lines(
                    workdir / "plots" / f"{regime.replace(' ', '_')}_vs_{axis}.png",
                    {f"batch {s}": (c[axis], c["val"]) for s, c in by_size.items()},
                    xlabel=label,
                    ylabel="validation loss",
                    title=f"Batch size, {regime}",
                    logx=axis != "epochs",
                    logy=True,
                )
            )
    study_report.write_report(
        workdir,
        "Batch size",
        [
            f"MNIST-1D ({num_train} training examples), MLP {tuple(config.model.hidden)}, plain "
            f"SGD lr {config.optimizer.learning_rate}; equal epochs = {epochs} epochs, equal "
            f"steps = {equal_steps} steps; {config.restarts.num} starts each (means). Wall time "
            "is the measured training time of the whole vmapped run, spread evenly over its "
            "evaluations, on this machine's CPU.",
        ],
        [("Runs", ["regime", "batch size", "steps", "epochs", "train s", "final val loss"], rows)],
        plots,
        numbers,
    )
    return numbers


if __name__ == "__main__":
    cli.main(__doc__, run)
