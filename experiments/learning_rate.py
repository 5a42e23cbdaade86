"""Learning rate: plain SGD at 12 rates from 1e-4 to 30 on a constant schedule, as one launch.

Command:
    python launch.py --config=experiments/learning_rate.py --workdir=runs/learning_rate_grid

Result it should give: one vmapped program whose members are the 12 rates x 2 random starts
(MLP 100-100, 3000 steps). The best validation loss falls from about 2.42 at 1e-4 to about
1.08 at 1 and rises above that (2.23 at 3, 5.3e3 at 10); the members at 30 are reported
diverged, not crashed (the study's measurements).
The `smoke` argument shrinks it to seconds (used by the tests).

The study on this config (adds the cosine, step and warm-up-cosine schedules):
experiments/studies/learning_rate.py.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words

RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/learning_rate.py", ("smoke",))
    smoke = arg == "smoke"
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (16,) if smoke else (100, 100)
    config.optimizer.name = "sgd"
    config.optimizer.learning_rate = 0.1
    config.training.batch_size = 100
    config.training.steps = 40 if smoke else 3000
    config.training.eval_every = 10 if smoke else 100
    config.restarts.num = 1 if smoke else 2
    rates = (1e-4, 0.1, 30.0) if smoke else RATES
    config.restarts.sweep = f"optimizer.learning_rate=[{', '.join(map(str, rates))}]"
    return config
