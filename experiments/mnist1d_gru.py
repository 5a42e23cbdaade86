"""A GRU ensemble on MNIST-1D: positions read as time steps, trained with random shifts.

Command:
    python launch.py --config=experiments/mnist1d_gru.py --workdir=runs/mnist1d_gru

Result it should give (the standard 4000/1000 split): a validation-selected member of at least
0.91 test accuracy, the MNIST-1D paper's GRU figure, in well under 20 minutes on 2 CPU cores
(FIGURES). The GRU reads two positions per step (`model.chunk=2`, 20 steps) and its head reads
the last state; gradient clipping keeps the early steps of training stable.
The `smoke` argument shrinks the run to seconds (used by the tests).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.name = "gru"
    config.model.state_size = 128
    config.model.chunk = 2
    config.model.readout = "last"
    config.augment.shift = 3
    config.augment.shift_mode = "circular"
    config.optimizer.name = "adamw"
    config.optimizer.learning_rate = 3e-3
    config.optimizer.weight_decay = 1e-4
    config.optimizer.schedule = "cosine"
    config.optimizer.clip_norm = 1.0
    config.training.batch_size = 100
    config.training.steps = 4000
    config.training.eval_every = 250
    config.restarts.num = 4
    if arg == "smoke":
        config.model.state_size = 8
        config.model.chunk = 4
        config.training.steps = 40
        config.training.eval_every = 20
        config.restarts.num = 2
    return config
