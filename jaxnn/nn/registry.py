"""The model families by name (`model.name`): adding a family is its own module and one line here."""

from __future__ import annotations

from typing import Any

from jaxnn.errors import ConfigError
from jaxnn.nn import cnn1d, mlp, model_fields, recurrent, resmlp
from jaxnn.nn.activations import lookup
from jaxnn.nn.family import ModelConfig, ModelFamily

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


def refuse_other_families_fields(model_cfg: ModelConfig, family: ModelFamily) -> None:
    """A `model` field that only other families read must keep its default (a family that
    does not declare its fields, a user's, is not checked).

    Raises:
      ConfigError: naming the first such field, the families that read it and the way out.
    """
    if family.config_fields is None:
        return
    own = {*family.config_fields, *model_fields.UNIVERSAL}
    for field in model_cfg:
        readers = [
            name
            for name, other in MODEL_FAMILIES.items()
            if field in (other.config_fields or ()) and name != family.name
        ]
        if field in own or not readers:
            continue
        default = model_fields.schema_default(field)
        if _canonical(model_cfg[field]) != _canonical(default):
            kind = "family" if len(readers) == 1 else "families"
            raise ConfigError(
                f"model.{field} is read by the {', '.join(readers)} {kind}, not by "
                f"model.name={family.name}: leave it at its default {default!r} or set "
                f"model.name={readers[0]}"
            )


def _canonical(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_canonical(item) for item in value)
    return value
