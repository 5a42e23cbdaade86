"""Momentum: plain SGD vs momentum 0.5 / 0.9 / 0.99 vs Nesterov across a learning-rate grid.

Command:
    python experiments/studies/momentum.py --workdir=runs/momentum   (a few minutes)

Finding it reproduces: at the same learning rate, momentum 0.9 reaches plain SGD's final
validation loss in at most half of SGD's steps (heavy-ball momentum makes the effective step
about lr / (1 - momentum)). Measured (MLP 100-100, 3000 steps, 2 starts): at every rate of
the grid 0.003-0.1, momentum 0.9 is at SGD's final validation loss by step 400 (13% of the
steps); past that it overfits at rates >= 0.01, and momentum 0.99 oscillates.

Its base config is experiments/momentum.py. One vmapped program per optimiser: its members
are the learning rates (x momenta) x random starts. `--smoke` runs a tiny version in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
from experiments import momentum
from experiments.studies import cli, eval_history
from jaxnn import front_end
from jaxnn.config.sweep import with_values
from jaxnn.core import ensemble
from jaxnn.reporting import study_report


def _optimisers(config: ml_collections.ConfigDict) -> dict[str, ml_collections.ConfigDict]:
    """label -> config of one vmapped program (momentum only swept where it means something)."""
    rates = config.restarts.sweep.split(";")[1].strip()
    momenta = config.restarts.sweep.split(";")[2].strip()
    return {
        "sgd": with_values(config, {"optimizer.name": "sgd", "restarts.sweep": rates}),
        "momentum": with_values(
            config, {"optimizer.name": "momentum", "restarts.sweep": f"{rates}; {momenta}"}
        ),
        "nesterov": with_values(
            config,
            {"optimizer.name": "nesterov", "optimizer.momentum": 0.9, "restarts.sweep": rates},
        ),
    }


def run(workdir: Path, *, smoke: bool = False, data_dir: str = "") -> dict[str, Any]:
    config, data = cli.study_data(momentum.get_config, smoke=smoke, data_dir=data_dir)
    key = jax.random.PRNGKey(config.seed)
    curves: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    for name, opt_config in _optimisers(config).items():
        result = ensemble.fit_ensemble(opt_config, data, key)
        spec = front_end.resolve(opt_config)
        steps, val = eval_history.history_array(result.history, "val_loss")
        groups: dict[tuple[str, float], list[int]] = {}
        for member in result.members:
            hparams = member.hparams(spec)
            label = name if name == "sgd" else f"{name} {hparams['momentum']:g}"
            groups.setdefault((label, round(hparams["learning_rate"], 6)), []).append(member.index)
        for group, indices in groups.items():
            curves[group] = (steps, np.nanmean(val[:, indices], axis=1))

    rates = sorted({rate for _, rate in curves})
    labels = list(dict.fromkeys(label for label, _ in curves))
    total = float(config.training.steps)
    rows, per_rate = [], {}
    for rate in rates:
        _, sgd_val = curves[("sgd", rate)]
        target = float(sgd_val[-1])
        row: list[Any] = [rate, target]
        reach = {}
        for label in labels[1:]:
            steps, val = curves[(label, rate)]
            reach[label] = eval_history.first_step_reaching(steps, val, target)
            row.append(float(val[-1]))
        m09 = reach.get("momentum 0.9")
        row.append(None if m09 is None else m09 / total)
        rows.append(row)
        per_rate[str(rate)] = {
            "sgd_final_val_loss": target,
            "final_val_loss": {label: float(curves[(label, rate)][1][-1]) for label in labels},
            "steps_to_sgd_final": reach,
            "momentum_0.9_fraction_of_sgd_steps": None if m09 is None else m09 / total,
        }
    numbers = {"steps": total, "learning_rates": per_rate}
    stable = [
        r
        for r in rates
        if np.isfinite(per_rate[str(r)]["sgd_final_val_loss"])
        and per_rate[str(r)]["momentum_0.9_fraction_of_sgd_steps"] is not None
    ]
    headline = 0.01 if 0.01 in stable else (stable[0] if stable else None)
    numbers["headline_learning_rate"] = headline
    numbers["headline_fraction"] = (
        None if headline is None else per_rate[str(headline)]["momentum_0.9_fraction_of_sgd_steps"]
    )

    plots = []
    for rate in rates:
        plots.append(
            study_report.lines(
                workdir / "plots" / f"val_loss_lr{rate:g}.png",
                {label: curves[(label, rate)] for label in labels},
                xlabel="training step",
                ylabel="validation loss (mean over starts)",
                title=f"Validation loss at learning rate {rate:g}",
                logy=True,
            )
        )
    plots.append(
        study_report.lines(
            workdir / "plots" / "final_val_loss_vs_lr.png",
            {
                label: (np.array(rates), np.array([curves[(label, r)][1][-1] for r in rates]))
                for label in labels
            },
            xlabel="learning rate",
            ylabel="final validation loss",
            title="Final validation loss across the learning-rate grid",
            logx=True,
            logy=True,
        )
    )
    fraction = numbers["headline_fraction"]
    study_report.write_report(
        workdir,
        "Momentum",
        [
            f"MNIST-1D, MLP {tuple(config.model.hidden)}, batch {config.training.batch_size}, "
            f"{int(total)} steps, {config.restarts.num} random starts per setting (curves are "
            "their mean).",
            f"At learning rate {headline}, momentum 0.9 reaches plain SGD's final validation "
            f"loss after {_pct(fraction)} of SGD's steps.",
        ],
        [
            (
                "Final validation loss by learning rate",
                ["learning rate", "sgd", *labels[1:], "momentum 0.9 steps to SGD final / steps"],
                rows,
            )
        ],
        plots,
        numbers,
    )
    return numbers


def _pct(value: float | None) -> str:
    return "never" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    cli.main(__doc__, run)
