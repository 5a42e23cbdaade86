"""A 2-D convolutional ensemble on the 8x8 digits as images (`model.name=cnn2d`).

Command:
    python launch.py --config=experiments/digits_cnn.py --workdir=runs/digits_cnn

The net: two conv layers of 32 and 64 channels (3x3 kernels, "same" padding, BatchNorm, ReLU,
max pooling by 2), then a dense layer of 128 units, dropout 0.1 and the linear head; SGD with
momentum (learning rate 0.05), 20 epochs of batch 32 over the 1293 training images, four
random starts, the weights of each member's best validation loss kept. No accuracy is claimed
here yet: it has not been run at this size. The `smoke` argument shrinks the run to seconds.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config
from jaxnn.config.arguments import experiment_words


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    experiment_words(arg, "experiments/digits_cnn.py", ("smoke",))
    config = default_config()
    config.dataset.name = "digits_images"
    config.model.name = "cnn2d"
    config.model.channels = (32, 64)
    config.model.kernel_sizes = (3,)
    config.model.pool = "max"
    config.model.pool_size = 2
    config.model.norm = "batch"
    config.model.hidden = (128,)
    config.model.dropout = 0.1
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.training.batch_size = 32
    config.training.epochs = 20
    config.training.eval_every = 100
    config.restarts.num = 4
    if arg == "smoke":
        config.model.channels = (8,)
        config.model.hidden = ()
        config.training.epochs = 1
        config.training.eval_every = 20
        config.restarts.num = 2
    return config
