"""The config schema: `default_config()`, the one config that carries every field jaxnn reads.

Every experiment starts from it, so any field can be overridden on any command line
(`--config.FIELD=VALUE`). A leaf module: its rules live in `jaxnn.validation`, and the `model`
section comes from the model families when `default_config()` runs. A field is added only with
a default that reproduces what runs did before it existed (`jaxnn.config.upgrade`).
"""

from __future__ import annotations

import ml_collections

BATCH_ORDERS = ("independent", "shared")
KEEP_WEIGHTS = ("best", "last")
TRANSFER_MODES = ("finetune", "feature_extraction")
TRANSFER_RESTORES = ("body", "all")
# mesh.data: splits replicated on every device, or sharded along their example axis.
DATA_MODES = ("replicated", "batch")


def default_config() -> ml_collections.ConfigDict:
    """Returns the default config: an MLP on MNIST-1D trained by SGD with momentum."""
    # The families import JAX: imported here, when a config is made, `import jaxnn` has run (it
    # is this package's parent) and split the CPU before JAX starts, as it must.
    from jaxnn.nn import registry

    config = ml_collections.ConfigDict()
    config.seed = 0

    config.dataset = _dataset()

    # The model family (`model.name`, default mlp) and the fields of every registered family,
    # each declared with its default by the family that reads it (jaxnn.nn.model_fields,
    # jaxnn.nn.registry, docs/models.md); model.head, model.dtype: every family's.
    config.model = ml_collections.ConfigDict(registry.model_defaults())

    config.loss = "cross_entropy"
    config.huber_delta = 1.0

    config.optimizer = _optimizer()
    config.training = ml_collections.ConfigDict(
        {
            "batch_size": 100,
            "steps": 0,
            "epochs": 0,
            "eval_every": 500,
            "patience": 0,
            "keep": "best",
            "batch_order": "independent",
        }
    )
    config.augment = _augment()
    config.restarts = _restarts()
    config.init_from = ml_collections.ConfigDict(
        {
            "workdir": "",
            "member": "best",
            "mode": "finetune",
            "restore": "body",
            "body_lr_scale": 1.0,
        }
    )
    config.checkpoint = ml_collections.ConfigDict({"every_steps": 0, "keep": 2})
    config.diagnostics = ml_collections.ConfigDict({"enabled": False})
    # DIR/tensorboard: event files of every evaluation (jaxnn.reporting.tensorboard).
    config.tensorboard = ml_collections.ConfigDict({"enabled": True})
    config.mesh = _mesh()
    # JAX's persistent compilation cache (jaxnn.core.compile_cache): a relaunch reads the
    # compiled programs. dir "" = a directory JAX is already set to, else ~/.cache/jaxnn/jax
    # (the launcher: $XDG_CACHE_HOME/jaxnn/jax; JAXNN_COMPILATION_CACHE=off or =DIR).
    config.compilation_cache = ml_collections.ConfigDict({"enabled": True, "dir": ""})
    return config


def _dataset() -> ml_collections.ConfigDict:
    section = ml_collections.ConfigDict()
    # a local data set (mnist1d, digits, diabetes, friedman1; images: digits_images,
    # mnist_subset), a TFDS one, npz:PATH or csv:PATH
    section.name = "mnist1d"
    section.data_dir = ""
    # npz / csv files (jaxnn.data.files): the target array or column ("" = y / the last
    # column), the test split carved from a file that has none, the task ("" = inferred)
    section.target = ""
    section.test_fraction = 0.2
    section.task = ""
    section.validation_fraction = 0.1
    section.standardize = True
    section.classes = ()
    section.train_per_class = 0
    section.split_seed = 0
    # One fixed random permutation of the positions (axis 1) of every split; 0 = off.
    section.permute_seed = 0
    # Delete the prepared files in data_dir and prepare them again (damaged or stale data).
    section.rebuild = False
    return section


