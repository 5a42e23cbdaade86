"""The estimators' compiled programs, vmapped over the members: epoch, L-BFGS, score, prediction.

A member is a key plus its numeric values (learning rate, alpha, momentum), which the programs
take as arguments: they compile once per `Engine` and input shapes, so a refit, a
cross-validation fold or a grid search over alpha compiles nothing. The objective is
scikit-learn's: `(sum(w * loss) + alpha / 2 * ||W||^2) / sum(w)` on a batch with sample
weights w, `||W||^2` the squared entries of every weight matrix (`kernel`), not the intercepts.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn.core import program_store
from jaxnn.nn.family import apply_model, init_model
from jaxnn.parallel import sharding
from jaxnn.parallel.sharding import Placement
from jaxnn.sklearn.network import OUTPUTS

Params = Any
Program = jax.stages.Wrapped | program_store.StoredProgram
# scipy's L-BFGS-B default ftol (factr 1e7 times float64's epsilon), scikit-learn's setting.
LBFGS_FTOL = 1e7 * 2.220446049250313e-16
LBFGS_MEMORY = 10
INIT_TAG, ORDER_TAG = 0, 2
LBFGS_LINESEARCH_STEPS = 20
# XLA's CPU compiler with LLVM's cheap passes for the programs a fit runs once or a few times:
# they compile faster and run slower. The epoch, run up to max_iter times, compiles with XLA's
# full optimisation (`epoch_program`).
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
FULL_COMPILE: dict[str, Any] = {}
# The members' start runs once per fit: XLA's CPU elemental emitter compiles its random-number
# code faster than the fusion emitters (the same values, bit for bit), which run it faster.
START_COMPILE = FAST_COMPILE | {"xla_cpu_use_fusion_emitters": False}


@dataclasses.dataclass(frozen=True)
class Engine:
    """What the compiled programs depend on besides the shapes of their inputs.

    Attributes:
      module: the network (raw outputs [B, O] from inputs [B, n_features]).
      output: a key of `network.OUTPUTS`.
      batch_size: rows per step (the last batch of an epoch is the remainder, as scikit-learn's).
      task: 'classification' or 'regression' (the score: accuracy or R2).
    """

    module: nn.Module
    output: str
    solver: str
    nesterov: bool
    beta_1: float
    beta_2: float
    epsilon: float
    batch_size: int
    task: str


def _jit(
    fn: Callable[..., Any],
    engine: Engine,
    program: str,
    options: dict[str, Any] = FAST_COMPILE,
    placed: Placement | None = None,
) -> Program:
    """`fn` jitted with the compiler `options`, its outputs (led by the member axis) split over
    `placed`'s mesh when it has one, its programs stored on disk when `program_store.storable`
    (`program`, the engine and the placement name what was traced)."""
    kwargs: dict[str, Any] = {"compiler_options": options}
    if placed is not None and placed.mesh is not None:
        kwargs["out_shardings"] = placed.member_sharding
    if program_store.storable(engine.module):
        where = None if placed is None else sharding.describe(placed)
        name = f"jaxnn.sklearn.{program}|{engine!r}|{where}"
        return program_store.stored_jit(fn, name, **kwargs)
    return jax.jit(fn, **kwargs)


def squared_weights(params: Params) -> jax.Array:
    """Sum of the squared entries of every weight matrix (`kernel` leaf) of one member."""
    leaves = jax.tree_util.tree_leaves_with_path(params)
    kernels = [leaf for path, leaf in leaves if getattr(path[-1], "key", None) == "kernel"]
    return sum((jnp.sum(k**2) for k in kernels), jnp.zeros((), jnp.float32))


def objective(
    engine: Engine, params: Params, x: jax.Array, y: jax.Array, w: jax.Array, alpha: jax.Array
) -> jax.Array:
    """scikit-learn's loss of one member on weighted rows (module docstring)."""
    per_example = OUTPUTS[engine.output].loss(apply_model(engine.module, params, x), y)
    penalty = 0.5 * alpha * squared_weights(params)
    return (jnp.sum(w * per_example) + penalty.astype(per_example.dtype)) / jnp.sum(w)


def score(engine: Engine, params: Params, x: jax.Array, y: jax.Array, w: jax.Array) -> jax.Array:
    """scikit-learn's `score` of one member: accuracy (subset accuracy for several logistic
    outputs) or R2 averaged over the outputs, weighted by w; NaN for non-finite outputs."""
    raw = apply_model(engine.module, params, x)
    finite = jnp.all(jnp.isfinite(raw))
    if engine.task == "classification":
        if engine.output == "softmax":
            right = jnp.argmax(raw, axis=-1) == jnp.argmax(y, axis=-1)
        else:
            right = jnp.all((raw > 0) == (y > 0.5), axis=-1)
        value = jnp.sum(w * right) / jnp.sum(w)
    else:
        predicted = OUTPUTS[engine.output].link(raw)
        weights = w[:, None]
        mean = jnp.sum(weights * y, axis=0) / jnp.sum(w)
        residual = jnp.sum(weights * (y - predicted) ** 2, axis=0)
        spread = jnp.sum(weights * (y - mean) ** 2, axis=0)
        # r2_score's force_finite: a constant target scores 1 when predicted exactly, else 0.
        r2 = jnp.where(spread > 0, 1 - residual / jnp.where(spread > 0, spread, 1), 0.0)
        r2 = jnp.where((spread == 0) & (residual == 0), 1.0, r2)
        value = jnp.mean(r2)
    return jnp.where(finite, value, jnp.nan)


def direction(engine: Engine, momentum: jax.Array) -> optax.GradientTransformation:
    """The update direction before the learning rate: sgd's momentum or Adam's moments."""
    if engine.solver == "sgd":
        return optax.trace(decay=momentum, nesterov=engine.nesterov)
    return optax.scale_by_adam(b1=engine.beta_1, b2=engine.beta_2, eps=engine.epsilon)


@functools.lru_cache(maxsize=64)
def init_fn(engine: Engine, placed: Placement) -> Program:
    """seed (uint32 []), starts int [K], a sample row [1, F] -> (stacked initial parameters
    [K, ...], order keys [K, 2]) placed by `placed`: member k's key is
    fold_in(PRNGKey(seed), starts[k]), its initialisation and order keys fold_in(key, INIT_TAG)
    and fold_in(key, ORDER_TAG)."""

    def members(seed: jax.Array, starts: jax.Array, sample: jax.Array) -> tuple[Params, jax.Array]:
        keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.PRNGKey(seed), starts)
        tagged = jax.vmap(jax.random.fold_in, in_axes=(0, None))
        init = lambda key: init_model(engine.module, key, sample)["params"]
        return jax.vmap(init)(tagged(keys, INIT_TAG)), tagged(keys, ORDER_TAG)

    return _jit(members, engine, "start", START_COMPILE, placed)


