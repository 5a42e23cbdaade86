"""The 8x8 digits at the budget of the BatchNorm study (experiments/studies/batchnorm_digits.py).

Command:
    python launch.py --config=experiments/batchnorm_digits.py --workdir=runs/batchnorm_digits_mlp

The launcher trains the registered MLP (model.hidden=(128, 128)) on it: the baseline of the
study, whose own model, a user's CNN with BatchNorm and Dropout, is Python code and runs through
`jaxnn.run(config, workdir, model=...)` with this config. 4 random starts x 2 learning rates,
selected by validation loss. The `smoke` argument shrinks the run to seconds.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default_config()
    config.dataset.name = "digits"
    config.model.hidden = (128, 128)
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.training.batch_size = 32
    config.training.epochs = 12  # 492 steps of 32 of the 1293 training images
    config.training.eval_every = 100
    config.restarts.num = 4
    config.restarts.sweep = "optimizer.learning_rate=[0.02, 0.1]"
    config.checkpoint.every_steps = 100
    if arg == "smoke":
        config.training.epochs = 2
        config.training.eval_every = 20
        config.checkpoint.every_steps = 40
    return config
