"""The run's rules. Before data is loaded (`jaxnn.front_end.resolve` calls them): every field's
own, the ones across sections, each section's by its owner (`check_sections`) and the ones on
the members' values (`check_members`); the Python entry points' data set and key. On the loaded
data: `check_against_data`. Every entry point and structural variant goes through them, so a
mistake is one `JaxnnError` before anything is trained or written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxnn import data
from jaxnn.config import search as search_lib
from jaxnn.config import sweep as sweep_lib
from jaxnn.config.fields import MAX_STEPS, field_problem
from jaxnn.data import augment
from jaxnn.errors import ConfigError, DataError
from jaxnn.nn import ema, losses, optimizers, registry
from jaxnn.nn import family as family_lib
from jaxnn.nn.components import Components
from jaxnn.nn.metrics import RESERVED, builtin_metrics
from jaxnn.run_spec import RunSpec

BUILTIN_SELECT_BY = ("val_loss", "val_accuracy", "val_r2", "val_rmse")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def check_sections(
    config: ml_collections.ConfigDict,
    family: family_lib.ModelFamily,
    components: Components,
    varied: Sequence[str] = (),
) -> None:
    """Every field by its own rule (`jaxnn.config.fields.FIELD_RULES`), the user's components
    and the mesh's devices, each section by its owner, then the rules across sections.

    Raises:
      ConfigError: the first mistake, in one line.
    """
    problem = field_problem(config)
    if problem is not None:
        raise ConfigError(problem)
    check_mesh_devices(config.mesh)
    _validate_components(components)
    if components.model is not None and not isinstance(components.model, family_lib.ModelFamily):
        _refuse_undeclared_model_fields(varied, family)
    _check_owned_sections(config, family, components)
    training = config.training
    _require(
        (training.steps > 0) != (training.epochs > 0),
        "exactly one of training.steps and training.epochs must be > 0, got "
        f"steps={training.steps} and epochs={training.epochs}",
    )
    _require(
        training.keep == "best" or training.patience == 0,
        "training.patience stops a member at its best validation loss: it needs "
        f"training.keep=best, got keep={training.keep!r} with patience={training.patience}",
    )
    allowed = [*BUILTIN_SELECT_BY, *(f"val_{name}" for name in components.metric_names)]
    _require(
        config.restarts.select_by in allowed,
        f"restarts.select_by must be one of {', '.join(allowed)}, got "
        f"{config.restarts.select_by!r}",
    )


def _check_owned_sections(
    config: ml_collections.ConfigDict, family: family_lib.ModelFamily, components: Components
) -> None:
    """Each section by its owner, in the schema's order."""
    data.validate_dataset_config(config.dataset)
    registry.refuse_other_families_fields(config.model, family)
    if family.validate is not None:
        family.validate(config.model)
    if components.loss is None:
        losses.validate_loss_config(config.loss, config.huber_delta)
    optimizers.validate_optimizer_config(config.optimizer)
    problem = ema.EMA_DECAY.problem(config.optimizer.ema_decay)
    if problem is not None:
        raise ConfigError(problem)
    augment.validate_augment_config(config.augment)


def _refuse_undeclared_model_fields(varied: Sequence[str], family: family_lib.ModelFamily) -> None:
    """A user's model may vary only the numeric fields it declares (`jaxnn.UserModel`)."""
    declared = [f.field for f in family.numeric_fields]
    undeclared = [f for f in varied if f.startswith("model.") and f not in declared]
    if undeclared:
        have = f"it declares {', '.join(declared)}" if declared else "it declares none"
        raise ConfigError(
            f"{undeclared[0]} is varied, but the model is the user's own (model=...) and {have}: "
            f"declare it as a per-member number, jaxnn.UserModel(factory, "
            f"fields={{{undeclared[0].removeprefix('model.')!r}: default}}), or train one run "
            "per value"
        )


def check_members(
    config: ml_collections.ConfigDict,
    family: family_lib.ModelFamily,
    resolved: sweep_lib.Sweep,
    search: search_lib.Search | None,
) -> None:
    """A search is not combined with a numeric sweep, and the family's own rules (across
    fields) hold for the members' values of a model field too: the family checks the config
    with each swept value, and with the least and the greatest value a search drew.

    Raises:
      ConfigError: the first mistake, in one line.
    """
    _require(
        search is None or not resolved.numeric,
        f"restarts.search draws the numeric fields, but restarts.sweep also varies "
        f"{', '.join(resolved.numeric)} on a grid: move it into restarts.search as a range (a "
        "search may be combined only with a sweep of structural fields)",
    )
    if family.validate is None:
        return
    checked = {f: sorted(set(v)) for f, v in resolved.numeric.items() if f.startswith("model.")}
    drawn: dict[str, list[float]] = {}
    for point in search.points if search is not None else ():
        for field, value in point.items():
            if field.startswith("model."):
                drawn.setdefault(field, []).append(value)
    checked.update({field: [min(v), max(v)] for field, v in drawn.items()})
    for field, values in checked.items():
        for value in values:
            family.validate(sweep_lib.with_values(config, {field: value}).model)