@functools.lru_cache(maxsize=64)
def parameter_count(engine: Engine, num_features: int) -> int:
    """One member's number of parameters for inputs of `num_features` (from shapes, not compiled)."""
    sample = jax.ShapeDtypeStruct((1, num_features), np.float32)
    init = lambda x: init_model(engine.module, jax.random.PRNGKey(0), x)["params"]
    shapes = jax.eval_shape(init, sample)
    return sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))


def optimizer_init(engine: Engine, params: Params, placed: Placement) -> Any:
    """Stacked parameters [K, ...] -> the members' fresh optimiser states placed by `placed`:
    zeros (sgd's trace, Adam's moments and count) made on the host from their shapes."""
    zeros = lambda leaf: np.zeros(leaf.shape, leaf.dtype)
    return placed.put_members(jax.tree_util.tree_map(zeros, optimizer_shapes(engine, params)))


def optimizer_shapes(engine: Engine, params: Params) -> Any:
    """The shapes and dtypes (jax.ShapeDtypeStruct leaves) of `optimizer_init`'s states for
    stacked parameters (arrays or ShapeDtypeStructs) [K, ...]."""
    num = jax.tree_util.tree_leaves(params)[0].shape[0]
    momentum = jax.ShapeDtypeStruct((num,), np.float32)
    shapes = jax.eval_shape(jax.vmap(lambda p, m: direction(engine, m).init(p)), params, momentum)
    return jax.tree_util.tree_map(lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype), shapes)


