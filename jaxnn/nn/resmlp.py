"""The residual MLP family (`model.name=resmlp`): pre-norm residual blocks.

Flattened inputs go through `embed` (Dense to `model.width`), then `model.depth` blocks
`block_{i}`, each x + dense_1(dropout(act(dense_0(norm(x))))) with `norm` a LayerNorm and both
Dense layers `model.width` wide (`prelu` holds a PReLU slope), then a final LayerNorm `norm` and
the linear `head`. Transfer: every parameter but `head` is the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxnn.nn import layers, model_fields
from jaxnn.nn.activations import Initializer
from jaxnn.nn.dense import Dense
from jaxnn.nn.family import ModelFamily, Params
from jaxnn.nn.layers import PARAM_ORDER, HiddenUnits, dropout, kernel_initializer, nonlinearity
from jaxnn.nn.precision import layer_dtype

HEAD = "head"


class ResidualBlock(nn.Module):
    """x [B, W] -> x + dense_1(dropout(act(dense_0(norm(x))))); dense_0's output is sown."""

    width: int
    activation: str
    kernel_init: Initializer
    negative_slope: float | jax.Array
    dropout: float | jax.Array
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, dropout_key: jax.Array | None) -> jax.Array:
        h = Dense(self.width, kernel_init=self.kernel_init, dtype=self.dtype, name="dense_0")(
            nn.LayerNorm(dtype=layer_dtype(self.dtype), name="norm")(x)
        )
        h = nonlinearity(self, h, "preactivation", "prelu")
        h = dropout(h, self.dropout, dropout_key, train=True)  # a key only while training
        return x + Dense(
            self.width, kernel_init=self.kernel_init, dtype=self.dtype, name="dense_1"
        )(h)


class ResMLP(HiddenUnits):
    """A residual MLP: embed, `depth` pre-norm residual blocks, a final norm and a linear head."""

    width: int
    depth: int
    num_outputs: int

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps inputs [B, *feature_shape] to outputs [B, num_outputs]."""
        kernel_init = kernel_initializer(self.initializer, self.init_stddev, self.init_scale)
        # The blocks' dropout key; None where the program has no dropout.
        block_key = dropout_key if train and not layers.is_python_zero(self.dropout) else None
        x = Dense(self.width, kernel_init=kernel_init, dtype=self.dtype, name="embed")(
            x.reshape((x.shape[0], -1))
        )
        for i in range(self.depth):
            key = jax.random.fold_in(block_key, i) if block_key is not None else None
            x = ResidualBlock(
                self.width,
                self.activation,
                kernel_init,
                self.negative_slope,
                self.dropout,
                self.dtype,
                name=f"block_{i}",
            )(x, key)
        x = nn.LayerNorm(dtype=layer_dtype(self.dtype), name="norm")(x)
        return Dense(self.num_outputs, kernel_init=kernel_init, dtype=self.dtype, name=HEAD)(x)


def build(model_cfg: Any, hparams: Any, num_outputs: int) -> ResMLP:
    """The family's builder: the net of `model_cfg` with the member's numeric hyperparameters."""
    return ResMLP(
        width=int(model_cfg.width),
        depth=int(model_cfg.depth),
        num_outputs=num_outputs,
        **model_fields.unit_settings(model_cfg, hparams),
    )


def preactivations(module: nn.Module, variables: Params, x: jax.Array) -> dict[str, jax.Array]:
    """Pre-activations [N, width] of each block's first Dense layer, in order."""
    _, variables = module.apply(variables, x, mutable=["intermediates"])
    sown = variables["intermediates"]
    return {f"block_{i}": sown[f"block_{i}"]["preactivation"][0] for i in range(module.depth)}


def layer_order(names: Sequence[str]) -> tuple:
    """embed, block_0 (norm, dense_0, prelu, dense_1), ..., norm, head; kernel before bias."""
    module, rest = names[0], names[1:]
    prefix, _, index = module.rpartition("_")
    if module == "embed":
        position: tuple = (0, 0)
    elif prefix == "block" and index.isdigit():
        position = (1, int(index))
    else:
        position = ({"norm": 2, HEAD: 3}.get(module, 4), 0)
    inner = {"norm": 0, "dense_0": 1, "prelu": 2, "dense_1": 3}
    return (position, module, [(inner.get(n, PARAM_ORDER.get(n, 5)), n) for n in rest])


# Pre-norm residual blocks of `width` units.
FIELDS = (
    model_fields.integer("width", 100, 1, 2**31 - 1, "the width of the residual blocks"),
    model_fields.integer("depth", 2, 1, 10**4, "residual blocks"),
    *model_fields.UNITS,
)

FAMILY = ModelFamily(
    name="resmlp",
    build=build,
    fields=FIELDS,
    preactivations=preactivations,
    activation_field="activation",
    layer_order=layer_order,
    transfer_fields=("activation",),
)
