"""Optax optimisers and learning-rate schedules from the `optimizer` config (the contract:
docs/architecture.md, "Optimisers").

A member's hyperparameters may be traced float32 scalars (one per member): the optimiser state's
structure never depends on their values. A new optimiser adds its `OPTIMIZERS` entry and its
`NUMERIC_FIELDS` (and the schema's fields), nothing else.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import optax

from jaxnn.config.fields import Choice, NumericField, is_number
from jaxnn.config.schema import default_config
from jaxnn.errors import ConfigError
from jaxnn.nn.lookup import lookup

Scalar = float | jax.Array
# f(opt_cfg, hparams, learning_rate schedule) -> the optimiser (see `Optimizer`).
OptimizerBuild = Callable[[Any, Mapping[str, Scalar], optax.Schedule], optax.GradientTransformation]
# name -> f(opt_cfg, total_steps) -> unit schedule of a float32 count.
ScheduleFactory = Callable[[Any, int], optax.Schedule]
# name -> f(opt_cfg, eval_every) -> a transformation whose update takes the loss as `value=`.
LossScheduleFactory = Callable[[Any, int], optax.GradientTransformationExtraArgs]

_UNSCALED = "__unscaled__"
# The member hyperparameters every optimiser reads.
_SHARED = ("learning_rate", "weight_decay")


_UNIT_INTERVAL = (lambda v: 0.0 <= v < 1.0, "must be in [0, 1)")
_POSITIVE = (lambda v: v > 0, "must be > 0")
NUMERIC_FIELDS: dict[str, NumericField] = {
    name: NumericField(f"optimizer.{name}", name, check, requirement, constant_unless_swept=swept)
    for name, (check, requirement), swept in (
        # name, its rule, constant_unless_swept
        ("learning_rate", _POSITIVE, False),
        ("weight_decay", (lambda v: v >= 0, "must be >= 0"), False),
        ("momentum", _UNIT_INTERVAL, False),
        ("b1", _UNIT_INTERVAL, True),
        ("b2", _UNIT_INTERVAL, True),
        ("eps", _POSITIVE, True),
        ("rms_decay", _UNIT_INTERVAL, True),
    )
}

# The schema's values: a schedule's field set away from them needs that schedule.
_SCHEMA_DEFAULTS = default_config().optimizer


def _leaf(field: NumericField | Choice) -> str:
    """The `optimizer` field name of a field's rule ('optimizer.b1' -> 'b1')."""
    return field.field.rpartition(".")[2]


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A registry entry: build(opt_cfg, hparams, learning_rate) (docs/architecture.md,
    "Optimisers") and `reads`, the NUMERIC_FIELDS it reads besides learning_rate and
    weight_decay, in the order members carry them."""

    build: OptimizerBuild
    reads: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[NumericField, ...]:
        """The numeric fields its member carries: learning_rate, weight_decay, then `reads`."""
        return tuple(NUMERIC_FIELDS[name] for name in (*_SHARED, *self.reads))


def _decoupled(
    direction: Callable[[Mapping[str, Scalar]], optax.GradientTransformation],
) -> OptimizerBuild:
    """The build of direction(hparams), then + weight_decay * params, then * -learning_rate (as
    optax.adamw does). The decay step is always there (its state is empty), so a swept decay
    changes no structure."""

    def build(
        opt_cfg: Any, hparams: Mapping[str, Scalar], learning_rate: optax.Schedule
    ) -> optax.GradientTransformation:
        del opt_cfg
        return optax.chain(
            direction(hparams),
            optax.add_decayed_weights(hparams["weight_decay"]),
            optax.scale_by_learning_rate(learning_rate),
        )

    return build


def _adamw(
    opt_cfg: Any, hparams: Mapping[str, Scalar], learning_rate: optax.Schedule
) -> optax.GradientTransformation:
    del opt_cfg
    return optax.adamw(
        learning_rate,
        b1=hparams["b1"],
        b2=hparams["b2"],
        eps=hparams["eps"],
        weight_decay=hparams["weight_decay"],
    )


OPTIMIZERS: dict[str, Optimizer] = {
    "sgd": Optimizer(_decoupled(lambda hp: optax.identity())),
    # The trace is kept even for momentum 0 so every member has the same state structure.
    "momentum": Optimizer(
        _decoupled(lambda hp: optax.trace(decay=hp["momentum"])), reads=("momentum",)
    ),
    "nesterov": Optimizer(
        _decoupled(lambda hp: optax.trace(decay=hp["momentum"], nesterov=True)),
        reads=("momentum",),
    ),
    "adam": Optimizer(
        _decoupled(lambda hp: optax.scale_by_adam(b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])),
        reads=("b1", "b2", "eps"),
    ),
    "adamw": Optimizer(_adamw, reads=("b1", "b2", "eps")),
    # optax.scale_by_rms's own defaults (decay=0.9, eps=1e-8) are the schema's rms_decay and
    # eps defaults, so a default rmsprop trains exactly as optax.rmsprop.
    "rmsprop": Optimizer(
        _decoupled(lambda hp: optax.scale_by_rms(decay=hp["rms_decay"], eps=hp["eps"])),
        reads=("rms_decay", "eps"),
    ),
}


def member_fields(opt_cfg: Any) -> tuple[NumericField, ...]:
    """The numeric fields a member of the optimiser `opt_cfg.name` (already checked) carries:
    learning_rate, weight_decay, then its `reads`."""
    return OPTIMIZERS[opt_cfg.name].fields


def _step(opt_cfg: Any, total_steps: int) -> optax.Schedule:
    factors: dict[int, float] = {}
    for fraction in opt_cfg.boundaries:
        step = round(fraction * total_steps)
        factors[step] = factors.get(step, 1.0) * opt_cfg.decay_rate
    return optax.piecewise_constant_schedule(1.0, factors)


def _constant(opt_cfg: Any, total_steps: int) -> optax.Schedule:
    del opt_cfg, total_steps
    return optax.constant_schedule(1.0)


SCHEDULES: dict[str, ScheduleFactory] = {
    "constant": _constant,
    "step": _step,
    "exponential": lambda opt_cfg, total_steps: optax.exponential_decay(
        1.0, total_steps, opt_cfg.decay_rate, end_value=opt_cfg.decay_rate
    ),
    "cosine": lambda opt_cfg, total_steps: optax.cosine_decay_schedule(
        1.0, total_steps, alpha=opt_cfg.end_fraction
    ),
    "warmup_cosine": lambda opt_cfg, total_steps: optax.warmup_cosine_decay_schedule(
        0.0, 1.0, opt_cfg.warmup_steps, total_steps, end_value=opt_cfg.end_fraction
    ),
    "linear": lambda opt_cfg, total_steps: optax.linear_schedule(
        1.0, opt_cfg.end_fraction, total_steps
    ),
    # The rate follows the loss (LOSS_SCHEDULES): the step count leaves it at its base.
    "reduce_on_plateau": _constant,
}


def _reduce_on_plateau(opt_cfg: Any, eval_every: int) -> optax.GradientTransformationExtraArgs:
    """optax.contrib.reduce_on_plateau on the mean batch loss of every `plateau_accumulation`
    steps (0: of every evaluation's `eval_every` steps); patience and cooldown count those
    checks."""
    return optax.contrib.reduce_on_plateau(
        factor=float(opt_cfg.plateau_factor),
        patience=int(opt_cfg.plateau_patience),
        rtol=float(opt_cfg.plateau_rtol),
        cooldown=int(opt_cfg.plateau_cooldown),
        accumulation_size=int(opt_cfg.plateau_accumulation or eval_every),
    )


LOSS_SCHEDULES: dict[str, LossScheduleFactory] = {"reduce_on_plateau": _reduce_on_plateau}
# The names a config gives, each one of its registry's (the message lists the known ones).
NAME_RULES = (Choice("optimizer.name", OPTIMIZERS), Choice("optimizer.schedule", SCHEDULES))
# optimizer fields read by one schedule only: setting one for another schedule is refused.
SCHEDULE_FIELDS: dict[str, tuple[str, ...]] = {
    "warmup_cosine": ("warmup_steps",),
    "reduce_on_plateau": (
        "plateau_factor",
        "plateau_patience",
        "plateau_cooldown",
        "plateau_rtol",
        "plateau_accumulation",
    ),
}


def loss_scale(opt_state: Any) -> jax.Array | None:
    """The factor a loss-driven schedule has brought the learning rate to (float32 [] per
    member, stacked [M] for an ensemble's state), or None when the state holds none."""
    found = [
        leaf.scale
        for leaf in jax.tree_util.tree_leaves(
            opt_state, is_leaf=lambda x: isinstance(x, optax.contrib.ReduceLROnPlateauState)
        )
        if isinstance(leaf, optax.contrib.ReduceLROnPlateauState)
    ]
    return found[0] if found else None


def unit_schedule(opt_cfg: Any, total_steps: int) -> optax.Schedule:
    """The multiplier of the base learning rate at each step count: 1.0 at the peak.

    constant and reduce_on_plateau (whose rate follows the loss): 1. step: times decay_rate
    from step round(b * total_steps) for each boundary b. exponential: decay_rate **
    (count / total_steps), held at decay_rate after. cosine and linear: from 1 to end_fraction
    at total_steps. warmup_cosine: 0 -> 1 over warmup_steps, then cosine to end_fraction.

    Raises:
      ConfigError: an unknown schedule (a config `check_schedule_fits` passed builds).
    """
    factory = lookup(SCHEDULES, opt_cfg.schedule, "optimizer.schedule")
    schedule = factory(opt_cfg, total_steps)

    def unit(count: jax.Array | int) -> jax.Array:
        # optax schedules divide the count by Python numbers: a float count keeps that legal
        # under strict dtype promotion.
        return jnp.asarray(schedule(jnp.asarray(count, jnp.float32)))

    return unit


def check_schedule_fits(opt_cfg: Any, total_steps: int) -> None:
    """The schedule of a validated `optimizer` section fits a run of `total_steps` updates (what
    the data decides for a run by epochs), so building it cannot fail.

    Raises:
      ConfigError: total_steps < 1, or warmup_steps >= total_steps under warmup_cosine.
    """
    if total_steps < 1:
        raise ConfigError(f"the number of training steps must be >= 1, got {total_steps}")
    if opt_cfg.schedule == "warmup_cosine" and opt_cfg.warmup_steps >= total_steps:
        raise ConfigError(
            f"optimizer.warmup_steps={opt_cfg.warmup_steps} must be smaller than the number of "
            f"training steps ({total_steps})"
        )


def make_optimizer(
    opt_cfg: Any,
    hparams: Mapping[str, Scalar],
    *,
    total_steps: int,
    eval_every: int = 1,
) -> optax.GradientTransformation:
    """clip_by_global_norm (when opt_cfg.clip_norm > 0), then the optimiser `opt_cfg.name` with
    learning_rate(count) = hparams['learning_rate'] * unit_schedule(count), then a loss
    schedule's scaling (whose update needs `value=` the loss).

    Args:
      hparams: the member's values of `member_fields(opt_cfg)` (floats or traced scalars); a
        missing one is opt_cfg's as a Python float, other names are ignored. Pass b1, b2 or
        rms_decay only where members differ in it: optax's 1 - b2 from a float32 0.999 is not
        the float32 of the Python 1 - 0.999, so a traced value trains slightly differently.
      eval_every: steps per evaluation (reduce_on_plateau's checks with plateau_accumulation 0).

    Raises:
      ConfigError: an unknown optimiser or schedule (never for a config validation passed:
        `validate_optimizer_config`, then `check_schedule_fits` once the steps are known).
    """
    unit = unit_schedule(opt_cfg, total_steps)
    optimizer = lookup(OPTIMIZERS, opt_cfg.name, "optimizer.name")
    member = {
        field.hparam: hparams.get(field.hparam, opt_cfg[_leaf(field)]) for field in optimizer.fields
    }
    base_lr = member["learning_rate"]

    tx = optimizer.build(opt_cfg, member, lambda count: base_lr * unit(count))
    if opt_cfg.clip_norm > 0:
        tx = optax.chain(optax.clip_by_global_norm(opt_cfg.clip_norm), tx)
    if opt_cfg.schedule in LOSS_SCHEDULES:
        tx = optax.chain(tx, LOSS_SCHEDULES[opt_cfg.schedule](opt_cfg, eval_every))
    return tx


def accumulate(tx: optax.GradientTransformation, steps: int) -> optax.GradientTransformation:
    """`tx` applied once every `steps` calls to the mean of their gradients (optax.MultiSteps;
    `tx` itself for 1): the calls between return zero updates, and `tx`'s own state (its step
    count, the schedule's) advances once per update."""
    if steps == 1:
        return tx
    return optax.MultiSteps(tx, every_k_schedule=steps).gradient_transformation()


# What JAX raises when Python code asks a traced value for a Python bool, int or array.
_TRACED_VALUE_ERRORS = (
    jax.errors.ConcretizationTypeError,
    jax.errors.TracerIntegerConversionError,
    jax.errors.TracerArrayConversionError,
)
_SCHEDULE_FIX = (
    "build the schedule from Python numbers and scale it by the member's value, e.g. "
    "optax.adamw(lambda count: hp['learning_rate'] * "
    "optax.warmup_cosine_decay_schedule(0.0, 1.0, 30, 300)(count)), or pass the value through "
    "optax.inject_hyperparams"
)


def _culprit(error: BaseException) -> str:
    """Where a traced value was asked for a Python value: the innermost frame outside JAX."""
    frames = [
        frame
        for frame, _ in traceback.walk_tb(error.__traceback__)
        if not frame.f_globals.get("__name__", "").startswith(("jax.", "jaxlib.", "jaxnn."))
    ]
    if not frames:
        return "the optimizer factory"
    frame = frames[-1]
    module = frame.f_globals.get("__name__", "")
    if module.startswith("optax"):
        return f"optax's {frame.f_code.co_name}"
    return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"


@contextlib.contextmanager
def _explain_traced_values() -> Iterator[None]:
    try:
        yield
    except _TRACED_VALUE_ERRORS as error:
        raise ConfigError(
            f"optimizer=...: {_culprit(error)} decides in Python on a member's hyperparameter, "
            f"which arrives traced (one value per member of the compiled program): "
            f"{_SCHEDULE_FIX}"
        ) from None


def user_optimizer(
    factory: Callable[[Mapping[str, Scalar]], optax.GradientTransformation],
    hparams: Mapping[str, Scalar],
) -> optax.GradientTransformationExtraArgs:
    """The user's factory's transformation for one member (hparams traced); a Python decision
    on a traced value, in the factory or in the transformation's init or update (a schedule
    called with the step count), is one `ConfigError` line naming where and the fix."""
    with _explain_traced_values():
        built = factory(hparams)
    if not isinstance(built, optax.GradientTransformation):
        raise ConfigError(
            "optimizer=... must be a factory hparams -> optax.GradientTransformation, but it "
            f"returned {type(built).__name__}"
        )
    tx = optax.with_extra_args_support(built)

    def init(params: Any) -> optax.OptState:
        with _explain_traced_values():
            return tx.init(params)

    def update(
        updates: Any, state: optax.OptState, params: Any = None, **extra_args: Any
    ) -> tuple[Any, optax.OptState]:
        with _explain_traced_values():
            return tx.update(updates, state, params, **extra_args)

    return optax.GradientTransformationExtraArgs(init, update)


def _relabel(param_labels: Any, rename: Callable[[str], str]) -> Callable[[Any], Any]:
    def labels(tree: Any) -> Any:
        given = param_labels(tree) if callable(param_labels) else param_labels
        return jax.tree.map(rename, given)

    return labels


def with_labels(
    tx: optax.GradientTransformation,
    param_labels: Any,
    *,
    frozen_labels: Sequence[str] = (),
    label_lr_scales: Mapping[str, Scalar] | None = None,
) -> optax.GradientTransformation:
    """`tx` (any optax transformation) with some labels frozen and others' updates scaled (for
    transfer learning), or `tx` itself when neither option is given.

    Args:
      param_labels: a pytree of str labels like the params (or a callable params -> labels).
      frozen_labels: labels whose parameters get zero updates and keep no optimiser state;
        `tx` (its clipping included) sees only the other parameters.
      label_lr_scales: label -> factor on that label's updates, applied last (so 0 gives
        exactly zero updates).

    Raises:
      ValueError: frozen_labels or label_lr_scales without param_labels.
    """
    frozen = frozenset(frozen_labels)
    scales = dict(label_lr_scales or {})
    if not frozen and not scales:
        return tx
    if param_labels is None:
        raise ValueError("frozen_labels and label_lr_scales need param_labels")
    if frozen:
        # partition masks the frozen parameters out of the inner optimiser: no state for them,
        # and clipping sees only the trainable ones.
        trainable = _relabel(
            param_labels, lambda label: "frozen" if label in frozen else "trainable"
        )
        tx = optax.partition({"trainable": tx, "frozen": optax.set_to_zero()}, trainable)
    if scales:
        transforms = {label: optax.scale(s) for label, s in scales.items()}
        transforms[_UNSCALED] = optax.identity()
        scaled = _relabel(param_labels, lambda label: label if label in scales else _UNSCALED)
        # Last, so a scale of 0 gives exactly zero update whatever came before.
        tx = optax.chain(tx, optax.partition(transforms, scaled))
    return tx


def tx_factory(
    opt_cfg: Any,
    user: Callable[[Mapping[str, Any]], optax.GradientTransformation] | None,
    *,
    total_steps: int,
    eval_every: int,
    accumulate_steps: int,
    param_labels: Callable[[Any], Any] | None,
    frozen_labels: Sequence[str],
    label_lr_scales: Sequence[tuple[str, float]],
) -> Callable[[Mapping[str, Any]], optax.GradientTransformation]:
    """make_tx(hparams) -> a member's optimiser: the user's factory or `make_optimizer`, with
    the transfer's labels (`with_labels`) and gradient accumulation (`accumulate`: the optimiser
    updates once every `accumulate_steps` steps, its schedule spans total_steps / that)."""
    scales = dict(label_lr_scales) or None
    updates = total_steps // accumulate_steps

    def make_tx(hparams: Mapping[str, Any]) -> optax.GradientTransformation:
        if user is not None:
            tx = user_optimizer(user, hparams)
        else:
            tx = make_optimizer(
                opt_cfg,
                hparams,
                total_steps=updates,
                eval_every=max(1, eval_every // accumulate_steps),
            )
        tx = with_labels(tx, param_labels, frozen_labels=frozen_labels, label_lr_scales=scales)
        return accumulate(tx, accumulate_steps)

    return make_tx


def validate_optimizer_config(opt_cfg: Any) -> None:
    """Checks the `optimizer` config fields (the integer fields' ranges are checked before,
    `jaxnn.config.fields.INTEGER_FIELDS`).

    Raises:
      ConfigError: naming the first bad field: an unknown name or schedule, a NUMERIC_FIELDS
        value out of its range (whichever optimiser reads it), a plateau or schedule setting
        out of range, boundaries that are not increasing fractions in (0, 1), or a field of
        a schedule the config does not use.
    """
    rules: tuple[Choice | NumericField, ...] = (*NAME_RULES, *NUMERIC_FIELDS.values())
    for rule in rules:
        problem = rule.problem(opt_cfg[_leaf(rule)])
        if problem:
            raise ConfigError(problem)
    checks = [
        ("clip_norm", lambda v: v >= 0, "must be >= 0 (0 = no clipping)"),
        ("decay_rate", lambda v: v > 0, "must be > 0"),
        ("end_fraction", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
        ("plateau_factor", lambda v: 0 < v < 1, "must be in (0, 1)"),
        ("plateau_rtol", lambda v: 0 < v <= 1, "must be in (0, 1]"),
    ]
    for name, valid, requirement in checks:
        value = opt_cfg[name]
        if not is_number(value) or not valid(value):
            raise ConfigError(f"optimizer.{name} {requirement}, got {value!r}")
    boundaries = opt_cfg.boundaries
    ok = isinstance(boundaries, Sequence) and not isinstance(boundaries, str)
    ok = ok and all(is_number(b) and 0 < b < 1 for b in boundaries)
    ok = ok and all(a < b for a, b in itertools.pairwise(boundaries))
    if not ok:
        raise ConfigError(
            f"optimizer.boundaries must be increasing fractions of the run in (0, 1), "
            f"e.g. (0.5, 0.75), got {boundaries!r}"
        )
    for schedule, fields in SCHEDULE_FIELDS.items():
        changed = [f for f in fields if opt_cfg[f] != _SCHEMA_DEFAULTS[f]]
        if schedule != opt_cfg.schedule and changed:
            raise ConfigError(
                f"optimizer.{changed[0]} is read only by optimizer.schedule={schedule}, but the "
                f"schedule is {opt_cfg.schedule!r}: set the schedule or leave the field out"
            )
