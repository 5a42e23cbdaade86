"""A single MLP on MNIST-1D, selected and early-stopped by validation.

Command:
    python launch.py --config=experiments/mnist1d_mlp.py --workdir=runs/mnist1d_mlp

Result it should give: test accuracy >= 0.68 (the MNIST-1D paper's MLP figure) for the
validation-selected weights; about 0.7 on 2 CPU cores in under a minute.
The `smoke` argument shrinks the run to seconds (used by the tests).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (100, 100)
    config.model.activation = "relu"
    config.model.init = "he_normal"
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.momentum = 0.9
    config.training.batch_size = 100
    config.training.steps = 6000
    config.training.eval_every = 250
    config.training.patience = 8
    if arg == "smoke":
        config.training.steps = 40
        config.training.eval_every = 20
    return config
