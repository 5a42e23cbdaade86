"""The static description of a run: model, loss, optimiser and loop lengths (`Program`).

Two members that share a Program share one compiled program; what differs between them
(keys, numeric hyperparameters) lives in their `jaxnn.train.TrainState`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import ml_collections
import numpy as np
import optax

from jaxnn.config.sweep import NUMERIC_FIELDS, parse_sweep
from jaxnn.data import Dataset
from jaxnn.nn import models, optimizers
from jaxnn.nn.metrics import metric_for_task

Params = Any
HParams = dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class Program:
    """Everything static about a training run: model, loss, optimiser, loop lengths.

    Two members that share a Program share one compiled program; what differs between them
    (keys, numeric hyperparameters) lives in their TrainState.
    """

    model_config: ml_collections.FrozenConfigDict
    optimizer_config: ml_collections.FrozenConfigDict
    loss: str
    huber_delta: float
    task: str
    num_outputs: int
    feature_shape: tuple[int, ...]
    num_train: int
    batch_size: int
    total_steps: int
    eval_every: int
    patience: int
    keep: str  # 'best': lowest-validation-loss weights; 'last': the latest evaluated ones
    active_dropouts: tuple[str, ...]  # dropout hparams in the program (non-zero or swept)
    target_std: tuple[float, ...] = ()
    param_labels: Callable[[Params], Any] | None = None
    frozen_labels: tuple[str, ...] = ()
    label_lr_scales: tuple[tuple[str, float], ...] = ()

    @property
    def steps_per_epoch(self) -> int:
        return -(-self.num_train // self.batch_size)

    @property
    def num_chunks(self) -> int:
        return -(-self.total_steps // self.eval_every)

    @property
    def metric(self) -> str:
        return metric_for_task(self.task)


def total_steps(training: ml_collections.ConfigDict, num_train: int) -> int:
    """Steps of a run: `training.steps`, or `training.epochs` passes over the training split."""
    if training.steps > 0:
        return int(training.steps)
    steps_per_epoch = -(-num_train // training.batch_size)
    return int(training.epochs) * steps_per_epoch


def make_program(config: ml_collections.ConfigDict, data: Dataset, **transfer: Any) -> Program:
    """Builds the static description of a run of `config` on `data`.

    Args:
      config: the full run config (validated).
      data: the loaded data set.
      **transfer: param_labels / frozen_labels / label_lr_scales for transfer learning.
    """
    swept = parse_sweep(config.restarts.sweep, config).numeric
    target_std = (
        () if data.target_std is None else tuple(float(s) for s in np.ravel(data.target_std))
    )
    return Program(
        model_config=ml_collections.FrozenConfigDict(config.model),
        optimizer_config=ml_collections.FrozenConfigDict(config.optimizer),
        loss=config.loss,
        huber_delta=float(config.huber_delta),
        task=data.task,
        num_outputs=data.num_outputs,
        feature_shape=tuple(data.feature_shape),
        num_train=data.num_train,
        batch_size=int(config.training.batch_size),
        total_steps=total_steps(config.training, data.num_train),
        eval_every=int(config.training.eval_every),
        patience=int(config.training.patience),
        keep=str(config.training.keep),
        active_dropouts=tuple(
            name
            for name in ("dropout", "input_dropout")
            if config.model[name] > 0 or f"model.{name}" in swept
        ),
        target_std=target_std,
        **transfer,
    )


def base_hparams(config: ml_collections.ConfigDict) -> dict[str, float]:
    """The numeric hyperparameters of a member as the config states them (before any sweep)."""
    hparams = {}
    for field, name in NUMERIC_FIELDS.items():
        section, leaf = field.split(".")
        hparams[name] = float(config[section][leaf])
    return hparams


def model_for(program: Program, hparams: HParams) -> models.MLP:
    """The member's MLP: the program's architecture with the member's (possibly traced) values."""
    cfg = program.model_config
    return models.MLP(
        hidden=tuple(cfg.hidden),
        num_outputs=program.num_outputs,
        activation=cfg.activation,
        initializer=cfg.init,
        init_stddev=float(cfg.init_stddev),
        init_scale=hparams["init_scale"],
        negative_slope=hparams["negative_slope"],
        dropout=hparams["dropout"] if "dropout" in program.active_dropouts else 0.0,
        input_dropout=(
            hparams["input_dropout"] if "input_dropout" in program.active_dropouts else 0.0
        ),
    )


def make_apply_fn(program: Program) -> Callable[..., jax.Array]:
    """apply_fn(params, x, hparams, *, train, dropout_key) -> outputs [B, num_outputs]."""

    def apply_fn(
        params: Params,
        x: jax.Array,
        hparams: HParams,
        *,
        train: bool = False,
        dropout_key: jax.Array | None = None,
    ) -> jax.Array:
        model = model_for(program, hparams)
        return model.apply({"params": params}, x, train=train, dropout_key=dropout_key)

    return apply_fn


def make_tx_factory(program: Program) -> Callable[[HParams], optax.GradientTransformation]:
    """make_tx(hparams) -> the member's optimiser; its state structure ignores hparam values."""
    scales = dict(program.label_lr_scales) or None

    def make_tx(hparams: HParams) -> optax.GradientTransformation:
        return optimizers.make_optimizer(
            program.optimizer_config,
            hparams,
            total_steps=program.total_steps,
            param_labels=program.param_labels,
            label_lr_scales=scales,
            frozen_labels=program.frozen_labels,
        )

    return make_tx


def build(
    config: ml_collections.ConfigDict, data: Dataset, **transfer: Any
) -> tuple[Program, Callable[..., jax.Array], Callable[[HParams], optax.GradientTransformation]]:
    """The program of a run with its apply function and optimiser factory."""
    program = make_program(config, data, **transfer)
    return program, make_apply_fn(program), make_tx_factory(program)
