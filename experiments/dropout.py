"""Dropout rates 0 to 0.7 on a wide MLP (512-512) trained on 500 examples, as one launch.

Command:
    python launch.py --config=experiments/dropout.py --workdir=runs/dropout_sweep

Result it should give: one vmapped program whose members are the 5 rates x 2 random starts
(3000 steps of SGD with momentum 0.9 on 500 MNIST-1D examples). Without dropout the training
loss falls to about 0.002 while the validation loss climbs above 3; the higher the rate, the
lower the final validation loss (about 1.66 at 0.7 against 3.29 without dropout, the study's
measurements), as the members' validation curves in plots/ show.
The `smoke` argument shrinks it to seconds (used by the tests).

The study on this config (train and validation curves by rate): experiments/studies/dropout.py.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words

RATES = (0.0, 0.1, 0.3, 0.5, 0.7)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/dropout.py", ("smoke",))
    smoke = arg == "smoke"
    config = default_config()
    config.dataset.name = "mnist1d"
    config.dataset.train_per_class = 10 if smoke else 50  # a small training set: 500 examples
    config.model.hidden = (32, 32) if smoke else (512, 512)
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.01
    config.optimizer.momentum = 0.9
    config.training.batch_size = 50
    config.training.steps = 40 if smoke else 3000
    config.training.eval_every = 10 if smoke else 100
    config.restarts.num = 1 if smoke else 2
    rates = (0.0, 0.5) if smoke else RATES
    config.restarts.sweep = f"model.dropout=[{', '.join(map(str, rates))}]"
    return config
