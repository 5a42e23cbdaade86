"""A GRU ensemble on MNIST-1D: positions read as time steps, trained with random shifts.

Command:
    python launch.py --config=experiments/mnist1d_gru.py --workdir=runs/mnist1d_gru

Result it should give (the standard 4000/1000 split): a validation-selected member of at least
0.91 test accuracy, the MNIST-1D paper's GRU figure. Measured on the idle 2-core CPU (2 December
2026, one run of this config): members 0.961-0.977, the selected member 0.972, the ensemble
average 0.979, in 117 s from the command to its summary (97 s of training); an earlier run on
the machine loaded by other jobs gave 0.972 / 0.977 in 1859 s of training.

The net: a GRU of state 128 reading two positions per step (`model.chunk=2`, 20 steps), the
head on the last state; shifts of up to 3 positions; AdamW (learning rate 3e-3, weight decay 1e-4) with a cosine
schedule and gradient clipping at norm 1, 4000 steps of batch 100, four random starts.
The `smoke` argument shrinks the run to seconds (used by the tests).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/mnist1d_gru.py", ("smoke",))
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
