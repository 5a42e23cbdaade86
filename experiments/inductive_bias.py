"""One cell of the inductive-bias study: an MLP, CNN or GRU on MNIST-1D, standard or permuted.

Command:
    python launch.py --config=experiments/inductive_bias.py:cnn,permuted --workdir=runs/ib/cnn_p

Argument: `MODEL,DATA[,smoke]` with MODEL one of mlp, cnn, gru and DATA one of standard,
permuted (default `cnn,standard`); `smoke` shrinks it to seconds (for the tests). The config is
the model's launch config (experiments/mnist1d_mlp.py, experiments/mnist1d_cnn.py,
experiments/mnist1d_gru.py) with augmentation off (a shift means nothing once the positions are
permuted; the MNIST-1D paper trained without it) and two random starts; `permuted` reorders the
40 positions of every split by one fixed permutation (`dataset.permute_seed=1`). Result it
should give: the paper's pattern, CNN and GRU fall on the permuted data while the MLP does not
(experiments/studies/inductive_bias.py runs all six and tabulates them).
"""

from __future__ import annotations

import ml_collections

from experiments import mnist1d_cnn, mnist1d_gru, mnist1d_mlp

MODELS = {
    "mlp": mnist1d_mlp.get_config,
    "cnn": mnist1d_cnn.get_config,
    "gru": mnist1d_gru.get_config,
}
DATA = ("standard", "permuted")
PERMUTE_SEED = 1
NUM_STARTS = 2


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = [part.strip() for part in (arg or "cnn,standard").split(",") if part.strip()]
    smoke = parts[-1:] == ["smoke"]
    parts = parts[:-1] if smoke else parts
    if len(parts) != 2 or parts[0] not in MODELS or parts[1] not in DATA:
        raise ValueError(
            f"experiments/inductive_bias.py: unknown argument {arg!r}; use MODEL,DATA with "
            f"MODEL one of {', '.join(MODELS)} and DATA one of {', '.join(DATA)} (then ,smoke)"
        )
    config = MODELS[parts[0]]("smoke" if smoke else None)
    config.dataset.permute_seed = PERMUTE_SEED if parts[1] == "permuted" else 0
    config.augment.shift = 0
    config.augment.noise = 0.0
    config.augment.scale = 0.0
    config.restarts.num = NUM_STARTS
    return config
