"""Batch size at equal epochs: batches of 1, 10 and 100 for 10 epochs, as one launch.

Command:
    python launch.py --config=experiments/batch_size.py --workdir=runs/batch_size_sweep

Result it should give: MLP 100-100, plain SGD lr 0.05, the 3600 MNIST-1D training examples,
2 random starts per batch size, one compiled program per size (the batch size is structural).
After 10 epochs batch 10 has the lowest validation loss: the study measured final validation
losses of 1.92 / 1.23 / 1.55 for batch 1 / 10 / 100, batch 1 being the slowest in wall time.
The `smoke` argument shrinks it to seconds (used by the tests).

The study on this config (adds the full batch and equal steps, with curves against steps,
epochs and wall time): experiments/studies/batch_size.py.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words

EPOCHS = 10


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/batch_size.py", ("smoke",))
    smoke = arg == "smoke"
    config = default_config()
    config.dataset.name = "mnist1d"
    config.dataset.train_per_class = 10 if smoke else 0
    config.model.hidden = (16,) if smoke else (100, 100)
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.05
    config.training.batch_size = 100
    config.training.epochs = 2 if smoke else EPOCHS
    config.training.eval_every = 10
    config.restarts.num = 1 if smoke else 2
    config.restarts.sweep = "training.batch_size=[1, 10, 100]"
    return config
