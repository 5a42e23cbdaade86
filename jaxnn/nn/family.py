"""The model-family contract: what jaxnn needs to know to train, sweep, split and describe a model.

A family is one `ModelFamily` value, registered by name in `jaxnn.nn.registry` (a user's own
Module becomes one through `user_family`). A Module's model state is every collection but
`NOT_STATE` (`split_variables`): train mode writes it, evaluation only reads it; nothing is
declared (docs/architecture.md, "Model state").
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax

from jaxnn.config.fields import NumericField
from jaxnn.nn import model_fields, precision
from jaxnn.nn.model_fields import FieldSpec

Params = Any
# collection -> that collection's variables, e.g. {'batch_stats': {'BatchNorm_0': {'mean', 'var'}}}
ModelState = dict[str, Any]
ModelConfig = Any  # the `model` section of a config
HParams = Mapping[str, float | jax.Array]
Builder = Callable[[ModelConfig, HParams, int], nn.Module]
# preactivations(module, variables, x) -> hidden layer name -> pre-activations [N, width], in
# order; `variables` are {"params": ..., **model state} (BatchNorm's statistics, read not updated).
Preactivations = Callable[[nn.Module, Params, jax.Array], dict[str, jax.Array]]
DEFAULT_HEAD = ("head",)
# Collections of a Module's variables that are not a member's model state: its parameters,
# values sown for inspection, and perturbation slots (zeros that exist for gradients).
NOT_STATE = frozenset({"params", "intermediates", "perturbations"})


@dataclasses.dataclass(frozen=True)
class ModelFamily:
    """A model family (every field's contract: docs/architecture.md, "Model family")."""

    name: str
    build: Builder
    numeric_fields: tuple[NumericField, ...] = ()
    structural_fields: tuple[str, ...] = ()
    head: tuple[str, ...] = DEFAULT_HEAD
    validate: Callable[[ModelConfig], None] | None = None
    preactivations: Preactivations | None = None
    activation_field: str | None = None
    layer_order: Callable[[Sequence[str]], Any] | None = None
    transfer_fields: tuple[str, ...] = ()
    check_inputs: Callable[[ModelConfig, tuple[int, ...]], None] | None = None
    fields: tuple[FieldSpec, ...] | None = None

    def __post_init__(self) -> None:
        if self.fields is None:
            return
        derived = {
            "numeric_fields": tuple(s.rule for s in self.fields if s.sweep == model_fields.MEMBER),
            "structural_fields": tuple(
                f"model.{s.name}" for s in self.fields if s.sweep == model_fields.STRUCTURAL
            ),
        }
        for name, value in derived.items():
            if getattr(self, name) not in ((), value):
                raise TypeError(f"ModelFamily {self.name}: {name} come from its fields' specs")
            object.__setattr__(self, name, value)
        if self.validate is None:
            object.__setattr__(
                self, "validate", functools.partial(model_fields.check, specs=self.fields)
            )


def user_family(model: Any, *, head: Sequence[str] = DEFAULT_HEAD) -> ModelFamily:
    """The family of a user's own model: a `ModelFamily` (used as it is), a `flax.linen.Module`
    (every member builds it), or a factory `hparams -> Module` (called with each member's
    numeric hyperparameters, e.g. hparams['learning_rate'], as traced scalars); `head`: the
    top-level parameter names of its head (for transfer learning)."""
    if isinstance(model, ModelFamily):
        return model
    validate: Callable[[ModelConfig], None] | None = None
    if isinstance(model, nn.Module):
        build: Builder = lambda model_config, hparams, num_outputs: model

        def validate(model_config: ModelConfig) -> None:
            """A Module given as it is can be checked before data: does it take model.dtype?"""
            precision.with_dtype(model, precision.compute_dtype(model_config))

    elif callable(model):
        build = lambda model_config, hparams, num_outputs: model(hparams)
    else:
        raise TypeError(
            f"model must be a flax.linen.Module, a factory hparams -> Module or a ModelFamily, "
            f"got {type(model).__name__}"
        )
    return ModelFamily(name="user", build=build, head=tuple(head), validate=validate)


@functools.cache
def _call_keywords(call: Callable[..., Any]) -> frozenset[str]:
    return frozenset(inspect.signature(call).parameters)


def _call_kwargs(module: nn.Module, *, train: bool, dropout_key: jax.Array | None) -> dict:
    offered = {
        "train": train,
        "deterministic": not train,
        "use_running_average": not train,
        "dropout_key": dropout_key if train else None,
    }
    accepted = _call_keywords(type(module).__call__)
    return {name: value for name, value in offered.items() if name in accepted}


def init_model(module: nn.Module, key: jax.Array, x: jax.Array) -> Any:
    """The Module's initial variables for inputs like `x` (in evaluation mode)."""
    return module.init(key, x, **_call_kwargs(module, train=False, dropout_key=None))


def split_variables(variables: Mapping[str, Any]) -> tuple[Params, ModelState]:
    """(params, model state) of a Module's variables: the state is every collection but those
    of `NOT_STATE` (empty for a Module without one)."""
    params = variables.get("params", {})
    state = {name: tree for name, tree in variables.items() if name not in NOT_STATE}
    return params, state


def apply_model(
    module: nn.Module,
    params: Params,
    x: jax.Array,
    *,
    model_state: ModelState | None = None,
    train: bool = False,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """Applies a Module the way its `__call__` asks for, reading (never writing) its state: only
    the keywords it declares are passed (docs/architecture.md, "Model family"), and a dropout
    key goes to `dropout_key=` or Flax's 'dropout' RNG stream. Returns the outputs [B,
    num_outputs] in float32, whatever dtype the Module computes in."""
    kwargs = _call_kwargs(module, train=train, dropout_key=dropout_key)
    rngs = {"dropout": dropout_key} if train and dropout_key is not None else None
    outputs = module.apply({"params": params, **(model_state or {})}, x, rngs=rngs, **kwargs)
    # A model that computes in bfloat16 (model.dtype) hands float32 outputs to the loss.
    return precision.outputs_in_float32(outputs)


def train_apply(
    module: nn.Module,
    params: Params,
    model_state: ModelState,
    x: jax.Array,
    *,
    dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, ModelState]:
    """Applies a Module in train mode with its state collections mutable.

    Returns:
      (outputs [B, num_outputs] in float32, the model state the Module leaves: every
      collection of `model_state`, as the Module wrote it, with the same structure).
    """
    if not model_state:
        return apply_model(module, params, x, train=True, dropout_key=dropout_key), model_state
    kwargs = _call_kwargs(module, train=True, dropout_key=dropout_key)
    rngs = {"dropout": dropout_key} if dropout_key is not None else None
    outputs, mutated = module.apply(
        {"params": params, **model_state}, x, rngs=rngs, mutable=list(model_state), **kwargs
    )
    return precision.outputs_in_float32(outputs), {name: mutated[name] for name in model_state}


def member_model(
    family: ModelFamily,
    model_config: ModelConfig,
    removed: tuple[str, ...],
    num_outputs: int,
    hparams: Mapping[str, Any],
) -> nn.Module:
    """A member's Module: the architecture with the member's numeric values (a `removed` one,
    left out of the program, is a Python 0.0)."""
    model_hparams = {
        f.hparam: 0.0 if f.hparam in removed else hparams[f.hparam] for f in family.numeric_fields
    }
    return family.build(model_config, model_hparams, num_outputs)


def make_apply_fn(
    model: Callable[[Mapping[str, Any]], nn.Module], *, frozen_body: bool
) -> Callable[..., tuple[jax.Array, ModelState]]:
    """apply_fn(params, model_state, x, hparams, *, train, dropout_key) -> (outputs
    [B, num_outputs], model state), for the members' Module `model(hparams)`.

    Train mode returns the state the Module wrote; otherwise it is returned as given. Feature
    extraction (a frozen body) of a Module with state trains in inference mode, as Keras runs a
    frozen base with `training=False`: the head learns from the features it will be evaluated
    on (BatchNorm normalising by the source's running statistics), and dropout is off.
    """

    def apply_fn(
        params: Params,
        model_state: ModelState,
        x: jax.Array,
        hparams: HParams,
        *,
        train: bool = False,
        dropout_key: jax.Array | None = None,
    ) -> tuple[jax.Array, ModelState]:
        module = model(hparams)
        if train and not (frozen_body and model_state):
            return train_apply(module, params, model_state, x, dropout_key=dropout_key)
        return apply_model(module, params, x, model_state=model_state), model_state

    return apply_fn


def _key_name(key: Any) -> str:
    for attribute in ("key", "name", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


def path_names(path: Any) -> list[str]:
    """A parameter path as names: ('params', 'head', 'kernel'), a jax key path or 'head/kernel'."""
    names = path.split("/") if isinstance(path, str) else [_key_name(k) for k in path]
    if names and names[0] == "params":
        names = names[1:]
    return names


def is_head_path(path: Sequence[Any] | str, head: Sequence[str] = DEFAULT_HEAD) -> bool:
    """Whether a parameter path belongs to the head (its top-level name is one of `head`)."""
    names = path_names(path)
    return bool(names) and names[0] in head


def body_head_labels(params: Params, head: Sequence[str] = DEFAULT_HEAD) -> Any:
    """A pytree like `params` whose leaves are 'head' or 'body' (labels for the optimiser)."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "head" if is_head_path(path, head) else "body", params
    )


def unmatched_head_names(params: Params, head: Sequence[str]) -> list[str]:
    """The names of `head` that are not a top-level parameter of `params`."""
    return [name for name in head if name not in params]
