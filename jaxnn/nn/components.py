"""Bring your own: the parts of a run a user may supply from Python instead of the config.

`Components` bundles a user's own model, per-example loss, metrics, prediction function and
optimiser factory, which `jaxnn.fit`, `fit_ensemble`, `fit_variants` and `run` take as keyword
arguments (`ComponentArgs`); every phase of a run (restarts, sweeps, selection, early stopping,
checkpoints, export, transfer) treats them like the built-in ones.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, Unpack

import jax
import optax

from jaxnn.nn.metrics import Metric, MetricFn, as_metric

HParams = Mapping[str, jax.Array]


class ComponentArgs(TypedDict, total=False):
    """The keyword arguments `fit`, `fit_ensemble`, `fit_variants` and `run` take for a user's
    own parts (each described under `Components`; leave one out to keep the config's)."""

    model: Any
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None
    metrics: Mapping[str, Metric | MetricFn] | None
    predict: Callable[[jax.Array], jax.Array] | None
    optimizer: Callable[[HParams], optax.GradientTransformation] | None


@dataclasses.dataclass(frozen=True)
class Components:
    """A user's own parts of a run; None (or empty) keeps the config's.

    Attributes:
      model: a `flax.linen.Module`, a factory `hparams -> Module`, a `jaxnn.UserModel` (a
        factory with the per-member numbers it declares, `model.<name>` fields) or a
        `jaxnn.ModelFamily`. Its outputs are [B, num_outputs] (the class logits, or the
        regression targets).
      loss: per-example loss (outputs [B, O], targets [B] int labels or [B, O]) -> [B].
      metrics: name -> `Metric` or function (outputs, targets) -> scalar (greater is better).
      predict: outputs [B, O] -> what the ensemble averages (default: softmax probabilities for
        classification with the config's or a user's loss, the outputs for regression).
      optimizer: factory `hparams -> optax.GradientTransformation`; hparams hold the member's
        numeric hyperparameters (learning_rate, weight_decay, ...) as traced scalars (Python
        code that asks one for a Python value is refused in one line,
        `jaxnn.nn.optimizers.user_optimizer`); `optimizer.accumulate_steps` wraps it too.
    """

    model: Any = None
    loss: Callable[[jax.Array, jax.Array], jax.Array] | None = None
    metrics: tuple[tuple[str, Metric], ...] = ()
    predict: Callable[[jax.Array], jax.Array] | None = None
    optimizer: Callable[[HParams], optax.GradientTransformation] | None = None

    @classmethod
    def of(cls, **args: Unpack[ComponentArgs]) -> Components:
        """Components from the keyword arguments of fit / fit_ensemble / fit_variants / run.

        Raises:
          TypeError: a keyword that is not one of ComponentArgs' (as a misspelt argument).
        """
        unknown = sorted(set(args) - set(ComponentArgs.__annotations__))
        if unknown:
            raise TypeError(f"unexpected keyword argument {unknown[0]!r}")
        metrics = args.get("metrics") or {}
        return cls(
            model=args.get("model"),
            loss=args.get("loss"),
            metrics=tuple((str(name), as_metric(fn)) for name, fn in metrics.items()),
            predict=args.get("predict"),
            optimizer=args.get("optimizer"),
        )

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.metrics)
