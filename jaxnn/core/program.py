"""The static description of a run: model, loss, metrics, optimiser and loop lengths (`Program`).

Two members that share a Program share one compiled program; what differs between them
(keys, numeric hyperparameters) lives in their `jaxnn.core.train.TrainState`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, Unpack

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxnn import run_spec, validation
from jaxnn.config.fields import run_steps
from jaxnn.data import Dataset
from jaxnn.data import augment as augment_lib
from jaxnn.data.preprocessing import Preprocessing
from jaxnn.nn import ema, losses, optimizers
from jaxnn.nn import family as family_lib
from jaxnn.nn.metrics import Metric, metric_for_task

Params = Any
HParams = dict[str, jax.Array]
ModelState = family_lib.ModelState
# apply_fn(params, model_state, x, hparams, *, train, dropout_key) -> (outputs, model state)
ApplyFn = Callable[..., tuple[jax.Array, ModelState]]


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a training run."""

    family: family_lib.ModelFamily
    model_config: ml_collections.FrozenConfigDict
    optimizer_config: ml_collections.FrozenConfigDict
    loss: losses.PerExampleLoss  # (outputs [B, O], targets) -> [B]
    predict: losses.Predict  # outputs [B, O] -> what the ensemble averages
    metrics: tuple[tuple[str, Metric], ...]  # the task's built-in ones, then the user's
    user_optimizer: Callable[[Mapping[str, Any]], optax.GradientTransformation] | None
    task: str
    num_outputs: int
    feature_shape: tuple[int, ...]
    num_train: int
    batch_size: int
    total_steps: int
    eval_every: int
    patience: int
    keep: str  # 'best': lowest-validation-loss weights; 'last': the latest evaluated ones
    # what training did to the raw data (a predictor applies it to raw inputs)
    preprocessing: Preprocessing
    # hyperparameters left out (a `zero_removes` field that is zero and not swept is passed to
    # the model as a Python 0.0)
    removed: tuple[str, ...] = ()
    head: tuple[str, ...] = family_lib.DEFAULT_HEAD
    target_std: tuple[float, ...] = ()
    # transfer learning (body / head labels); the frozen labels' model state is frozen too
    param_labels: Callable[[Params], Any] | None = None
    frozen_labels: tuple[str, ...] = ()
    label_lr_scales: tuple[tuple[str, float], ...] = ()
    augmentation: augment_lib.Augmentation = augment_lib.NO_AUGMENTATION
    # batches per optimiser update (optax.MultiSteps); total_steps counts the batches
    accumulate_steps: int = 1
    # optimizer.ema_decay when members keep averaged weights (> 0, or swept or searched: each
    # member then carries its own), else None
    ema_decay: float | None = None

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)

    @property
    def metric(self) -> str:
        """The headline metric of the task (accuracy or r2)."""
        return metric_for_task(self.task)

    @property
    def metric_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.metrics)

    def greater_is_better(self, name: str) -> bool:
        """Whether a larger value of `name` ('loss', a metric, or 'val_<that>') is better."""
        name = name.removeprefix("val_").removeprefix("train_").removeprefix("test_")
        return name != "loss" and dict(self.metrics)[name].greater_is_better

    def model(self, hparams: Mapping[str, jax.Array]) -> nn.Module:
        """The member's Module: the program's architecture with the member's values."""
        return family_lib.member_model(
            self.family, self.model_config, self.removed, self.num_outputs, hparams
        )

    def gradient_weight(self, global_step: jax.Array) -> jax.Array:
        """The weight of step `global_step`'s gradient among the `accumulate_steps` batches of its
        update (float32 []): its share of their examples times their number, so that the mean
        that optax.MultiSteps takes weighs every example alike (1 when the batches are full;
        a short last batch of an epoch counts by its examples)."""
        k = self.accumulate_steps
        first = global_step - global_step % k
        within = (first + jnp.arange(k, dtype=jnp.int32)) % self.steps_per_epoch
        examples = jnp.clip(self.num_train - within * self.batch_size, 0, self.batch_size)
        own = examples[global_step % k]
        return (k * own / jnp.sum(examples)).astype(jnp.float32)

    def layer_order(self) -> Callable[[Any], Any] | None:
        return self.family.layer_order


class TransferArgs(TypedDict, total=False):
    """A transfer's labels of the parameters (`Program`'s fields of the same names)."""

    param_labels: Any
    frozen_labels: tuple[str, ...]
    label_lr_scales: tuple[tuple[str, float], ...]


def make_program(
    spec: run_spec.RunSpec, data: Dataset, **transfer: Unpack[TransferArgs]
) -> Program:
    """The static description of a run of `spec` (one structural variant at most) on `data`,
    once the config is checked on the data (`validation.check_against_data`).

    Raises:
      ConfigError: the spec has several structural variants, or a shape does not fit the data.
    """
    spec = spec.single_program("a Program")
    steps = run_steps(spec.config.training, data.num_train)
    validation.check_against_data(spec, data, steps)
    config = spec.config
    target_std = (
        () if data.target_std is None else tuple(float(s) for s in np.ravel(data.target_std))
    )
    loss, predict, metrics = losses.task_functions(config, spec.components, data.task, target_std)
    return Program(
        family=spec.family,
        model_config=ml_collections.FrozenConfigDict(config.model),
        optimizer_config=ml_collections.FrozenConfigDict(config.optimizer),
        loss=loss,
        predict=predict,
        metrics=metrics,
        user_optimizer=spec.components.optimizer,
        task=data.task,
        num_outputs=data.num_outputs,
        feature_shape=tuple(data.feature_shape),
        num_train=data.num_train,
        batch_size=int(config.training.batch_size),
        total_steps=steps,
        eval_every=int(config.training.eval_every),
        patience=int(config.training.patience),
        keep=str(config.training.keep),
        removed=spec.removed_hparams,
        head=spec.head,
        target_std=target_std,
        preprocessing=data.preprocessing
        or Preprocessing.identity(data.task, tuple(data.feature_shape), data.num_outputs),
        augmentation=augment_lib.from_config(config.augment, spec.varied_fields),
        accumulate_steps=int(config.optimizer.accumulate_steps),
        ema_decay=ema.run_decay(config.optimizer, spec.varied_fields),
        **transfer,
    )


def build(
    spec: run_spec.RunSpec, data: Dataset, **transfer: Unpack[TransferArgs]
) -> tuple[Program, ApplyFn, Callable[[HParams], optax.GradientTransformation]]:
    """The program of a run with its apply function (`family.make_apply_fn`) and optimiser
    factory (`optimizers.tx_factory`)."""
    program = make_program(spec, data, **transfer)
    apply_fn = family_lib.make_apply_fn(program.model, frozen_body=bool(program.frozen_labels))
    make_tx = optimizers.tx_factory(
        program.optimizer_config,
        program.user_optimizer,
        total_steps=program.total_steps,
        eval_every=program.eval_every,
        accumulate_steps=program.accumulate_steps,
        param_labels=program.param_labels,
        frozen_labels=program.frozen_labels,
        label_lr_scales=program.label_lr_scales,
    )
    return program, apply_fn, make_tx
