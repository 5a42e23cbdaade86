"""Learning rate: four decades from too small to diverging, and schedules side by side.

Command:
    python experiments/studies/learning_rate.py --workdir=runs/learning_rate

Finding it reproduces: the best validation loss against the learning rate falls steadily
over four decades of too-small rates (1e-4 barely moves in the budget), bottoms out near 1
for plain SGD on this MLP, and turns up above that until the largest rate diverges (members
marked diverged, not crashed). At the smaller rates a constant rate beats the decaying
schedules (which only take smaller steps); at the largest rates warm-up rescues training.
Measured (MLP 100-100, 3000 steps, 2 starts, constant rate): best validation loss 2.42 at
1e-4, 1.39 at 1e-2, 1.08 at 1, 2.23 at 3, 5.3e3 at 10 and diverged at 30; with warm-up
cosine 1.42 at 3 and 2.29 at 10.

Its base config is experiments/learning_rate.py (plain SGD, the rate grid); one vmapped
program per schedule whose members are the rates x random starts. `--smoke` runs a tiny
version in seconds.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository: run from anywhere
from experiments import learning_rate
from experiments.studies import cli, eval_history
from jaxnn.config.sweep import with_values
from jaxnn.core import ensemble
from jaxnn.reporting import study_report

SCHEDULES = ("constant", "cosine", "step", "warmup_cosine")


def run(workdir: Path, *, smoke: bool = False, data_dir: str = "") -> dict[str, Any]:
    config, data = cli.study_data(learning_rate.get_config, smoke=smoke, data_dir=data_dir)
    key = jax.random.PRNGKey(config.seed)
    schedules = ("constant", "cosine") if smoke else SCHEDULES
    finals: dict[str, dict[float, float]] = {}
    curves = {}
    for schedule in schedules:
        result = ensemble.fit_ensemble(
            with_values(config, {"optimizer.schedule": schedule}), data, key
        )
        val, _ = ensemble.evaluate_members(result.state, result.program, data.x_val, data.y_val)
        diverged = np.asarray(jax.device_get(result.state.diverged))
        steps, history = eval_history.history_array(result.history, "val_loss")
        by_rate: dict[float, list[int]] = {}
        for member in result.members:
            by_rate.setdefault(member.swept["optimizer.learning_rate"], []).append(member.index)
        finals[schedule] = {
            rate: float("nan")
            if diverged[idx].all()
            else float(np.mean(val["loss"][idx][~diverged[idx]]))
            for rate, idx in by_rate.items()
        }
        if schedule == "constant":
            for rate, idx in by_rate.items():
                if not diverged[idx].all():
                    curves[f"lr {rate:g}"] = (steps, np.nanmean(history[:, idx], axis=1))
    rates = sorted(finals["constant"])
    best_rate = min(
        (r for r in rates if np.isfinite(finals["constant"][r])), key=finals["constant"].get
    )
    schedule_at_best = {s: finals[s][best_rate] for s in schedules}
    numbers = {
        "final_val_loss": {s: {str(r): v for r, v in f.items()} for s, f in finals.items()},
        "diverged_rates": [r for r in rates if not np.isfinite(finals["constant"][r])],
        "best_constant_rate": best_rate,
        "schedules_at_best_rate": schedule_at_best,
    }
    plots = [
        study_report.lines(
            workdir / "plots" / "final_val_loss_vs_lr.png",
            {s: (np.array(rates), np.array([finals[s][r] for r in rates])) for s in schedules},
            xlabel="learning rate",
            ylabel="best validation loss (diverged: missing)",
            title="Learning rate, too small to diverging",
            logx=True,
            logy=True,
        ),
        study_report.lines(
            workdir / "plots" / "val_loss_curves.png",
            curves,
            xlabel="training step",
            ylabel="validation loss",
            title="Constant learning rate: validation loss against steps",
            logy=True,
        ),
    ]
    study_report.write_report(
        workdir,
        "Learning rate and schedules",
        [
            f"MNIST-1D, MLP {tuple(config.model.hidden)}, plain SGD, batch "
            f"{config.training.batch_size}, {config.training.steps} steps, "
            f"{config.restarts.num} random starts per rate (mean of their best validation loss).",
            f"Best constant rate {best_rate:g}; diverged rates: "
            f"{', '.join(f'{r:g}' for r in numbers['diverged_rates']) or 'none'}.",
        ],
        [
            (
                "Best validation loss by rate and schedule",
                ["learning rate", *schedules],
                [[r, *(finals[s][r] for s in schedules)] for r in rates],
            )
        ],
        plots,
        numbers,
    )
    return numbers


if __name__ == "__main__":
    cli.main(__doc__, run)
