"""The model families by name (`model.name`), and the `model` section they declare together.

Adding a family is its own module (its Module, its fields' specs, its `FAMILY`) and one line
here: `default_config()` builds `config.model` from the registered families' specs.
"""

from __future__ import annotations

from typing import Any

from jaxnn.errors import ConfigError
from jaxnn.nn import cnn1d, cnn2d, mlp, model_fields, recurrent, resmlp, resnet
from jaxnn.nn.family import ModelConfig, ModelFamily
from jaxnn.nn.lookup import lookup
from jaxnn.nn.model_fields import FieldSpec

MODEL_FAMILIES: dict[str, ModelFamily] = {
    "mlp": mlp.FAMILY,
    "cnn1d": cnn1d.FAMILY,
    "gru": recurrent.GRU_FAMILY,
    "lstm": recurrent.LSTM_FAMILY,
    "rnn": recurrent.RNN_FAMILY,
    "resmlp": resmlp.FAMILY,
    "cnn2d": cnn2d.FAMILY,
    "resnet": resnet.FAMILY,
}


def family(name: str) -> ModelFamily:
    """The registered family `name`; a ConfigError for `model.name` lists the known ones."""
    return lookup(MODEL_FAMILIES, name, "model.name")


def model_fields_by_name() -> dict[str, FieldSpec]:
    """Every `model` field: the universal ones, then each registered family's, in order.

    Raises:
      ConfigError: two families (or a family and the universal fields) declare one name with
        different specs; a flat `model.NAME` has one default and one rule.
    """
    specs = {spec.name: spec for spec in model_fields.UNIVERSAL}
    owners = dict.fromkeys(specs, "every family")
    for name, registered in MODEL_FAMILIES.items():
        for spec in registered.fields or ():
            known = specs.setdefault(spec.name, spec)
            owners.setdefault(spec.name, name)
            if known != spec:
                raise ConfigError(
                    f"model.{spec.name} is declared by the {owners[spec.name]} and {name} "
                    "families with different specs: share one spec (jaxnn.nn.model_fields) "
                    "or give one of them another name"
                )
    return specs


def model_defaults() -> dict[str, Any]:
    """The `model` section of `default_config()`: every field at its default."""
    return {name: spec.default for name, spec in model_fields_by_name().items()}


def refuse_other_families_fields(model_cfg: ModelConfig, family: ModelFamily) -> None:
    """A `model` field that only other families read must keep its default (a family that
    does not declare its fields, a user's, is not checked).

    Raises:
      ConfigError: naming the first such field, the families that read it and the way out.
    """
    if family.fields is None:
        return
    specs = model_fields_by_name()
    own = {spec.name for spec in (*family.fields, *model_fields.UNIVERSAL)}
    for field in model_cfg:
        readers = [
            name
            for name, other in MODEL_FAMILIES.items()
            if field in {spec.name for spec in other.fields or ()} and name != family.name
        ]
        if field in own or not readers:
            continue
        default = specs[field].default
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
