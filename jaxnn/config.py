"""The one default config that carries jaxnn's whole schema, and its validation.

Every experiment starts from `default_config()` and changes what it needs, so any field
can be overridden from the command line of any experiment (`--config.FIELD=VALUE`).
"""

from __future__ import annotations

import math

import ml_collections

from jaxnn import data, losses, models, optim
from jaxnn.errors import ConfigError

BATCH_ORDERS = ("independent", "shared")
KEEP_WEIGHTS = ("best", "last")
TRANSFER_MODES = ("finetune", "feature_extraction")
TRANSFER_RESTORES = ("body", "all")


def default_config() -> ml_collections.ConfigDict:
    """Returns the default config: an MLP on MNIST-1D trained by SGD with momentum."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    config.dataset.name = "mnist1d"
    config.dataset.data_dir = ""
    config.dataset.validation_fraction = 0.1
    config.dataset.standardize = True
    config.dataset.classes = ()
    config.dataset.train_per_class = 0
    config.dataset.split_seed = 0

    config.model = ml_collections.ConfigDict()
    config.model.hidden = (100, 100)
    config.model.activation = "relu"
    config.model.negative_slope = 0.01
    config.model.init = "he_normal"
    config.model.init_stddev = 0.01
    config.model.init_scale = 1.0
    config.model.dropout = 0.0
    config.model.input_dropout = 0.0

    config.loss = "cross_entropy"
    config.huber_delta = 1.0

    config.optimizer = ml_collections.ConfigDict()
    config.optimizer.name = "momentum"
    config.optimizer.learning_rate = 0.05
    config.optimizer.momentum = 0.9
    config.optimizer.schedule = "constant"
    config.optimizer.warmup_steps = 0
    config.optimizer.decay_rate = 0.1
    config.optimizer.boundaries = (0.5, 0.75)
    config.optimizer.end_fraction = 0.0
    config.optimizer.weight_decay = 0.0
    config.optimizer.clip_norm = 0.0

    config.training = ml_collections.ConfigDict()
    config.training.batch_size = 100
    config.training.steps = 0
    config.training.epochs = 0
    config.training.eval_every = 500
    config.training.patience = 0
    config.training.keep = "best"
    config.training.batch_order = "independent"

    config.restarts = ml_collections.ConfigDict()
    config.restarts.num = 1
    config.restarts.sweep = ""
    config.restarts.select_by = "val_loss"
    config.restarts.tolerance = 0.05

    config.init_from = ml_collections.ConfigDict()
    config.init_from.workdir = ""
    config.init_from.member = "best"
    config.init_from.mode = "finetune"
    config.init_from.restore = "body"
    config.init_from.body_lr_scale = 1.0

    config.checkpoint = ml_collections.ConfigDict()
    config.checkpoint.every_steps = 0
    config.checkpoint.keep = 2

    config.diagnostics = ml_collections.ConfigDict()
    config.diagnostics.enabled = False

    # Scale-out (jaxnn.sharding): the member axis sharded over a mesh of devices.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.num_devices = 0  # 0 = every device of every process
    config.mesh.data = "replicated"  # or "batch": splits sharded along their example axis
    return config


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every field that can be checked without data; raises ConfigError on the first mistake."""
    # Imported here: sweep and sharding import this module (through train) for the schema.
    from jaxnn import sharding, sweep

    _require(isinstance(config.seed, int), f"seed must be an integer, got {config.seed!r}")
    data.validate_dataset_config(config.dataset)
    models.validate_model_config(config.model)
    losses.validate_loss_config(config.loss, config.huber_delta)
    optim.validate_optimizer_config(config.optimizer)
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


def metric_for_task(task: str) -> str:
    """The headline metric of a task: accuracy for classification, R2 for regression."""
    return "accuracy" if task == "classification" else "r2"


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
