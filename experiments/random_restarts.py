"""Random starts: 32 MLPs on MNIST-1D trained in one vmapped program, the best kept by validation.

Command:
    python launch.py --config=experiments/random_restarts.py --workdir=runs/random_restarts

Result it should give: the validation-selected member reaches test accuracy >= 0.80 and the
ensemble average >= 0.83 (2 hidden layers, standard 4000/1000 split, no augmentation).
Arguments: `demo` (what `make demo` runs: the same 32 starts, shorter) and `smoke` (seconds).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (512, 512)
    config.model.activation = "gelu"
    config.model.init = "he_normal"
    config.model.dropout = 0.5
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.momentum = 0.9
    config.optimizer.weight_decay = 5e-4
    config.optimizer.schedule = "cosine"
    config.training.batch_size = 100
    config.training.steps = 10000
    config.training.eval_every = 500
    config.restarts.num = 32
    if arg == "demo":
        config.model.hidden = (256, 256)
        config.training.steps = 3000
        config.training.eval_every = 250
    elif arg == "smoke":
        config.model.hidden = (32, 32)
        config.restarts.num = 4
        config.training.steps = 40
        config.training.eval_every = 20
    return config
