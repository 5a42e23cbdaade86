"""The pure unit of work: one member's training state, its train step, and a chunk of steps.

A member is "a key plus hyperparameters": `jaxnn.core.loop.fit` runs one, `jaxnn.core.ensemble`
the same functions under `jax.vmap`. A chunk of `training.eval_every` steps is one `lax.scan`
followed by the evaluation, so the host is touched once per chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxnn.core.program import ApplyFn, HParams, ModelState, Params, Program
from jaxnn.data.augment import augment_batch
from jaxnn.data.device import SplitData, TrainingData
from jaxnn.nn import ema
from jaxnn.nn.family import init_model, split_variables

# fold_in tags that derive a member's purpose keys from its member key.
INIT_TAG, DROPOUT_TAG, ORDER_TAG, AUGMENT_TAG = 0, 1, 2, 3
# fold_in tag of the batch-order key that every member shares when training.batch_order=shared.
SHARED_ORDER_TAG = 0x5EED
# epoch_order packs example indices of up to this many bits under random bits (>= 12 random).
MAX_PACKED_INDEX_BITS = 20


@struct.dataclass
class TrainState:
    """One member's whole training state (a vmapped ensemble stacks every leaf on axis 0)."""

    step: jax.Array  # int32 []: optimiser steps this member has taken
    params: Params
    opt_state: optax.OptState
    hparams: HParams  # float32 [] each: this member's numeric hyperparameters
    member_key: jax.Array  # uint32 [2]: root of the init, dropout, order and augmentation keys
    best_params: Params  # the evaluated weights (`evaluated_params`) at the best val loss so far
    # The Module's non-params collections (BatchNorm's batch_stats; {} for most models),
    # written by training steps only.
    model_state: ModelState
    best_model_state: ModelState  # the model state that goes with best_params
    ema: ema.EmaState  # the average of the weights (optimizer.ema_decay; {} when off)
    best_val_loss: jax.Array  # float32 []
    best_step: jax.Array  # int32 []
    evals_since_best: jax.Array  # int32 []: early-stopping counter
    stopped: jax.Array  # bool []: early stopping ended this member's training
    diverged: jax.Array  # bool []: a non-finite training loss ended this member's training
    apply_fn: ApplyFn = struct.field(pytree_node=False)
    make_tx: Callable[[HParams], optax.GradientTransformation] = struct.field(pytree_node=False)

    if TYPE_CHECKING:  # written by flax.struct.dataclass, which mypy does not see

        def replace(self, **changes: Any) -> TrainState: ...


def member_key(root: jax.Array, seed_index: int | jax.Array) -> jax.Array:
    """The key of the member trained from random start `seed_index` of a run with root `root`."""
    return jax.random.fold_in(root, seed_index)


def shared_order_key(root: jax.Array) -> jax.Array:
    """The batch-order key every member uses when `training.batch_order` is `shared`."""
    return jax.random.fold_in(jax.random.fold_in(root, SHARED_ORDER_TAG), ORDER_TAG)


def init_state(
    program: Program,
    hparams: HParams,
    key: jax.Array,
    *,
    apply_fn: ApplyFn,
    make_tx: Callable[[HParams], optax.GradientTransformation],
    pretrained: Params | None = None,
) -> TrainState:
    """Initialises one member (pure and vmappable over hparams, key and pretrained).

    `apply_fn` and `make_tx` come from `jaxnn.core.program.build` of the same program;
    `pretrained` holds the Flax variables of the layers that replace the fresh ones ({'params':
    {layer: ...}, and per state collection {layer: ...}, e.g. 'batch_stats'}).
    """
    hparams = {name: jnp.asarray(value, jnp.float32) for name, value in hparams.items()}
    dummy = jnp.zeros((1, *program.feature_shape), jnp.float32)
    init_key = jax.random.fold_in(key, INIT_TAG)
    module = program.model(hparams)
    params, model_state = split_variables(init_model(module, init_key, dummy))
    if pretrained:
        params = {**params, **pretrained.get("params", {})}
        model_state = {
            name: {**tree, **pretrained.get(name, {})} for name, tree in model_state.items()
        }
    opt_state = make_tx(hparams).init(params)
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        opt_state=opt_state,
        hparams=hparams,
        member_key=key,
        best_params=params,
        model_state=model_state,
        best_model_state=model_state,
        ema=ema.init(params, program.ema_decay),
        best_val_loss=jnp.array(jnp.inf, jnp.float32),
        best_step=jnp.zeros((), jnp.int32),
        evals_since_best=jnp.zeros((), jnp.int32),
        stopped=jnp.zeros((), bool),
        diverged=jnp.zeros((), bool),
        apply_fn=apply_fn,
        make_tx=make_tx,
    )


