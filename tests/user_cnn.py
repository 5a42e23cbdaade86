"""A user's own 1-D CNN (not part of jaxnn) and the run the user-model tests launch with it.

Run as a script it trains into a workdir, as a user's research code would:

    python tests/user_cnn.py WORKDIR DATA_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from jaxnn.config import default_config

SWEEP = {"optimizer.learning_rate": [0.05, 0.2]}


class SmallCNN(nn.Module):
    """Two 1-D convolutions over the positions of an MNIST-1D signal, then a dense head."""

    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        x = x[..., None]  # [B, 40] -> [B, 40, 1]: positions are the spatial axis
        x = nn.relu(nn.Conv(6, (5,), strides=(2,), name="conv_0")(x))
        x = nn.relu(nn.Conv(6, (3,), strides=(2,), name="conv_1")(x))
        x = nn.Dropout(0.1, deterministic=not train)(x)
        x = x.reshape((x.shape[0], -1))
        return nn.Dense(self.num_classes, name="head")(x)


def top2_accuracy(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of examples whose label is among the two highest scores."""
    top2 = jnp.argsort(outputs, axis=-1)[:, -2:]
    return jnp.mean(jnp.any(top2 == labels[:, None], axis=-1))


def config(data_dir: str, *, steps: int = 120):
    cfg = default_config()
    cfg.dataset.data_dir = data_dir
    cfg.training.batch_size = 50
    cfg.training.steps = steps
    cfg.training.eval_every = 10
    cfg.restarts.num = 4
    cfg.restarts.select_by = "val_top2"
    cfg.checkpoint.every_steps = 20
    cfg.checkpoint.keep = 2
    return cfg


def launch(workdir: str, data_dir: str, **kwargs):
    from jaxnn import runner

    return runner.run(
        config(data_dir),
        workdir,
        model=SmallCNN(),
        metrics={"top2": top2_accuracy},
        sweep=SWEEP,
        progress=False,
        **kwargs,
    )


if __name__ == "__main__":
    launch(sys.argv[1], sys.argv[2])
