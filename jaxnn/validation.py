"""Validation in one place: every check of a config that can be made before data is loaded
(`validate`), and those that need the loaded data set (`check_against_task`)."""

from __future__ import annotations

import math

import ml_collections

from jaxnn import data
from jaxnn.config.schema import BATCH_ORDERS, KEEP_WEIGHTS, TRANSFER_MODES, TRANSFER_RESTORES
from jaxnn.errors import ConfigError
from jaxnn.nn import losses, models, optimizers
from jaxnn.nn.metrics import metric_for_task


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every field that can be checked without data; raises ConfigError on the first mistake."""
    # Imported here: sweep and sharding import this module (through train) for the schema.
    from jaxnn.config import sweep
    from jaxnn.parallel import sharding

    _require(isinstance(config.seed, int), f"seed must be an integer, got {config.seed!r}")
    data.validate_dataset_config(config.dataset)
    models.validate_model_config(config.model)
    losses.validate_loss_config(config.loss, config.huber_delta)
    optimizers.validate_optimizer_config(config.optimizer)
    _validate_training(config.training)
    _validate_restarts(config.restarts)
    _validate_init_from(config.init_from)
    _require(
        config.checkpoint.every_steps >= 0,
        f"checkpoint.every_steps must be >= 0 (0 = at every evaluation), "
        f"got {config.checkpoint.every_steps}",
    )
    _require(
        config.checkpoint.keep >= 1, f"checkpoint.keep must be >= 1, got {config.checkpoint.keep}"
    )
    sweep.parse_sweep(config.restarts.sweep, config)
    if "mesh" in config:
        sharding.validate_mesh_config(config.mesh)


def _validate_training(training: ml_collections.ConfigDict) -> None:
    _require(
        training.batch_size >= 1, f"training.batch_size must be >= 1, got {training.batch_size}"
    )
    _require(training.steps >= 0, f"training.steps must be >= 0, got {training.steps}")
    _require(training.epochs >= 0, f"training.epochs must be >= 0, got {training.epochs}")
    _require(
        (training.steps > 0) != (training.epochs > 0),
        "exactly one of training.steps and training.epochs must be > 0, got "
        f"steps={training.steps} and epochs={training.epochs}",
    )
    _require(
        training.eval_every >= 1, f"training.eval_every must be >= 1, got {training.eval_every}"
    )
    _require(
        training.patience >= 0, f"training.patience must be >= 0 (0 = off), got {training.patience}"
    )
    _require(
        training.keep in KEEP_WEIGHTS,
        f"training.keep must be one of {', '.join(KEEP_WEIGHTS)}, got {training.keep!r}",
    )
    _require(
        training.keep == "best" or training.patience == 0,
        "training.patience stops a member at its best validation loss: it needs "
        f"training.keep=best, got keep={training.keep!r} with patience={training.patience}",
    )
    _require(
        training.batch_order in BATCH_ORDERS,
        f"training.batch_order must be one of {', '.join(BATCH_ORDERS)}, got {training.batch_order!r}",
    )


def _validate_restarts(restarts: ml_collections.ConfigDict) -> None:
    _require(restarts.num >= 1, f"restarts.num must be >= 1, got {restarts.num}")
    _require(
        restarts.select_by in ("val_loss", "val_accuracy", "val_r2"),
        f"restarts.select_by must be one of val_loss, val_accuracy, val_r2, got {restarts.select_by!r}",
    )
    _require(
        math.isfinite(restarts.tolerance) and restarts.tolerance >= 0,
        f"restarts.tolerance must be a finite number >= 0, got {restarts.tolerance}",
    )


def _validate_init_from(init_from: ml_collections.ConfigDict) -> None:
    _require(
        init_from.mode in TRANSFER_MODES,
        f"init_from.mode must be one of {', '.join(TRANSFER_MODES)}, got {init_from.mode!r}",
    )
    _require(
        init_from.restore in TRANSFER_RESTORES,
        f"init_from.restore must be one of {', '.join(TRANSFER_RESTORES)}, got {init_from.restore!r}",
    )
    member = init_from.member
    _require(
        member == "best" or (member.isdigit()),
        f"init_from.member must be 'best' or a member index such as '3', got {member!r}",
    )
    _require(
        math.isfinite(init_from.body_lr_scale) and init_from.body_lr_scale >= 0,
        f"init_from.body_lr_scale must be a finite number >= 0, got {init_from.body_lr_scale}",
    )


def check_against_task(config: ml_collections.ConfigDict, task: str, num_train: int) -> None:
    """Checks the fields that depend on the loaded data set (task and size)."""
    losses.check_loss_for_task(config.loss, task)
    select_metric = config.restarts.select_by.removeprefix("val_")
    _require(
        select_metric == "loss" or select_metric == metric_for_task(task),
        f"restarts.select_by={config.restarts.select_by!r} does not apply to a {task} data set; "
        f"use val_loss or val_{metric_for_task(task)}",
    )
    _require(
        config.training.batch_size <= num_train,
        f"training.batch_size={config.training.batch_size} is larger than the training split "
        f"({num_train} examples)",
    )
