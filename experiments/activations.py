"""Activations and initialisation: 5 activations x 3 inits x depths 2 and 10, as one launch.

Command:
    python launch.py --config=experiments/activations.py --workdir=runs/activations_sweep

Result it should give: one summary.json over the 30 structural variants (width 64, 1500 steps
of SGD with momentum 0.9, lr 0.05, 2 random starts each; one compiled program per variant)
and per-layer gradient norms, dead and saturated units in DIR/diagnostics.jsonl. Every 10-layer
sigmoid net stays at chance (test accuracy 0.10 with each init) while the 10-layer ReLU/He net
reaches about 0.58 and PReLU/He about 0.61 (the study's measurements of this config).
The `smoke` argument runs a two-variant version in seconds (used by the tests).

The study on this config, with the vanishing-gradient figures: experiments/studies/activations.py.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words

ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu")
INITS = ("he_normal", "glorot_normal", "normal")
DEPTHS = (2, 10)
WIDTH = 64


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/activations.py", ("smoke",))
    smoke = arg == "smoke"
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.init_stddev = 0.01  # the small-normal init
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.momentum = 0.9
    config.training.batch_size = 100
    config.training.steps = 30 if smoke else 1500
    config.training.eval_every = 10 if smoke else 250
    config.restarts.num = 2
    depths = (3,) if smoke else DEPTHS
    width = 8 if smoke else WIDTH
    activations = ("sigmoid", "relu") if smoke else ACTIVATIONS
    inits = ("normal",) if smoke else INITS
    config.model.hidden = (width,) * depths[-1]
    hidden = ", ".join(str((width,) * d) for d in depths)
    config.restarts.sweep = (
        f"model.activation=[{', '.join(activations)}]; model.init=[{', '.join(inits)}]; "
        f"model.hidden=[{hidden}]"
    )
    config.diagnostics.enabled = True
    return config