def epoch_order(order_key: jax.Array, epoch: jax.Array, num_train: int) -> jax.Array:
    """The order in which epoch `epoch` visits the training split: a permutation int32 [N].

    Sorts random 32-bit words whose low bits are replaced by the example's index: one
    single-operand sort, cheaper than `jax.random.permutation`'s sorts of (key, value) pairs.
    Examples whose random high bits tie keep their index order (a few pairs per epoch).
    """
    index_bits = max(1, (num_train - 1).bit_length())
    epoch_key = jax.random.fold_in(order_key, epoch)
    if index_bits > MAX_PACKED_INDEX_BITS:
        return jax.random.permutation(epoch_key, num_train).astype(jnp.int32)
    high = jax.random.bits(epoch_key, (num_train,), jnp.uint32) >> index_bits << index_bits
    packed = jnp.sort(high | jnp.arange(num_train, dtype=jnp.uint32))
    return (packed & jnp.uint32((1 << index_bits) - 1)).astype(jnp.int32)


def batch_indices(
    order: jax.Array, step: jax.Array, program: Program
) -> tuple[jax.Array, jax.Array]:
    """Indices int32 [B] of global step `step`'s batch within its epoch's order, and their mask.

    The last batch of an epoch fills its rows past N mod B with the epoch's first examples,
    masked out of the loss: a batch is always B examples of the training split (distinct when
    B <= N), which is what a BatchNorm layer's statistics, blind to the mask, are computed over.
    """
    within = step % program.steps_per_epoch
    positions = within * program.batch_size + jnp.arange(program.batch_size)
    mask = positions < program.num_train
    return order[positions % program.num_train], mask


def batch_loss(
    state: TrainState,
    params: Params,
    x: jax.Array,
    y: jax.Array,
    mask: jax.Array,
    dropout_key: jax.Array,
    program: Program,
) -> tuple[jax.Array, ModelState]:
    """Masked mean training loss of one batch, and the model state the train-mode pass left."""
    outputs, model_state = state.apply_fn(
        params, state.model_state, x, state.hparams, train=True, dropout_key=dropout_key
    )
    per_example = program.loss(outputs, y)
    weights = mask.astype(per_example.dtype)
    return jnp.sum(per_example * weights) / jnp.sum(weights), model_state


def ema_decay(state: TrainState, program: Program) -> float | jax.Array:
    """The member's `optimizer.ema_decay`: its own when swept, else the config's."""
    return state.hparams.get(ema.EMA_DECAY.hparam, program.ema_decay or 0.0)


def evaluated_params(state: TrainState, program: Program) -> Params:
    """The weights evaluation reads: the averaged ones with `optimizer.ema_decay`, else the
    member's own."""
    return ema.averaged(state.ema, state.params, ema_decay(state, program))


def frozen_state(program: Program, new: ModelState, old: ModelState) -> ModelState:
    """`new`, with the layers the transfer freezes (feature extraction's body) kept at `old`;
    a state collection is labelled as the weights are (`program.param_labels`, by layer name)."""
    param_labels = program.param_labels
    if not program.frozen_labels or not new or not callable(param_labels):
        return new
    frozen = frozenset(program.frozen_labels)

    def keep(tree_new: Any, tree_old: Any) -> Any:
        labels = param_labels(tree_new)
        return jax.tree_util.tree_map(
            lambda label, a, b: b if label in frozen else a, labels, tree_new, tree_old
        )

    return {name: keep(new[name], old[name]) for name in new}


def optimizer_update(
    state: TrainState, grads: Params, loss: jax.Array
) -> tuple[Params, optax.OptState]:
    """The member's optimiser step: (updates, new optimiser state) for `grads`; `loss` goes to
    the update as `value=`, for `optimizer.schedule=reduce_on_plateau`."""
    tx = optax.with_extra_args_support(state.make_tx(state.hparams))
    return tx.update(grads, state.opt_state, state.params, value=loss)


def _select(condition: jax.Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(condition, a, b), new, old)


def train_step(
    state: TrainState,
    batch: tuple[jax.Array, jax.Array, jax.Array],
    global_step: jax.Array,
    program: Program,
) -> tuple[TrainState, jax.Array]:
    """One optimiser step of one member; a stopped, diverged or finished member stays as it is.

    `batch` is (x [B, ...], y [B] or [B, O], mask bool [B]); x is augmented here when the
    program augments. Returns the new state and the batch loss (float32 []; NaN when the
    member did not train).
    """
    x, y, mask = batch
    dropout_key = jax.random.fold_in(jax.random.fold_in(state.member_key, DROPOUT_TAG), global_step)
    if program.augmentation.active:
        augment_key = jax.random.fold_in(
            jax.random.fold_in(state.member_key, AUGMENT_TAG), global_step
        )
        x = augment_batch(program.augmentation, state.hparams, x, augment_key)
    (loss, model_state), grads = jax.value_and_grad(batch_loss, argnums=1, has_aux=True)(
        state, state.params, x, y, mask, dropout_key, program
    )
    if program.accumulate_steps > 1:
        weight = program.gradient_weight(global_step)
        grads = jax.tree_util.tree_map(lambda g: g * weight.astype(g.dtype), grads)
    model_state = frozen_state(program, model_state, state.model_state)
    updates, opt_state = optimizer_update(state, grads, loss)
    params = optax.apply_updates(state.params, updates)
    average = ema.update(state.ema, params, ema_decay(state, program))
    # The loss alone decides (a gradient norm would cost time every step): a non-finite gradient
    # behind a finite loss makes the next step's loss non-finite, and the member stops there;
    # best_params, which selection and export use, only ever hold finite weights.
    finite = jnp.isfinite(loss)
    active = (global_step < program.total_steps) & ~state.stopped & ~state.diverged
    commit = active & finite
    new_state = state.replace(
        step=state.step + commit.astype(jnp.int32),
        params=_select(commit, params, state.params),
        opt_state=_select(commit, opt_state, state.opt_state),
        model_state=_select(commit, model_state, state.model_state),
        ema=_select(commit, average, state.ema),
        diverged=state.diverged | (active & ~finite),
    )
    return new_state, jnp.where(active, loss, jnp.nan)