@flax.struct.dataclass
class EpochState:
    """What the members' epoch program carries from one epoch to the next (K members).

    Attributes:
      params, opt_state: stacked parameters and optimiser states [K, ...].
      orders: int32 [K, N]: the order of each member's training rows in its next epoch (drawn
        on the host between epochs: `training.Members.draw_orders`).
      learning_rate, alpha, momentum: [K], the members' values (the learning rate is the one
        scikit-learn's rules set for the next epoch).
      active: bool [K]: the members that still train (an inactive one keeps its state).
    """

    params: Params
    opt_state: Any
    orders: jax.Array
    learning_rate: jax.Array
    alpha: jax.Array
    momentum: jax.Array
    active: jax.Array

    if TYPE_CHECKING:  # written by flax.struct.dataclass, which mypy does not see

        def replace(self, **changes: Any) -> EpochState: ...


def member_epoch(
    engine: Engine, state: EpochState, data: tuple[jax.Array, ...]
) -> tuple[EpochState, jax.Array, jax.Array]:
    """One member's epoch (an inactive member keeps its state): (state, loss, score).

    The batches are scikit-learn's: `batch_size` rows each in the epoch's order [N], the
    last one the remainder, padded to a full batch by rows of weight 0 (the same objective and
    step as the remainder alone; one step body to compile, where a step of its own size would
    compile a second)."""
    x, y, w, x_val, y_val, w_val = data
    batch = engine.batch_size
    num_train = x.shape[0]
    steps = -(-num_train // batch)
    padding = steps * batch - num_train
    order = state.orders
    rows = jnp.concatenate([order, jnp.zeros(padding, order.dtype)]).reshape(steps, batch)
    kept = (jnp.arange(steps * batch) < num_train).astype(w.dtype).reshape(steps, batch)
    tx = direction(engine, state.momentum)

    def train_on(
        carry: tuple[Params, Any], batch_rows: tuple[jax.Array, jax.Array]
    ) -> tuple[tuple[Params, Any], jax.Array]:
        (params, opt_state), (rows, kept) = carry, batch_rows
        loss, grads = jax.value_and_grad(objective, argnums=1)(
            engine, params, x[rows], y[rows], w[rows] * kept, state.alpha
        )
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree_util.tree_map(lambda u: -state.learning_rate * u, updates)
        return (optax.apply_updates(params, updates), opt_state), loss * jnp.sum(kept)

    start = (state.params, state.opt_state)
    carry, losses = jax.lax.scan(train_on, start, (rows, kept))
    keep = lambda new, old: jnp.where(state.active, new, old)
    new_params, new_opt = jax.tree_util.tree_map(keep, carry, start)
    value = score(engine, new_params, x_val, y_val, w_val)
    return state.replace(params=new_params, opt_state=new_opt), jnp.sum(losses) / num_train, value


@functools.lru_cache(maxsize=64)
def epoch_program(engine: Engine, placed: Placement) -> Program:
    """The members' epoch as a chunk of `jaxnn.core.loop.drive`, split over `placed`'s devices
    and compiled with XLA's full optimisation (its run time outweighs the compile).

    The chunk takes an EpochState, the data (x [N, F], y [N, O], w [N], x_val [V, F],
    y_val [V, O], w_val [V]), the loop's step and order key (unused) and returns the state
    after the epoch and the metrics loss [K] (mean batch loss weighted by batch size, as
    scikit-learn's loss_curve_) and score [K] (validation).
    """
    members = jax.vmap(functools.partial(member_epoch, engine), in_axes=(0, None))

    def chunk(
        state: EpochState, data: tuple[jax.Array, ...], step: jax.Array, order_key: Any
    ) -> tuple[EpochState, dict[str, jax.Array]]:
        del step, order_key
        state, loss, value = members(state, data)
        return state, {"loss": loss, "score": value}

    return _jit(chunk, engine, "epoch", FULL_COMPILE, placed)


def compile_epoch(engine: Engine, placed: Placement, params: Params, data: Any) -> None:
    """Compiles the members' epoch ahead of the fit that runs it, from the members' shapes
    (params [K, ...]: arrays or jax.ShapeDtypeStructs), their placement and the fit's data:
    `jaxnn.core.loop.drive`'s own compile of the same shapes then finds it compiled."""
    num = jax.tree_util.tree_leaves(params)[0].shape[0]
    # The dtypes `training.train_stochastic` gives the state it starts from.
    values: Any = jax.ShapeDtypeStruct((num,), np.float32)
    orders: Any = jax.ShapeDtypeStruct((num, data[0].shape[0]), np.int32)
    active: Any = jax.ShapeDtypeStruct((num,), np.bool_)
    state = EpochState(
        params=params,
        opt_state=optimizer_shapes(engine, params),
        orders=orders,
        learning_rate=values,
        alpha=values,
        momentum=values,
        active=active,
    )
    where = None if placed.mesh is None else placed.member_sharding
    place = lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=where)
    state = jax.tree_util.tree_map(place, state)
    epoch = epoch_program(engine, placed)
    epoch.lower(state, data, jax.ShapeDtypeStruct((), np.int32), None).compile()