def check_key(key: Any) -> None:
    """`key` is a JAX random key: `jax.random.PRNGKey(seed)` (uint32 [2]) or `jax.random.key`;
    anything else (a plain integer, a float array, a batch of keys) is a ConfigError."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        _require(key.shape == (), f"key must be one random key, got keys of shape {key.shape}")
        return
    shape, dtype = np.shape(key), getattr(key, "dtype", None)
    _require(
        isinstance(key, jax.Array | np.ndarray) and shape == (2,) and dtype == np.uint32,
        f"key must be a JAX random key such as jax.random.PRNGKey(0), got {_describe(key)}",
    )


def check_dataset(dataset: Any) -> None:
    """`dataset` is a `jaxnn.Dataset` (from `jaxnn.load_dataset` or `jaxnn.from_arrays`);
    anything else (arrays, a tuple, a path) is a DataError."""
    if not isinstance(dataset, data.Dataset):
        raise DataError(
            "data must be a jaxnn.Dataset (from jaxnn.from_arrays(x_train, y_train, x_test, "
            f"y_test, task=...) or jaxnn.load_dataset(config.dataset)), got {_describe(dataset)}"
        )


def _describe(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"an array of shape {tuple(value.shape)} and dtype {value.dtype}"
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _validate_components(components: Components) -> None:
    for given, must_be in (
        (components.loss, "loss must be a function (outputs, targets) -> [B]"),
        (components.predict, "predict must be a function outputs -> predictions"),
        (
            components.optimizer,
            "optimizer must be a factory hparams -> optax.GradientTransformation",
        ),
    ):
        _require(given is None or callable(given), f"{must_be}, got {given!r}")
    for name, _ in components.metrics:
        _require(
            name.isidentifier() and name not in RESERVED,
            f"metric name {name!r} clashes with a built-in name ({', '.join(RESERVED)}) or is not "
            "an identifier; choose another name",
        )


def check_against_data(spec: RunSpec, dataset: data.Dataset, steps: int) -> None:
    """The rules on the loaded data: the selection metric for the task, the batch and the
    run's `steps` (`jaxnn.config.fields.run_steps`) for the training split, the model, loss
    and metrics on the data's shapes (nothing computed), the optimiser's schedule and the
    updates for the steps, then each section's own rules on the data, by its owner.

    Raises:
      ConfigError: the first mistake, in one line; a mismatch of shapes names both.
    """
    config, task, num_train = spec.config, dataset.task, dataset.num_train
    selectable = ["loss", *builtin_metrics(task), *spec.components.metric_names]
    _require(
        config.restarts.select_by.removeprefix("val_") in selectable,
        f"restarts.select_by={config.restarts.select_by!r} does not apply to a {task} data set; "
        f"use one of {', '.join(f'val_{name}' for name in selectable)}",
    )
    _require(
        config.training.batch_size <= num_train,
        f"training.batch_size={config.training.batch_size} is larger than the training split "
        f"({num_train} examples)",
    )
    _require(
        steps <= MAX_STEPS,
        f"training.epochs={config.training.epochs} makes {steps} steps of batch "
        f"{config.training.batch_size} over {num_train} examples, more than the "
        f"{MAX_STEPS} a run may have; ask for fewer epochs",
    )
    _check_shapes(spec, dataset)
    accumulate_steps = int(config.optimizer.accumulate_steps)
    if spec.components.optimizer is None:
        optimizers.check_schedule_fits(config.optimizer, steps // accumulate_steps)
    _require(
        steps % accumulate_steps == 0,
        f"the run trains {steps} steps (batches), not a multiple of "
        f"optimizer.accumulate_steps={accumulate_steps}: set training.steps to a multiple "
        "so that the last update has all its batches",
    )
    augment.check_feature_shape(config.augment, spec.member_values, tuple(dataset.feature_shape))
    if spec.components.loss is None:
        losses.check_loss_for_task(config.loss, task)


def _check_shapes(spec: RunSpec, dataset: data.Dataset) -> None:
    """The model, loss and metrics on the data's shapes; the head names on its parameters."""
    config, task = spec.config, dataset.task
    if spec.family.check_inputs is not None:
        spec.family.check_inputs(config.model, tuple(dataset.feature_shape))
    x = jax.ShapeDtypeStruct((2, *dataset.feature_shape), jnp.float32)
    y = jax.ShapeDtypeStruct((2, *np.shape(dataset.y_train)[1:]), np.asarray(dataset.y_train).dtype)
    what = "the model" if spec.components.model is None else "the user's model"
    params, outputs = _abstract_pass(spec, dataset, x, what)
    expected = (2, dataset.num_outputs)
    unit = "one output per class" if task == "classification" else "one per target"
    _require(
        getattr(outputs, "shape", None) == expected,
        f"{what} gives outputs of shape {getattr(outputs, 'shape', type(outputs).__name__)} for "
        f"a batch of 2; this {task} data set needs {expected} ({unit})",
    )
    loss = spec.components.loss
    if loss is not None:
        shape = _result_shape("the loss", loss, outputs, y)
        _require(
            shape == (2,),
            f"the loss returns shape {shape} for a batch of 2; a loss returns one value per "
            "example, shape (2,)",
        )
    for name, metric in spec.components.metrics:
        shape = _result_shape(f"metric {name!r}", metric.fn, outputs, y)
        _require(shape == (), f"metric {name!r} returns shape {shape}; a metric returns a scalar")
    # The head matters to a transfer; a model's own default ('head') need not exist otherwise:
    # a Flax model as Flax's docs write it names its layers Dense_0, Dense_1, ...
    head_used = bool(config.model.head) or bool(config.init_from.workdir)
    unmatched = family_lib.unmatched_head_names(params, spec.head) if head_used else []
    _require(
        not unmatched,
        f"head name {unmatched[0] if unmatched else ''!r} matches no parameter of the model; its "
        f"top-level parameters are {', '.join(params)} (set config.model.head)",
    )


