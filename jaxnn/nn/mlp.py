"""The multilayer perceptron family (`model.name=mlp`).

Parameter names (its layer table and diagnostics rely on them): Dense layers `hidden_0`,
`hidden_1`, ... and `head`; PReLU slopes `prelu_{i}/negative_slope` (shape []). Transfer
learning treats every top-level module whose name is not `head` as the body.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxnn.nn import model_fields
from jaxnn.nn.dense import Dense
from jaxnn.nn.family import ModelFamily, Params
from jaxnn.nn.layers import PARAM_ORDER, HiddenUnits, dropout, kernel_initializer, nonlinearity

BODY_PREFIX = "hidden_"
HEAD = "head"
# fold_in tag of the input-dropout key (hidden layer i uses tag i).
INPUT_TAG = 1_000_000


class MLP(HiddenUnits):
    """A multilayer perceptron: hidden Dense layers with an activation, then a linear head."""

    hidden: Sequence[int]
    num_outputs: int
    input_dropout: float | jax.Array = 0.0

    @nn.compact
    def __call__(
        self, x: jax.Array, *, train: bool = False, dropout_key: jax.Array | None = None
    ) -> jax.Array:
        """Maps inputs [B, *feature_shape] to outputs [B, num_outputs]; dropout (after each hidden
        activation, and `input_dropout` on the inputs) only when training with a `dropout_key`.
        Pre-activations are sown as `intermediates/preactivation_{i}`."""
        kernel_init = kernel_initializer(self.initializer, self.init_stddev, self.init_scale)
        x = x.reshape((x.shape[0], -1))
        x = dropout(x, self.input_dropout, dropout_key, train=train, tag=INPUT_TAG)
        for i, width in enumerate(self.hidden):
            h = Dense(width, kernel_init=kernel_init, dtype=self.dtype, name=f"{BODY_PREFIX}{i}")(x)
            x = nonlinearity(self, h, f"preactivation_{i}", f"prelu_{i}")
            x = dropout(x, self.dropout, dropout_key, train=train, tag=i)
        return Dense(self.num_outputs, kernel_init=kernel_init, dtype=self.dtype, name=HEAD)(x)


def build(model_cfg: Any, hparams: Any, num_outputs: int) -> MLP:
    """The family's builder: the MLP of `model_cfg` with the member's numeric hyperparameters."""
    return MLP(
        hidden=tuple(model_cfg.hidden),
        num_outputs=num_outputs,
        input_dropout=hparams["input_dropout"],
        **model_fields.unit_settings(model_cfg, hparams),
    )


def preactivations(module: nn.Module, variables: Params, x: jax.Array) -> dict[str, jax.Array]:
    """Pre-activations [N, width] of every hidden layer, in order (no dropout)."""
    _, variables = module.apply(variables, x, mutable=["intermediates"])
    sown = variables["intermediates"]
    return {f"{BODY_PREFIX}{i}": sown[f"preactivation_{i}"][0] for i in range(len(module.hidden))}


def layer_order(names: Sequence[str]) -> tuple:
    """hidden_0, prelu_0, hidden_1, ..., head; kernel before bias."""
    module, rest = names[0], names[1:]
    prefix, _, index = module.rpartition("_")
    if prefix in ("hidden", "prelu") and index.isdigit():
        position: tuple = (0, int(index), prefix != "hidden")
    elif module == HEAD:
        position = (1, 0, False)
    else:
        position = (2, 0, False)
    return (position, module, [(PARAM_ORDER.get(n, 4), n) for n in rest])


INPUT_DROPOUT = model_fields.member(
    "input_dropout", 0.0, lambda v: 0.0 <= v < 1.0, "must be in [0, 1)", zero_removes=True
)
# The fields the MLP reads (jaxnn.nn.model_fields: all but input_dropout are shared).
FIELDS = (
    model_fields.HIDDEN, model_fields.ACTIVATION, model_fields.INIT, model_fields.INIT_STDDEV,
    model_fields.DROPOUT, INPUT_DROPOUT, model_fields.INIT_SCALE, model_fields.NEGATIVE_SLOPE,
)  # fmt: skip


FAMILY = ModelFamily(
    name="mlp",
    build=build,
    fields=FIELDS,
    preactivations=preactivations,
    activation_field="activation",
    layer_order=layer_order,
    transfer_fields=("activation",),
)
