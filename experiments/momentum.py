"""Momentum: SGD, momentum and Nesterov over momenta 0.5-0.99 and learning rates 0.003-0.1.

Command:
    python launch.py --config=experiments/momentum.py --workdir=runs/momentum_sweep

Result it should give: one compiled program per optimiser name, momentum and Nesterov (MLP
100-100, 3000 steps, 2 random starts per setting; the sweep crosses both names with every
rate and momentum; plain SGD, which reads no momentum and so cannot be in a momentum sweep,
is the study's baseline). At the same learning rate the momentum-0.9 members reach
plain SGD's final validation loss within the first 400 steps (13% of them) in metrics.jsonl,
and momentum 0.99 oscillates (the study's measurements).
The `smoke` argument shrinks it to seconds (used by the tests).

The study on this config (validation curves per learning rate, steps to SGD's final loss):
experiments/studies/momentum.py.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words

LEARNING_RATES = (0.003, 0.01, 0.03, 0.1)
MOMENTA = (0.5, 0.9, 0.99)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/momentum.py", ("smoke",))
    smoke = arg == "smoke"
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (16,) if smoke else (100, 100)
    config.optimizer.name = "momentum"
    config.optimizer.momentum = 0.9
    config.optimizer.learning_rate = 0.01
    config.training.batch_size = 100
    config.training.steps = 40 if smoke else 3000
    config.training.eval_every = 10 if smoke else 100
    config.restarts.num = 1 if smoke else 2
    rates = (0.01, 0.1) if smoke else LEARNING_RATES
    momenta = (0.9,) if smoke else MOMENTA
    config.restarts.sweep = (
        "optimizer.name=[momentum, nesterov]; "
        f"optimizer.learning_rate=[{', '.join(map(str, rates))}]; "
        f"optimizer.momentum=[{', '.join(map(str, momenta))}]"
    )
    return config
