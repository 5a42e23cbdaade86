"""An MLP on scikit-learn's 8x8 digits.

Command:
    python launch.py --config=experiments/digits_mlp.py --workdir=runs/digits_mlp

Result it should give: test accuracy >= 0.97 for the validation-selected weights.
The `smoke` argument shrinks the run to seconds (used by the tests).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/digits_mlp.py", ("smoke",))
    config = default_config()
    config.dataset.name = "digits"
    config.model.hidden = (128, 128)
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.training.batch_size = 32
    config.training.epochs = 60
    config.training.eval_every = 100
    if arg == "smoke":
        config.training.epochs = 1
        config.training.eval_every = 20
    return config
