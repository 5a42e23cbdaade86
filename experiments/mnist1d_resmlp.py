"""A residual MLP on MNIST-1D against the plain MLP of the same parameter count.

Commands:
    python launch.py --config=experiments/mnist1d_resmlp.py --workdir=runs/mnist1d_resmlp
    python launch.py --config=experiments/mnist1d_resmlp.py:mlp --workdir=runs/mnist1d_resmlp_mlp

The default is the `resmlp` family: an embedding to width 133, two pre-norm residual blocks of
two Dense layers each, a final LayerNorm and the head: 78,879 parameters. The `mlp` argument
gives the plain MLP of experiments/mnist1d_mlp.py (hidden (256, 256): 78,858 parameters). Both
train exactly alike (SGD with momentum, cosine schedule, dropout 0.5, early stopping on
validation loss, four random starts). Measured on the idle 2-core CPU (2 December 2026, one run
each, 25 s and 20 s from the command): resmlp members 0.680-0.691, selected 0.691, ensemble
0.714; the plain MLP members 0.731-0.748, selected 0.743, ensemble 0.768. At two blocks, with
this recipe (dropout 0.5 inside each residual branch, SGD with momentum), the residual net does
not beat the plain one: residual connections pay off in depth, which two blocks do not have.
The `smoke` argument (after either, e.g. `mlp,smoke`) shrinks the run to seconds (tests).
"""

from __future__ import annotations

import ml_collections

from experiments import mnist1d_mlp
from jaxnn.config import default_config

WIDTH, DEPTH = 133, 2  # 2 * DEPTH * W^2 + (53 + 4 * DEPTH) * W + 10 = 78,879 parameters


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = [part.strip() for part in (arg or "resmlp").split(",") if part.strip()]
    smoke = parts[-1:] == ["smoke"]
    family = (parts[:-1] if smoke else parts) or ["resmlp"]
    if family not in (["resmlp"], ["mlp"]):
        raise ValueError(
            f"experiments/mnist1d_resmlp.py: unknown argument {arg!r}; use resmlp or mlp, "
            "optionally followed by ,smoke"
        )
    config = mnist1d_mlp.get_config("smoke" if smoke else None)
    config.restarts.num = 2 if smoke else 4
    if family == ["resmlp"]:
        config.model.name = "resmlp"
        config.model.width = 16 if smoke else WIDTH
        config.model.depth = DEPTH
        # model.hidden is the MLP's field: resmlp leaves it at the schema's default.
        config.model.hidden = default_config().model.hidden
    return config
