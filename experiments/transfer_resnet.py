"""Transfer learning on images: a ResNet pretrained on MNIST digits 0-4 learns digits 5-9.

Commands, stage by stage:
    python launch.py --config=experiments/transfer_resnet.py:source \
        --workdir=runs/transfer_resnet/source
    python launch.py --config=experiments/transfer_resnet.py:target,25,feature_extraction \
        --config.init_from.workdir=runs/transfer_resnet/source \
        --workdir=runs/transfer_resnet/target_25_feature_extraction

Arguments as experiments/transfer.py's: `source`, or `target,N,MODE` with N examples per target
class (10, 25 or 50) and MODE one of scratch, feature_extraction, finetune; a trailing `,smoke`
shrinks either to seconds (used by the tests). The whole study, source once then every size and
mode, with its table and plot: `python experiments/studies/transfer_resnet.py
--workdir=runs/transfer_resnet` (its docstring has the figure).

Data: the local MNIST subset (`dataset.name=mnist_subset`, 28x28x1 real MNIST digits, pixels
in [0, 1], not re-standardised so that source and target images are on one scale). Source:
classes 0-4 (1800 train / 200 validation / 500 test images). Target: classes 5-9 relabelled
0..4; its 200 validation images are carved from the train split before `train_per_class` keeps
the first N of each class, so they never overlap the few training images or the 500 test ones.

The network: experiments/mnist_resnet.py's (the `resnet` family, pre-activation blocks, the
ImageNet stem: a 7x7 stride-2 convolution and max pooling, then three stages of one basic block
of 32, 64 and 128 channels with BatchNorm, global average pooling and the head); Adam with a
cosine schedule. The source trains 1500 steps at 2e-3 on random crops (`augment.crop=2`); each
target run 300 steps at 3e-3, without crops. Its BatchNorm statistics are the body's model
state: `init_from` carries them, fine-tuning goes on updating them, feature extraction keeps
them frozen. Each target run trains K random starts (heads, or whole networks for scratch) and
reports the member selected by validation loss; fine-tuning moves the body at a tenth of the
head's learning rate.
"""

from __future__ import annotations

import ml_collections

from experiments import transfer
from jaxnn.config import default_config

SOURCE_CLASSES = (0, 1, 2, 3, 4)
TARGET_CLASSES = (5, 6, 7, 8, 9)
SIZES = (10, 25, 50)
MODES = ("scratch", "feature_extraction", "finetune")
DEFAULT_SOURCE_WORKDIR = "runs/transfer_resnet/source"


def _shared(smoke: bool) -> ml_collections.ConfigDict:
    """What source and target share: the data, its scaling and the network's body."""
    config = default_config()
    config.dataset.name = "mnist_subset"
    config.dataset.standardize = False
    config.model.name = "resnet"
    config.model.stem = "imagenet"
    config.model.preact = True
    config.model.stages = (1,) if smoke else (1, 1, 1)
    config.model.widths = (8,) if smoke else (32, 64, 128)
    config.optimizer.name = "adam"
    config.optimizer.schedule = "cosine"
    return config


def _source(smoke: bool) -> ml_collections.ConfigDict:
    config = _shared(smoke)
    config.dataset.classes = SOURCE_CLASSES
    config.augment.crop = 2
    config.optimizer.learning_rate = 2e-3
    config.training.batch_size = 32 if smoke else 64
    config.training.steps = 10 if smoke else 1500
    config.training.eval_every = 5 if smoke else 250
    config.restarts.num = 1
    return config


def _target(size: int, mode: str, smoke: bool) -> ml_collections.ConfigDict:
    config = _shared(smoke)
    config.dataset.classes = TARGET_CLASSES
    config.dataset.train_per_class = size
    config.training.batch_size = min(25, len(TARGET_CLASSES) * size)
    config.optimizer.learning_rate = 3e-3
    config.training.steps = 10 if smoke else 300
    config.training.eval_every = 5 if smoke else 50
    config.restarts.num = 2
    return transfer.from_source(config, mode, DEFAULT_SOURCE_WORKDIR)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`source[,smoke]` or `target,N,MODE[,smoke]` (see the module docstring)."""
    parts = [part.strip() for part in (arg or "source").split(",") if part.strip()]
    smoke = parts[-1:] == ["smoke"]
    if smoke:
        parts = parts[:-1]
    if parts == ["source"]:
        return _source(smoke)
    if len(parts) == 3 and parts[0] == "target" and parts[1].isdigit() and parts[2] in MODES:
        return _target(int(parts[1]), parts[2], smoke)
    raise ValueError(
        f"experiments/transfer_resnet.py: unknown argument {arg!r}; use source or "
        f"target,N,MODE with MODE one of {', '.join(MODES)} (either may end with ,smoke)"
    )
