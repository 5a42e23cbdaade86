"""Quasi-random search: 32 MLPs on MNIST-1D, each with its own drawn learning rate, weight decay
and dropout, trained in one vmapped program, each rate cut by reduce_on_plateau.

Command:
    python launch.py --config=experiments/random_search.py --workdir=runs/random_search

Figure: DIR/plots/search.png, each member's best validation loss against each drawn value
(learning rate and weight decay on log axes), the selected member in red; the ranking and
summary.json list every member's values (docs/search.md). The points are a scrambled Halton
sequence seeded by `seed`: `--config.restarts.search_method=random` draws independent ones,
`--config.seed=1` another sequence.
Recipe: MLP 256-256 GELU, SGD with momentum 0.9, learning rate log-uniform in [0.003, 1],
weight decay log-uniform in [1e-6, 1e-2], dropout uniform in [0, 0.5]; batches of 100 for 3000
steps, evaluated every 250; reduce_on_plateau halves a member's rate after 2 evaluations
without a 1% better mean training loss.
Arguments: `smoke` (seconds, used by the tests).
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/random_search.py", ("smoke",))
    config = default_config()
    config.dataset.name = "mnist1d"
    config.model.hidden = (256, 256)
    config.model.activation = "gelu"
    config.model.dropout = 0.1  # every member draws its own (the search below)
    config.optimizer.name = "momentum"
    config.optimizer.momentum = 0.9
    config.optimizer.schedule = "reduce_on_plateau"
    config.optimizer.plateau_factor = 0.5
    config.optimizer.plateau_patience = 2
    config.optimizer.plateau_rtol = 0.01
    config.training.batch_size = 100
    config.training.steps = 3000
    config.training.eval_every = 250
    config.restarts.num = 32
    config.restarts.search_method = "halton"
    config.restarts.search = (
        "optimizer.learning_rate=loguniform(0.003, 1.0); "
        "optimizer.weight_decay=loguniform(1e-6, 1e-2); "
        "model.dropout=uniform(0.0, 0.5)"
    )
    if arg == "smoke":
        config.model.hidden = (16,)
        config.restarts.num = 4
        config.training.steps = 40
        config.training.eval_every = 10
    return config