def evaluate(
    state: TrainState,
    params: Params,
    split: SplitData,
    program: Program,
    *,
    model_state: ModelState | None = None,
) -> dict[str, jax.Array]:
    """Loss and every metric of `params` on a whole split (float32 scalars), in evaluation mode
    with `model_state` (default: the member's current one)."""
    model_state = state.model_state if model_state is None else model_state
    outputs, _ = state.apply_fn(params, model_state, split.x, state.hparams)
    metrics = {"loss": jnp.mean(program.loss(outputs, split.y))}
    for name, metric in program.metrics:
        metrics[name] = jnp.asarray(metric.fn(outputs, split.y), jnp.float32)
    return metrics


def evaluate_best(state: TrainState, split: SplitData, program: Program) -> dict[str, jax.Array]:
    """`evaluate` of the member's best weights, with their model state."""
    return evaluate(state, state.best_params, split, program, model_state=state.best_model_state)


def track_best(state: TrainState, val_loss: jax.Array, program: Program) -> TrainState:
    """Keeps the best-validation weights (`evaluated_params`, with their model state) and
    advances the early-stopping counter; `training.keep=last` keeps the latest finite ones."""
    improved = (val_loss < state.best_val_loss) & ~state.diverged
    if program.keep == "last":
        improved = jnp.isfinite(val_loss) & ~state.diverged
    evals_since_best = jnp.where(improved, 0, state.evals_since_best + 1)
    stopped = state.stopped
    if program.patience > 0:
        stopped = stopped | (evals_since_best >= program.patience)
    return state.replace(
        best_params=_select(improved, evaluated_params(state, program), state.best_params),
        best_model_state=_select(improved, state.model_state, state.best_model_state),
        best_val_loss=jnp.where(improved, val_loss, state.best_val_loss),
        best_step=jnp.where(improved, state.step, state.best_step),
        evals_since_best=evals_since_best.astype(jnp.int32),
        stopped=stopped,
    )


def run_chunk(
    state: TrainState,
    data: TrainingData,
    start_step: jax.Array,
    order_key: jax.Array | None,
    *,
    program: Program,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """Trains one member for `program.eval_every` steps from global step `start_step`, then evaluates.

    Pure and vmappable (over `state`, and `order_key` when members draw their own batches).
    `order_key` None: the member's own. Returns the new state and the metrics `train_*`,
    `val_*` and `batch_loss` (the mean training-batch loss over the chunk).
    """
    if order_key is None:
        order_key = jax.random.fold_in(state.member_key, ORDER_TAG)
    spe = program.steps_per_epoch

    def body(
        carry: tuple[TrainState, jax.Array], global_step: jax.Array
    ) -> tuple[tuple[TrainState, jax.Array], jax.Array]:
        state, order = carry
        order = jax.lax.cond(
            global_step % spe == 0,
            lambda: epoch_order(order_key, global_step // spe, program.num_train),
            lambda: order,
        )
        idx, mask = batch_indices(order, global_step, program)
        batch = (data.train.x[idx], data.train.y[idx], mask)
        state, loss = train_step(state, batch, global_step, program)
        return (state, order), loss

    first_order = epoch_order(order_key, start_step // spe, program.num_train)
    steps = start_step + jnp.arange(program.eval_every, dtype=jnp.int32)
    (state, _), batch_losses = jax.lax.scan(body, (state, first_order), steps)

    params = evaluated_params(state, program)
    train_metrics = evaluate(state, params, data.train, program)
    val_metrics = evaluate(state, params, data.val, program)
    state = track_best(state, val_metrics["loss"], program)
    metrics = {f"train_{k}": v for k, v in train_metrics.items()}
    metrics |= {f"val_{k}": v for k, v in val_metrics.items()}
    metrics["batch_loss"] = jnp.nanmean(batch_losses)
    return state, metrics
