"""Local minima: 64 random starts of one MLP (64-64) on MNIST-1D, as one launch.

Command:
    python launch.py --config=experiments/local_minima.py --workdir=runs/local_minima_starts

Result it should give: the 64 starts train in one vmapped program (3000 steps, momentum 0.9
with cosine decay) and end at different validation losses, from about 1.12 to 1.38;
summary.json's `restart_stats` give the expected best of 1 / 8 / 64 starts, about 1.232 /
1.159 / 1.123 (the study's measurements).
The `smoke` argument runs 4 starts in seconds (used by the tests).

The study on this config (loss barriers between the best solutions, the plane through the
three best): experiments/studies/local_minima.py.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/local_minima.py", ("smoke",))
    smoke = arg == "smoke"
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (16,) if smoke else (64, 64)
    config.model.activation = "relu"
    config.model.init = "he_normal"
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.momentum = 0.9
    config.optimizer.schedule = "cosine"
    config.training.batch_size = 100
    config.training.steps = 40 if smoke else 3000
    config.training.eval_every = 20 if smoke else 500
    config.restarts.num = 4 if smoke else 64
    return config