def _optimizer() -> ml_collections.ConfigDict:
    section = ml_collections.ConfigDict()
    section.name = "momentum"
    section.learning_rate = 0.05
    section.momentum = 0.9
    section.schedule = "constant"
    section.warmup_steps = 0
    section.decay_rate = 0.1
    section.boundaries = (0.5, 0.75)
    section.end_fraction = 0.0
    section.weight_decay = 0.0
    section.clip_norm = 0.0
    # The optimisers' own settings (jaxnn.nn.optimizers reads each for the optimisers named).
    section.b1 = 0.9  # adam, adamw: first-moment decay
    section.b2 = 0.999  # adam, adamw: second-moment decay
    section.eps = 1e-8  # adam, adamw, rmsprop: added to the denominator
    section.rms_decay = 0.9  # rmsprop: decay of the squared-gradient average
    # schedule=reduce_on_plateau (optax.contrib): every plateau_accumulation steps (0 = every
    # training.eval_every steps) the mean training-batch loss is checked; after
    # plateau_patience checks without a relative improvement of plateau_rtol the member's
    # learning rate is multiplied by plateau_factor, then plateau_cooldown checks are skipped.
    section.plateau_factor = 0.1
    section.plateau_patience = 5
    section.plateau_cooldown = 0
    section.plateau_rtol = 1e-4
    section.plateau_accumulation = 0
    # Gradient accumulation (optax.MultiSteps): every accumulate_steps training steps (batches)
    # make one optimiser update from their averaged gradient; training.steps counts batches.
    section.accumulate_steps = 1
    # Averaged weights (jaxnn.nn.ema): decay of the exponential moving average of each member's
    # weights that evaluation, selection and export use; 0 = off; per member in a sweep.
    section.ema_decay = 0.0
    return section


def _augment() -> ml_collections.ConfigDict:
    # Augmentation of training batches inside the jitted step (jaxnn.data.augment); 0 = off.
    section = ml_collections.ConfigDict()
    # images [H, W, C]: random crops of the image padded by this many zero pixels per side
    section.crop = 0
    section.flip = False  # images: mirrored left to right with probability 1/2
    section.shift = 0  # random shifts of up to this many positions (along axis 1)
    section.shift_mode = "circular"  # or "zero": positions shifted in are zeros
    section.noise = 0.0  # standard deviation of added Gaussian noise
    section.scale = 0.0  # each example scaled by a factor in [1 - scale, 1 + scale]
    return section


def _restarts() -> ml_collections.ConfigDict:
    section = ml_collections.ConfigDict()
    section.num = 1
    section.sweep = ""
    # Numeric fields drawn from ranges, restarts.num points (jaxnn.config.search), e.g.
    # 'optimizer.learning_rate=loguniform(1e-3, 0.3); model.dropout=uniform(0, 0.5)'.
    section.search = ""
    section.search_method = "random"  # or "halton" (scrambled), "halton_unscrambled"
    section.select_by = "val_loss"
    section.tolerance = 0.05
    # A member whose training loss ends above this multiple of its loss at initialisation is
    # marked exploded and left out of selection like a diverged one (0: never).
    section.explode_factor = 100.0
    # Member schedules (jaxnn.core.schedules, docs/search.md): "none", "successive_halving",
    # "hyperband" (members leave the batch at rungs) or "pbt" (population-based training).
    section.schedule = "none"
    section.eta = 3  # halving: each rung keeps the best ceil(n / eta) members
    section.first_rung_steps = 0  # the first rung's steps, 0 = down to 1 member
    section.pbt_interval = 0  # pbt: steps between exploits, 0 = training.eval_every
    section.pbt_fraction = 0.25  # pbt: the bottom fraction copies from the top one
    section.pbt_perturb = 0.2  # pbt: a copied value times 1 - p or 1 + p
    section.pbt_resample = 0.25  # pbt: the chance a value is drawn anew instead
    return section


def _mesh() -> ml_collections.ConfigDict:
    # Scale-out (jaxnn.parallel.sharding): the member axis sharded over a mesh of devices.
    section = ml_collections.ConfigDict()
    section.num_devices = 0  # 0 = every device of every process
    section.data = "replicated"  # or "batch": splits sharded along their example axis
    # Members each device runs at once (jaxnn.core.groups): 0 = chosen per backend and model.
    section.member_group = 0
    return section