def _gradient_max(grad: Params) -> jax.Array:
    """The largest absolute entry of a gradient."""
    return jnp.max(jnp.stack([jnp.max(jnp.abs(g)) for g in jax.tree_util.tree_leaves(grad)]))


def _lbfgs_running(max_iter: jax.Array, max_fun: jax.Array, carry: tuple) -> jax.Array:
    """Whether the L-BFGS run goes on (the carry as `_lbfgs_iteration`'s)."""
    _, _, iteration, evaluations, value, converged, stalled = carry
    within = (iteration < max_iter) & (evaluations < max_fun)
    return ~converged & ~stalled & jnp.isfinite(value) & within


def _lbfgs_iteration(
    solver: optax.GradientTransformationExtraArgs,
    fun: Callable[[Params], jax.Array],
    tol: jax.Array,
    carry: tuple,
) -> tuple:
    """One L-BFGS iteration and scipy's tests after it: the carry (params, state, iteration,
    evaluations, objective, converged, stalled) after the iteration."""
    params, state, iteration, evaluations, value, _, _ = carry
    value, grad = optax.value_and_grad_from_state(fun)(params, state=state)
    updates, state = solver.update(grad, state, params, value=value, grad=grad, value_fn=fun)
    params = optax.apply_updates(params, updates)
    new_value = optax.tree_utils.tree_get(state, "value")
    new_grad = optax.tree_utils.tree_get(state, "grad")
    steps = optax.tree_utils.tree_get(state, "num_linesearch_steps")
    scale = jnp.maximum(jnp.maximum(jnp.abs(value), jnp.abs(new_value)), 1.0)
    decrease = (value - new_value) / scale
    # scipy's relative-decrease test is float64's: in float32 a decrease that small is a few
    # units of the last place, a stall.
    small = (decrease > 0) & (decrease <= LBFGS_FTOL)
    precise = jnp.asarray(new_value.dtype == jnp.float64)
    converged = (_gradient_max(new_grad) <= tol) | (small & precise)
    # No decrease (the line search failed: scipy's ABNORMAL_TERMINATION_IN_LNSRCH) or a float32
    # stall: the run ends unconverged.
    stalled = (decrease <= 0) | (small & ~precise)
    evaluations = evaluations + jnp.maximum(steps, 1).astype(jnp.int32)
    return params, state, iteration + 1, evaluations, new_value, converged, stalled


