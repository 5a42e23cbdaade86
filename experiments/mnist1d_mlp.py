"""A single MLP on MNIST-1D, selected and early-stopped by validation.

Command:
    python launch.py --config=experiments/mnist1d_mlp.py --workdir=runs/mnist1d_mlp

Result it should give: test accuracy >= 0.68 (the MNIST-1D paper's MLP figure) for the
validation-selected weights of one MLP; about 0.75 with dropout 0.5, in about a minute on
2 CPU cores. Without dropout the same net overfits within a few hundred steps and early
stopping on validation loss ends it near 0.6.
The `smoke` argument shrinks the run to seconds (used by the tests).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/mnist1d_mlp.py", ("smoke",))
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (256, 256)
    config.model.activation = "relu"
    config.model.init = "he_normal"
    config.model.dropout = 0.5
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "cosine"
    config.training.batch_size = 100
    config.training.steps = 8000
    config.training.eval_every = 250
    config.training.patience = 12
    if arg == "smoke":
        config.model.hidden = (32, 32)
        config.training.steps = 40
        config.training.eval_every = 20
    return config
