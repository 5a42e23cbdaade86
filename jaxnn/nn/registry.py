"""The model families by name (`model.name`): adding a family is its own module and one line here."""

from __future__ import annotations

from jaxnn.nn import cnn1d, mlp, recurrent, resmlp
from jaxnn.nn.activations import lookup
from jaxnn.nn.family import ModelFamily

MODEL_FAMILIES: dict[str, ModelFamily] = {
    "mlp": mlp.FAMILY,
    "cnn1d": cnn1d.FAMILY,
    "gru": recurrent.GRU_FAMILY,
    "lstm": recurrent.LSTM_FAMILY,
    "rnn": recurrent.RNN_FAMILY,
    "resmlp": resmlp.FAMILY,
}


def family(name: str) -> ModelFamily:
    """The registered family `name`; a ConfigError for `model.name` lists the known ones."""
    return lookup(MODEL_FAMILIES, name, "model.name")
