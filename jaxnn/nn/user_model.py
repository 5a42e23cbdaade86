"""A user's own model with the numeric settings it declares per member (`UserModel`).

`jaxnn.UserModel(factory, fields={"dropout": 0.0})` tells jaxnn that `factory(hparams)` reads
`hparams["dropout"]`, a traced float32 scalar that each member may set differently inside one
compiled program (`jaxnn.Dropout` takes such a rate). Such a field is a `model.<name>` field
like a family's own: swept (`sweep="model.dropout=[0.0, 0.5]"`), searched (`restarts.search`),
selected, reported in summary.json, checkpointed and exported with the member's hyperparameters.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import flax.linen as nn
import ml_collections

from jaxnn.config.fields import NumericField, is_number
from jaxnn.errors import ConfigError
from jaxnn.nn import registry
from jaxnn.nn.family import DEFAULT_HEAD, HParams, ModelFamily

ModelFactory = Callable[[HParams], nn.Module]
# model fields that say which model it is, never a member's number
_RESERVED = ("name", "head")


# eq=False: hashed by identity, as the factory it holds is (its fields are a dict).
@dataclasses.dataclass(frozen=True, eq=False)
class UserModel:
    """A factory `hparams -> flax.linen.Module` and the per-member numbers it reads.

    Attributes:
      factory: called once per member with `hparams`: declared field name -> member's value.
      fields: field name -> its default (a finite number); the field is `model.<name>`.

    Raises:
      ConfigError: a factory that is not callable (a Module instance reads no hparams), a name
        that is not an identifier or is `name` / `head`, a name of the schema's non-numeric
        `model` fields (hidden, activation, ...), or a default that is not a finite number.
    """

    factory: ModelFactory
    fields: Mapping[str, float]

    def __post_init__(self) -> None:
        if isinstance(self.factory, nn.Module) or not callable(self.factory):
            raise ConfigError(
                "UserModel(factory, fields=...) needs a factory hparams -> flax.linen.Module "
                f"that reads the fields, got {type(self.factory).__name__}"
            )
        if not isinstance(self.fields, Mapping) or not self.fields:
            raise ConfigError(
                "UserModel fields must map each field's name to its default, e.g. "
                f"{{'dropout': 0.0}}, got {self.fields!r}"
            )
        schema = registry.model_defaults()
        for name, default in self.fields.items():
            if not isinstance(name, str) or not name.isidentifier() or name in _RESERVED:
                raise ConfigError(
                    f"UserModel field {name!r}: a field's name must be a Python identifier "
                    f"other than {' and '.join(_RESERVED)} (it becomes model.<name>)"
                )
            if name in schema and not is_number(schema[name]):
                raise ConfigError(
                    f"UserModel field {name!r}: model.{name} is a built-in field that is not a "
                    "number; give the model's field another name"
                )
            if not is_number(default):
                raise ConfigError(
                    f"UserModel field {name!r}: its default must be a finite number, got "
                    f"{default!r}"
                )

    @property
    def numeric_fields(self) -> tuple[NumericField, ...]:
        """One `NumericField` per declared field (any finite number is allowed)."""
        return tuple(
            NumericField(f"model.{name}", name, lambda v: True, "must be a finite number")
            for name in self.fields
        )

    def family(self, *, head: Sequence[str] = DEFAULT_HEAD) -> ModelFamily:
        """The model as a family whose numeric fields are the declared ones."""
        factory = self.factory
        return ModelFamily(
            name="user",
            build=lambda model_config, hparams, num_outputs: factory(hparams),
            numeric_fields=self.numeric_fields,
            head=tuple(head),
        )

    def values(self, model_config: ml_collections.ConfigDict) -> dict[str, float]:
        """Each field's value in a run of `model_config`: the config's where it sets the field
        (for a name the schema has too: to anything but the schema's default), else the
        declared default.

        Raises:
          ConfigError: a config value that is not a finite number.
        """
        values = {}
        schema = registry.model_defaults()
        for name, default in self.fields.items():
            given = model_config.get(name, default)
            if name in schema and given == schema[name]:
                given = default
            if not is_number(given):
                raise ConfigError(f"model.{name} must be a finite number, got {given!r}")
            values[name] = given
        return values
