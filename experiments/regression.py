"""A regression network (MSE loss, linear output) on diabetes or friedman1.

Commands:
    python launch.py --config=experiments/regression.py:diabetes --workdir=runs/diabetes
    python launch.py --config=experiments/regression.py:friedman1 --workdir=runs/friedman1

Result it should give: test R2 above the linear least-squares fit on the same split (both in
summary.json: `best.test_r2` and `baselines.linear_least_squares.test_r2`), and a plot of
predictions against targets in plots/predictions.png.
Arguments: `diabetes` (default), `friedman1`, and either with `,smoke` (seconds, for tests).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/regression.py", ("diabetes", "friedman1", "smoke"))
    parts = [p for p in (arg or "diabetes").split(",") if p]
    name = next((p for p in parts if p != "smoke"), "diabetes")
    config = default_config()
    config.dataset.name = name
    config.dataset.validation_fraction = 0.2
    config.loss = "mse"
    config.restarts.num = 8
    config.optimizer.name = "momentum"
    config.optimizer.momentum = 0.9
    config.training.eval_every = 100
    if name == "friedman1":
        config.model.hidden = (64, 64)
        config.optimizer.learning_rate = 0.01
        config.training.batch_size = 32
        config.training.steps = 8000
    else:
        # Diabetes is nearly linear: a narrow layer with dropout is what beats least squares.
        config.model.hidden = (16,)
        config.model.dropout = 0.2
        config.optimizer.learning_rate = 0.005
        config.optimizer.weight_decay = 0.01
        config.training.batch_size = 32
        config.training.steps = 3000
        config.training.eval_every = 50
    if "smoke" in parts:
        config.restarts.num = 2
        config.training.steps = 40
        config.training.eval_every = 20
    return config
