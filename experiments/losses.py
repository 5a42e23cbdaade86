"""Losses for classification: cross-entropy vs MSE on one-hot targets (MNIST-1D), as one launch.

Command:
    python launch.py --config=experiments/losses.py --workdir=runs/losses_classification

Result it should give: one compiled program per loss (the loss is structural), 4 random
starts each (MLP 100-100, 3000 steps); cross-entropy reaches a higher test accuracy than MSE,
about 0.541 against 0.456 (mean of the starts, the study's measurements).
The `smoke` argument shrinks it to seconds (used by the tests).

The study on this config (adds MSE vs MAE vs Huber on friedman1 with outlier targets):
experiments/studies/losses.py.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/losses.py", ("smoke",))
    smoke = arg == "smoke"
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (16,) if smoke else (100, 100)
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.training.batch_size = 100
    config.training.steps = 40 if smoke else 3000
    config.training.eval_every = 20 if smoke else 250
    config.restarts.num = 1 if smoke else 4
    config.restarts.sweep = "loss=[cross_entropy, mse]"
    return config
