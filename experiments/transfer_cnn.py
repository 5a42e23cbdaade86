"""Transfer learning on MNIST-1D with a convolutional body (experiments/transfer.py's `,cnn` runs).

Commands, stage by stage:
    python launch.py --config=experiments/transfer_cnn.py:source --workdir=runs/transfer_cnn/source
    python launch.py --config=experiments/transfer_cnn.py:target,25,finetune \
        --config.init_from.workdir=runs/transfer_cnn/source --workdir=runs/transfer_cnn/t25

Arguments as experiments/transfer.py's (`source` or `target,N,MODE`, then `,smoke`); the
network is the `cnn1d` family (three conv layers of 64 channels, kernel 5, max pooling, then
the head) in place of the MLP. The whole study, beside the MLP's table:
`python experiments/studies/transfer_cnn.py --workdir=runs/transfer_cnn`.
"""

from __future__ import annotations

import ml_collections

from experiments import transfer


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    parts = [part.strip() for part in (arg or "source").split(",") if part.strip()]
    smoke = parts[-1:] == ["smoke"]
    body = [*(parts[:-1] if smoke else parts), "cnn"]
    return transfer.get_config(",".join(body + (["smoke"] if smoke else [])))