def _abstract_pass(spec: RunSpec, dataset: data.Dataset, x: Any, what: str) -> tuple[Any, Any]:
    """The model's parameter shapes and outputs' shape for inputs `x` (abstract init, evaluation
    and training passes); a ConfigError if it fails on them or has too many parameters."""
    hparams = spec.base_hparams
    model_hparams = {f.hparam: jnp.float32(hparams[f.hparam]) for f in spec.family.numeric_fields}
    module = spec.family.build(spec.config.model, model_hparams, dataset.num_outputs)
    try:
        variables = jax.eval_shape(
            lambda x: family_lib.init_model(module, jax.random.PRNGKey(0), x), x
        )
        params, model_state = family_lib.split_variables(variables)
        outputs = jax.eval_shape(
            lambda p, s, x: family_lib.apply_model(module, p, x, model_state=s),
            params,
            model_state,
            x,
        )
    except Exception as error:
        raise _not_applicable(what, x.shape, error) from error
    # Before a training pass is traced: its masks and activations grow with the model.
    _check_parameter_count(spec, params)
    try:
        # A training step's pass: its state collections mutable, dropout drawn.
        jax.eval_shape(
            lambda p, s, x: family_lib.train_apply(
                module, p, s, x, dropout_key=jax.random.PRNGKey(0)
            ),
            params,
            model_state,
            x,
        )
    except Exception as error:
        raise _not_applicable(what, x.shape, error) from error
    return params, outputs


def _not_applicable(what: str, shape: tuple[int, ...], error: Exception) -> ConfigError:
    """The one line for a model that fails on inputs of `shape`."""
    return ConfigError(f"{what} cannot be applied to inputs of shape {shape}: {_one_line(error)}")


# The most parameter values one member may have (4 TiB of float32): far beyond any machine's
# memory (`jaxnn.core.memory` checks what fits), and far below the int64 extents XLA aborts on
# when it traces a step of such a model.
MAX_PARAMETERS = 2**40


def _check_parameter_count(spec: RunSpec, params: Any) -> None:
    """The model's parameter count (from shapes) is at most MAX_PARAMETERS."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    counts = [(math.prod(int(d) for d in leaf.shape), path, leaf.shape) for path, leaf in leaves]
    total = sum(count for count, _, _ in counts)
    if total <= MAX_PARAMETERS:
        return
    _, path, shape = max(counts, key=lambda entry: entry[0])
    model = spec.config.model
    sizes = [
        f"model.{field.name}={model[field.name]!r}"
        for field in (spec.family.fields or ())
        if field.name in model and _is_size(model[field.name])
    ]
    raise ConfigError(
        f"the model has {total:.3g} parameters ({jax.tree_util.keystr(path)} alone has shape "
        f"{tuple(int(d) for d in shape)}), beyond the {MAX_PARAMETERS:.3g} any machine could hold "
        f"(4 TiB of float32); make it smaller ({', '.join(sizes) or 'its size fields'})"
    )


def _is_size(value: Any) -> bool:
    values = value if isinstance(value, tuple | list) else (value,)
    return bool(values) and all(isinstance(v, int) and not isinstance(v, bool) for v in values)


def _result_shape(what: str, fn: Any, *args: Any) -> tuple[int, ...]:
    try:
        return tuple(jax.eval_shape(fn, *args).shape)
    except Exception as error:
        raise ConfigError(f"{what} fails on outputs and targets: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text[:300] or type(error).__name__


def check_mesh_devices(mesh: ml_collections.ConfigDict) -> None:
    """`config.mesh`'s device count against the devices that exist (JAX asked only when a
    count is requested): a ConfigError for more than exist, or a partial multi-process mesh."""
    if mesh.num_devices == 0:
        return
    available = jax.device_count()
    _require(
        mesh.num_devices <= available,
        f"mesh.num_devices={mesh.num_devices} asks for more devices than exist: this run "
        f"sees {available} ({jax.default_backend()}); use 0 for all of them",
    )
    _require(
        jax.process_count() == 1 or mesh.num_devices == available,
        f"mesh.num_devices={mesh.num_devices} would leave devices of a {jax.process_count()}-"
        f"process run out of the mesh; use 0 (all {available} devices)",
    )
