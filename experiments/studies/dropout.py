"""Dropout: rates 0 to 0.7 on a wide MLP trained on a small training set.

Command:
    python experiments/studies/dropout.py --workdir=runs/dropout

Finding it reproduces: on 500 training examples the wide network without dropout drives the
training loss to about 0.002 while its validation loss climbs from about 2 to above 3
(overfitting); the higher the dropout rate, up to 0.7, the lower the final validation loss
and the closer the train and validation curves stay (at 0.7 the final validation loss is
about half that of no dropout).

Its base config is experiments/dropout.py: one vmapped program whose members are the dropout
rates x random starts. `--smoke` runs a tiny version in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
from experiments import dropout
from experiments.studies import cli, eval_history
from jaxnn.core import ensemble
from jaxnn.reporting import study_report


def run(workdir: Path, *, smoke: bool = False, data_dir: str = "") -> dict[str, Any]:
    config, data = cli.study_data(dropout.get_config, smoke=smoke, data_dir=data_dir)
    result = ensemble.fit_ensemble(config, data, jax.random.PRNGKey(config.seed))
    steps, val = eval_history.history_array(result.history, "val_loss")
    _, trn = eval_history.history_array(result.history, "train_loss")
    best_val, _ = ensemble.evaluate_members(result.state, result.program, data.x_val, data.y_val)
    by_rate: dict[float, list[int]] = {}
    for member in result.members:
        by_rate.setdefault(member.swept["model.dropout"], []).append(member.index)
    rows, series, numbers = [], {}, {"num_train": data.num_train, "rates": {}}
    for rate, idx in by_rate.items():
        train_curve = np.nanmean(trn[:, idx], axis=1)
        val_curve = np.nanmean(val[:, idx], axis=1)
        series[f"p={rate:g} train"] = (steps, train_curve)
        series[f"p={rate:g} validation"] = (steps, val_curve)
        entry = {
            "final_train_loss": float(train_curve[-1]),
            "final_val_loss": float(val_curve[-1]),
            "min_val_loss": float(val_curve.min()),
            "best_val_accuracy": float(np.mean(best_val["accuracy"][idx])),
        }
        numbers["rates"][str(rate)] = entry
        rows.append([rate, *entry.values()])
    plots = [
        study_report.lines(
            workdir / "plots" / "train_val_curves.png",
            series,
            xlabel="training step",
            ylabel="loss (cross-entropy)",
            title=f"Train and validation loss, {data.num_train} training examples",
            logy=True,
            styles={
                k: {"ls": "--" if k.endswith("train") else "-", "color": f"C{i // 2}"}
                for i, k in enumerate(series)
            },
        )
    ]
    study_report.write_report(
        workdir,
        "Dropout",
        [
            f"MNIST-1D with {data.num_train} training examples, MLP {tuple(config.model.hidden)}, "
            f"{config.training.steps} steps, {config.restarts.num} random starts per rate.",
        ],
        [
            (
                "By dropout rate (final = last evaluation)",
                [
                    "dropout",
                    "final train loss",
                    "final val loss",
                    "min val loss",
                    "best val accuracy",
                ],
                rows,
            )
        ],
        plots,
        numbers,
    )
    return numbers


if __name__ == "__main__":
    cli.main(__doc__, run)
