"""The config schema: `default_config()`, the one config that carries every field jaxnn reads.

Every experiment starts from `default_config()` and changes what it needs, so any field can be
overridden from the command line of any experiment (`--config.FIELD=VALUE`). This module is a
leaf: it imports nothing from jaxnn at import time (the rules that check a config live in
`jaxnn.validation`); the `model` section comes from the model families' own specs, read when
`default_config()` runs.

A field is added here only with a default that reproduces what runs did before it existed: a
config recorded by an older run is upgraded with these defaults (`jaxnn.config.upgrade`).
"""

from __future__ import annotations

import ml_collections

BATCH_ORDERS = ("independent", "shared")
KEEP_WEIGHTS = ("best", "last")
TRANSFER_MODES = ("finetune", "feature_extraction")
TRANSFER_RESTORES = ("body", "all")
# mesh.data: splits replicated on every device, or sharded along their example axis.
DATA_MODES = ("replicated", "batch")


def _model_section() -> dict:
    # The families import JAX: imported here, when a config is made, `import jaxnn` has run (it
    # is this package's parent) and split the CPU before JAX starts, as it must.
    from jaxnn.nn import registry

    return registry.model_defaults()


def default_config() -> ml_collections.ConfigDict:
    """Returns the default config: an MLP on MNIST-1D trained by SGD with momentum."""
    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = ml_collections.ConfigDict()
    # a local data set (mnist1d, digits, diabetes, friedman1; images: digits_images,
    # mnist_subset), a TFDS one, npz:PATH or csv:PATH
    config.dataset.name = "mnist1d"
    config.dataset.data_dir = ""
    # npz / csv files (jaxnn.data.files): the target array or column ("" = y / the last
    # column), the test split carved from a file that has none, the task ("" = inferred)
    config.dataset.target = ""
    config.dataset.test_fraction = 0.2
    config.dataset.task = ""
    config.dataset.validation_fraction = 0.1
    config.dataset.standardize = True
    config.dataset.classes = ()
    config.dataset.train_per_class = 0
    config.dataset.split_seed = 0
    # One fixed random permutation of the positions (axis 1) of every split; 0 = off.
    config.dataset.permute_seed = 0
    # Delete the prepared files in data_dir and prepare them again (damaged or stale data).
    config.dataset.rebuild = False

    # The model family (`model.name`, default mlp) and the fields of every registered family,
    # each declared with its default by the family that reads it (jaxnn.nn.model_fields,
    # jaxnn.nn.registry, docs/models.md); model.head, model.dtype: every family's.
    config.model = ml_collections.ConfigDict(_model_section())

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
    # The optimisers' own settings (jaxnn.nn.optimizers reads each for the optimisers named).
    config.optimizer.b1 = 0.9  # adam, adamw: first-moment decay
    config.optimizer.b2 = 0.999  # adam, adamw: second-moment decay
    config.optimizer.eps = 1e-8  # adam, adamw, rmsprop: added to the denominator
    config.optimizer.rms_decay = 0.9  # rmsprop: decay of the squared-gradient average
    # schedule=reduce_on_plateau (optax.contrib): every plateau_accumulation steps (0 = every
    # training.eval_every steps) the mean training-batch loss is checked; after
    # plateau_patience checks without a relative improvement of plateau_rtol the member's
    # learning rate is multiplied by plateau_factor, then plateau_cooldown checks are skipped.
    config.optimizer.plateau_factor = 0.1
    config.optimizer.plateau_patience = 5
    config.optimizer.plateau_cooldown = 0
    config.optimizer.plateau_rtol = 1e-4
    config.optimizer.plateau_accumulation = 0
    # Gradient accumulation (optax.MultiSteps): every accumulate_steps training steps (batches)
    # make one optimiser update from their averaged gradient; training.steps counts batches.
    config.optimizer.accumulate_steps = 1
    # Averaged weights (jaxnn.nn.ema): decay of the exponential moving average of each member's
    # weights that evaluation, selection and export use; 0 = off; per member in a sweep.
    config.optimizer.ema_decay = 0.0

    config.training = ml_collections.ConfigDict()
    config.training.batch_size = 100
    config.training.steps = 0
    config.training.epochs = 0
    config.training.eval_every = 500
    config.training.patience = 0
    config.training.keep = "best"
    config.training.batch_order = "independent"

    # Augmentation of training batches inside the jitted step (jaxnn.data.augment); 0 = off.
    config.augment = ml_collections.ConfigDict()
    # images [H, W, C]: random crops of the image padded by this many zero pixels per side
    config.augment.crop = 0
    config.augment.flip = False  # images: mirrored left to right with probability 1/2
    config.augment.shift = 0  # random shifts of up to this many positions (along axis 1)
    config.augment.shift_mode = "circular"  # or "zero": positions shifted in are zeros
    config.augment.noise = 0.0  # standard deviation of added Gaussian noise
    config.augment.scale = 0.0  # each example scaled by a factor in [1 - scale, 1 + scale]

    config.restarts = ml_collections.ConfigDict()
    config.restarts.num = 1
    config.restarts.sweep = ""
    # Numeric fields drawn from ranges, restarts.num points (jaxnn.config.search), e.g.
    # 'optimizer.learning_rate=loguniform(1e-3, 0.3); model.dropout=uniform(0, 0.5)'.
    config.restarts.search = ""
    config.restarts.search_method = "random"  # or "halton" (scrambled), "halton_unscrambled"
    config.restarts.select_by = "val_loss"
    config.restarts.tolerance = 0.05
    # A member whose training loss ends above this multiple of its loss at initialisation is
    # marked exploded and left out of selection like a diverged one (0: never).
    config.restarts.explode_factor = 100.0
    # Member schedules (jaxnn.core.schedules, docs/search.md): "none", "successive_halving",
    # "hyperband" (members leave the batch at rungs) or "pbt" (population-based training).
    config.restarts.schedule = "none"
    config.restarts.eta = 3  # halving: each rung keeps the best ceil(n / eta) members
    config.restarts.first_rung_steps = 0  # the first rung's steps, 0 = down to 1 member
    config.restarts.pbt_interval = 0  # pbt: steps between exploits, 0 = training.eval_every
    config.restarts.pbt_fraction = 0.25  # pbt: the bottom fraction copies from the top one
    config.restarts.pbt_perturb = 0.2  # pbt: a copied value times 1 - p or 1 + p
    config.restarts.pbt_resample = 0.25  # pbt: the chance a value is drawn anew instead

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

    # DIR/tensorboard: event files of every evaluation (jaxnn.reporting.tensorboard).
    config.tensorboard = ml_collections.ConfigDict()
    config.tensorboard.enabled = True

    # Scale-out (jaxnn.parallel.sharding): the member axis sharded over a mesh of devices.
    config.mesh = ml_collections.ConfigDict()
    config.mesh.num_devices = 0  # 0 = every device of every process
    config.mesh.data = "replicated"  # or "batch": splits sharded along their example axis
    # Members each device runs at once (jaxnn.core.groups): 0 = chosen per backend and model.
    config.mesh.member_group = 0

    # JAX's persistent compilation cache (jaxnn.core.compile_cache): a relaunch reads the
    # compiled programs. dir "" = a directory JAX is already set to, else ~/.cache/jaxnn/jax
    # (the launcher: $XDG_CACHE_HOME/jaxnn/jax; JAXNN_COMPILATION_CACHE=off or =DIR).
    config.compilation_cache = ml_collections.ConfigDict()
    config.compilation_cache.enabled = True
    config.compilation_cache.dir = ""
    return config