@functools.lru_cache(maxsize=64)
def lbfgs_fn(engine: Engine) -> Callable[..., Any]:
    """The members' full-batch L-BFGS run (optax.lbfgs, zoom line search) under scipy's
    L-BFGS-B stopping rules: at most max_iter iterations and about max_fun evaluations,
    converged at a largest gradient entry <= tol or a relative decrease in (0, LBFGS_FTOL].

    Arguments: params [K, ...], alpha [K], x [N, F], y [N, O], w [N], max_iter, max_fun, tol.
    Returns: (params, loss [K], n_iter int32 [K], converged bool [K]).
    """
    solver = optax.lbfgs(
        memory_size=LBFGS_MEMORY,
        linesearch=optax.scale_by_zoom_linesearch(
            max_linesearch_steps=LBFGS_LINESEARCH_STEPS, verbose=False
        ),
    )

    def one(
        params: Params,
        alpha: jax.Array,
        x: jax.Array,
        y: jax.Array,
        w: jax.Array,
        max_iter: jax.Array,
        max_fun: jax.Array,
        tol: jax.Array,
    ) -> tuple[Params, jax.Array, jax.Array, jax.Array]:
        fun = lambda p: objective(engine, p, x, y, w, alpha)
        value0, grad0 = jax.value_and_grad(fun)(params)
        start = jnp.int32(0), jnp.int32(1), value0, _gradient_max(grad0) <= tol
        carry = (params, solver.init(params), *start, jnp.zeros((), bool))
        params, _, iteration, _, value, converged, _ = jax.lax.while_loop(
            functools.partial(_lbfgs_running, max_iter, max_fun),
            functools.partial(_lbfgs_iteration, solver, fun, tol),
            carry,
        )
        return params, value, iteration, converged

    members = jax.vmap(one, in_axes=(0, 0, None, None, None, None, None, None))
    return _jit(members, engine, "lbfgs")


@functools.lru_cache(maxsize=64)
def objective_and_grad_fn(engine: Engine) -> Callable[..., Any]:
    """One member's (objective, gradient) of (params, x, y, w, alpha), compiled."""
    return _jit(jax.value_and_grad(functools.partial(objective, engine)), engine, "objective")


@functools.lru_cache(maxsize=64)
def score_fn(engine: Engine) -> Callable[..., Any]:
    """Stacked parameters [K, ...], x [V, F], y [V, O], w [V] -> every member's score [K]."""
    members = jax.vmap(functools.partial(score, engine), in_axes=(0, None, None, None))
    return _jit(members, engine, "score")


@functools.lru_cache(maxsize=64)
def predict_fn(engine: Engine) -> Callable[..., Any]:
    """Stacked parameters [K, ...], x [B, F] -> the members' predictions [K, B, O] (the output
    activation applied: probabilities or values)."""

    def one(params: Params, x: jax.Array) -> jax.Array:
        return OUTPUTS[engine.output].link(apply_model(engine.module, params, x))

    return _jit(jax.vmap(one, in_axes=(0, None)), engine, "predict")


@jax.jit
def keep_where(mask: jax.Array, new: Any, old: Any) -> Any:
    """Per member (mask bool [K]): the leaves of `new` where mask, else those of `old`."""
    pick = lambda a, b: jnp.where(mask.reshape((-1,) + (1,) * (a.ndim - 1)), a, b)
    return jax.tree_util.tree_map(pick, new, old)


def all_finite(params: Params) -> np.ndarray:
    """bool [K]: every parameter of the member is finite (computed on the host)."""
    flags = [
        np.isfinite(np.asarray(leaf).reshape(np.shape(leaf)[0], -1)).all(axis=1)
        for leaf in jax.tree_util.tree_leaves(params)
    ]
    return functools.reduce(np.logical_and, flags)
