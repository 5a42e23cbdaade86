"""Transfer learning on MNIST-1D: pretrain on digits 0-4, then learn digits 5-9 from a few examples.

Commands, stage by stage:
    python launch.py --config=experiments/transfer.py:source --workdir=runs/transfer/source
    python launch.py --config=experiments/transfer.py:target,25,finetune \
        --config.init_from.workdir=runs/transfer/source --workdir=runs/transfer/target_25_finetune

Arguments: `source`, or `target,N,MODE` with N examples per target class (5, 10, 25 or 50) and
MODE one of scratch, feature_extraction, finetune; a `,cnn` after either gives the network a
convolutional body (the `cnn1d` family: conv layers, then the head) in place of the MLP's (its
source must be a `source,cnn` run); a trailing `,smoke` shrinks any of them to seconds (used by
the tests). The whole study, source once then every size and mode, with its table
and plot: `python experiments/studies/transfer.py --workdir=runs/transfer`.

Source: the `mnist1d/pretrain` builder config (a disjoint draw, 20000 train) restricted to
classes (0, 1, 2, 3, 4): 8932 train / 992 validation examples. Target: standard `mnist1d`
restricted to classes (5, 6, 7, 8, 9), relabelled 0..4; validation (201 examples) is carved
from the target's train split before `train_per_class` keeps the first N examples of each
class, so it never overlaps the few training examples or the test split (493 examples).
Inputs are not re-standardised: MNIST-1D is already centred and scaled, and a body trained on
the source must see target inputs on the same scale.

Each target run trains K = 8 random starts (heads, or whole networks for scratch) in one
program and reports the member selected by validation loss. Result it should give (measured
on 2 CPU cores, 2.5 to 4.5 minutes for the whole study; see docs/transfer.md for the table):
with 25 examples per class both transfer modes beat scratch by >= 10 points of target test
accuracy, and the better one beats scratch by >= 15 points with 50 per class.
"""

from __future__ import annotations

import ml_collections

from jaxnn.config import default_config

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SIZES = (5, 10, 25, 50)
MODES = ("scratch", "feature_extraction", "finetune")
BODIES = ("mlp", "cnn")
DEFAULT_SOURCE_WORKDIR = "runs/transfer/source"


def _shared(smoke: bool, body: str = "mlp") -> ml_collections.ConfigDict:
    """What source and target share: the data scaling and the network's body."""
    config = default_config()
    config.dataset.standardize = False
    config.model.hidden = (32, 32) if smoke else (256, 256)
    config.model.activation = "relu"
    config.model.init = "he_normal"
    config.optimizer.name = "adam"
    config.optimizer.learning_rate = 1e-3
    if body == "cnn":
        config.model.name = "cnn1d"
        config.model.channels = (8, 8) if smoke else (64, 64, 64)
        config.model.kernel_sizes = (5,)
        config.model.strides = (1,)
        config.model.pool = "max"
        config.model.pool_size = 2
        config.model.hidden = ()
    return config


def _source(smoke: bool, body: str = "mlp") -> ml_collections.ConfigDict:
    config = _shared(smoke, body)
    config.dataset.name = "mnist1d/pretrain"
    config.dataset.classes = SOURCE_CLASSES
    # Dropout makes the hidden features more general; it is what makes them transfer.
    config.model.dropout = 0.3
    config.training.batch_size = 100
    config.training.steps = 40 if smoke else 6000
    config.training.eval_every = 20 if smoke else 250
    config.checkpoint.every_steps = 0 if smoke else 1000
    config.restarts.num = 2
    return config


def _target(size: int, mode: str, smoke: bool, body: str = "mlp") -> ml_collections.ConfigDict:
    config = _shared(smoke, body)
    config.dataset.name = "mnist1d"
    config.dataset.classes = TARGET_CLASSES
    config.dataset.train_per_class = size
    config.training.batch_size = min(25, len(TARGET_CLASSES) * size)
    config.training.steps = 20 if smoke else 600
    config.training.eval_every = 10 if smoke else 50
    config.checkpoint.every_steps = 0 if smoke else 200
    config.restarts.num = 2 if smoke else 8
    return from_source(config, mode, DEFAULT_SOURCE_WORKDIR)


def from_source(
    config: ml_collections.ConfigDict, mode: str, source_workdir: str
) -> ml_collections.ConfigDict:
    """`config` starting from the source run's best member's body (`mode` feature_extraction,
    or finetune with the body at a tenth of the head's learning rate); scratch leaves it."""
    if mode != "scratch":
        config.init_from.workdir = source_workdir
        config.init_from.member = "best"
        config.init_from.mode = mode
        config.init_from.restore = "body"
        config.init_from.body_lr_scale = 0.1 if mode == "finetune" else 1.0
    return config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`source[,cnn][,smoke]` or `target,N,MODE[,cnn][,smoke]` (see the module docstring)."""
    parts = [part.strip() for part in (arg or "source").split(",") if part.strip()]
    smoke = parts[-1:] == ["smoke"]
    if smoke:
        parts = parts[:-1]
    body = "cnn" if parts[-1:] == ["cnn"] else "mlp"
    if body == "cnn":
        parts = parts[:-1]
    if parts == ["source"]:
        return _source(smoke, body)
    if len(parts) == 3 and parts[0] == "target" and parts[1].isdigit() and parts[2] in MODES:
        return _target(int(parts[1]), parts[2], smoke, body)
    raise ValueError(
        f"experiments/transfer.py: unknown argument {arg!r}; use source or target,N,MODE with "
        f"MODE one of {', '.join(MODES)} (either may go on with ,cnn and end with ,smoke)"
    )
