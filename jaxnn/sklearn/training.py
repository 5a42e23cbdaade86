"""The members' training on the host side: scikit-learn's rules applied to every member.

The stochastic solvers' epochs are chunks of `jaxnn.core.loop.drive`; between two, its hook
`EpochRules` applies `BaseMultilayerPerceptron._fit_stochastic`'s rules (patience, sgd's
`adaptive` and `invscaling` rates, early stopping's best weights) to each member on its own.
`Members` is what a fit leaves for the next one (warm_start) and for `partial_fit`.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from typing import Any

import jax
import numpy as np

from jaxnn.core import loop
from jaxnn.nn import precision
from jaxnn.parallel import sharding
from jaxnn.parallel.sharding import Placement
from jaxnn.sklearn import engine as programs
from jaxnn.sklearn.network import SklearnMLP
from jaxnn.sklearn.options import MLPOptions

MIN_ADAPTIVE_LR = 1e-6
ADAPTIVE_DIVISOR = 5.0
# An epoch's work per member (training rows x parameters) from which the members are split over
# the devices: below it, coordinating the devices every epoch costs more than their shares of
# the compute save (measured with benchmarks/sklearn_mlp.py on two CPU devices).
SPLIT_WORK = 500_000


@dataclasses.dataclass
class Members:
    """The K members' state, kept on the estimator between fits.

    Attributes:
      params, opt_state: stacked parameters and optimiser state [K, ...] (device; the state
        None before a stochastic fit).
      order_keys: uint32 [K, 2] (host): each member's seed of its epochs' orders.
      order_streams: each member's `default_rng(order_keys[k])`: its n-th permutation orders
        the member's n-th shuffled epoch, in a fit, a partial_fit or a warm start alike.
      learning_rate: float [K]: sgd's current rate of each member.
      loss_curves, validation_scores: per member, one value per epoch.
      no_improvement, samples_seen: int [K]: scikit-learn's `_no_improvement_count` and `t_`.
      n_iter: int [K]: epochs (or L-BFGS iterations) of the last fit.
      best_params: the weights of each member's best validation score (early stopping).
    """

    placed: Placement
    params: Any
    opt_state: Any
    order_keys: np.ndarray
    order_streams: list[np.random.Generator]
    initial_learning_rate: np.ndarray
    learning_rate: np.ndarray
    alpha: np.ndarray
    momentum: np.ndarray
    loss_curves: list[list[float]]
    validation_scores: list[list[float]]
    best_loss: np.ndarray
    best_score: np.ndarray
    no_improvement: np.ndarray
    n_iter: np.ndarray
    samples_seen: np.ndarray
    best_params: Any = None
    converged: Any = None

    @classmethod
    def fresh(
        cls,
        placed: Placement,
        params: Any,
        order_keys: np.ndarray,
        values: dict[str, np.ndarray],
    ) -> Members:
        num = len(values["alpha"])
        return cls(
            placed=placed,
            params=params,
            opt_state=None,
            order_keys=order_keys,
            order_streams=[np.random.default_rng([*map(int, key)]) for key in order_keys],
            initial_learning_rate=values["learning_rate"].astype(np.float64),
            learning_rate=values["learning_rate"].astype(np.float64),
            alpha=values["alpha"].astype(np.float64),
            momentum=values["momentum"].astype(np.float64),
            loss_curves=[[] for _ in range(num)],
            validation_scores=[[] for _ in range(num)],
            best_loss=np.full(num, np.inf),
            best_score=np.full(num, -np.inf),
            no_improvement=np.zeros(num, np.int64),
            n_iter=np.zeros(num, np.int64),
            samples_seen=np.zeros(num, np.int64),
            best_params=params,
        )

    @property
    def size(self) -> int:
        return len(self.alpha)

    def record(self, which: np.ndarray, loss: np.ndarray, scores: np.ndarray | None) -> None:
        """Appends loss [K] (and scores [K], if given) to the curves of the members in `which`."""
        for k in np.flatnonzero(which):
            self.loss_curves[k].append(float(loss[k]))
            if scores is not None:
                self.validation_scores[k].append(float(scores[k]))

    def draw_orders(self, orders: np.ndarray, which: np.ndarray) -> None:
        """Draws the next order of the training rows of each member in `which` (bool [K]) into
        its row of `orders` (int32 [K, N]), from the member's own stream."""
        for k in np.flatnonzero(which):
            orders[k] = self.order_streams[k].permutation(orders.shape[1])

    def __getstate__(self) -> dict[str, Any]:
        # A mesh holds devices, which do not pickle: the pickle keeps how many devices the
        # members spanned, and loading places them again on the loading process's devices.
        state = dict(self.__dict__)
        state["placed"] = self.placed.num_devices
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        placed = sharding.even_placement(len(state["alpha"]), max_devices=state["placed"])
        state["placed"] = placed
        for name in ("params", "opt_state", "best_params"):
            if state[name] is not None:
                state[name] = placed.put_members(state[name])
        self.__dict__.update(state)


def members_placement(
    engine: programs.Engine, num_members: int, num_train: int, num_features: int
) -> Placement:
    """Where a fit's members live: split over the CPU's devices (one a core) when an epoch's
    work per member is at least SPLIT_WORK, else on one device, as on an accelerator (where
    the split was not measured) and for L-BFGS (whose run is one loop over every member)."""
    work = num_train * programs.parameter_count(engine, num_features)
    on_cpu = jax.default_backend() == "cpu"
    split = on_cpu and engine.solver != "lbfgs" and work >= SPLIT_WORK
    return sharding.even_placement(num_members, max_devices=None if split else 1)


def start_members(
    engine: programs.Engine,
    placed: Placement,
    seed: int,
    starts: np.ndarray,
    sample: np.ndarray,
    data: tuple[jax.Array, ...],
    *,
    compile_epoch: bool,
) -> tuple[Any, np.ndarray]:
    """The members' initial parameters (placed by `placed`) and order keys (uint32 [K, 2], host).

    jaxnn's own network draws them on the host (`SklearnMLP.draw_members`: nothing to compile).
    A user's module starts through its Flax init (`engine.init_fn`; `sample` is a training row on
    the host: slicing it on the device would compile) and, when `compile_epoch`, the epoch
    program compiles meanwhile in a second thread (XLA compiles without Python's lock)."""
    if isinstance(engine.module, SklearnMLP):
        params, order_keys = engine.module.draw_members(sample.shape[-1], seed, starts)
        return placed.put_members(params), order_keys
    init = programs.init_fn(engine, placed)
    args = (np.uint32(seed), np.asarray(starts, np.int32), sample)
    if not compile_epoch:
        params, keys = init(*args)
        return params, np.asarray(keys)
    # jax.jit's program has eval_shape too, which jax.stages.Wrapped's stub does not declare.
    abstract_params, _ = init.eval_shape(*args)  # type: ignore[union-attr]
    # JAX's x64 switch may be this thread's own (`with jax.enable_x64():`): the second thread
    # compiles under the same one (another setting differing, the fit compiles its own program).
    x64 = precision.x64_enabled()

    def compile_in_thread() -> None:
        with jax.enable_x64(x64):
            programs.compile_epoch(engine, placed, abstract_params, data)

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        compiling = pool.submit(compile_in_thread)
        params, keys = init(*args)
        compiling.result()
    return params, np.asarray(keys)


def _f32(placed: Placement, values: np.ndarray) -> jax.Array:
    # Cast on the host: a cast of a device array would compile a program of its own.
    return placed.put_members(np.asarray(values, np.float32))


def train_stochastic(
    engine: programs.Engine,
    members: Members,
    data: tuple[jax.Array, ...],
    options: MLPOptions,
    *,
    incremental: bool,
    has_validation: bool,
) -> None:
    """Trains the members (in place) for at most `max_iter` epochs, or one (`incremental`):
    the epoch program driven by `jaxnn.core.loop.drive`, scikit-learn's rules its hook."""
    if members.opt_state is None or not incremental:
        # A fit starts a fresh optimiser, as scikit-learn's (also under warm_start).
        members.opt_state = programs.optimizer_init(engine, members.params, members.placed)
        members.learning_rate = members.initial_learning_rate.copy()
    members.n_iter = np.zeros(members.size, np.int64)
    placed, num_train = members.placed, int(data[0].shape[0])
    orders = np.tile(np.arange(num_train, dtype=np.int32), (members.size, 1))
    if options.shuffle:
        members.draw_orders(orders, np.ones(members.size, bool))
    state = programs.EpochState(
        params=members.params,
        opt_state=members.opt_state,
        orders=placed.put_members(orders),
        learning_rate=_f32(placed, members.learning_rate),
        alpha=_f32(placed, members.alpha),
        momentum=_f32(placed, members.momentum),
        active=placed.put_members(np.ones(members.size, bool)),
    )
    epochs = loop.Steps(total_steps=1 if incremental else options.max_iter)
    rules = EpochRules(members, options, has_validation, orders, epochs.total_steps)
    epoch = programs.epoch_program(engine, placed)
    result = loop.drive(epoch, state, data, None, epochs, between=rules)
    members.params, members.opt_state = result.state.params, result.state.opt_state
    if not options.early_stopping:
        members.best_params = members.params


@dataclasses.dataclass
class EpochRules:
    """scikit-learn's rules between two epochs for every member: `loop.drive`'s `between` hook.

    Called with the epoch state and the history (its last row the epoch's loss [K] and
    validation score [K]), it records the epoch in `members` and returns the state with each
    member's next learning rate, active flag and order of the rows (`orders` [K, N]), and True
    when no member trains on.
    """

    members: Members
    options: MLPOptions
    has_validation: bool
    orders: np.ndarray
    total_epochs: int
    done: np.ndarray = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.done = np.zeros(self.members.size, bool)
        # What the state on the device holds (train_stochastic's start: every member active).
        self._done_on_device = self.done.copy()
        self._rates = self.members.learning_rate.astype(np.float32)

    def __call__(
        self, state: programs.EpochState, history: list[dict[str, np.ndarray]]
    ) -> tuple[programs.EpochState, bool]:
        members, options = self.members, self.options
        loss, scores = history[-1]["loss"], history[-1]["score"]
        active = ~self.done
        members.n_iter += active
        members.samples_seen += active * self.orders.shape[1]  # the training rows
        members.record(active, loss, scores if self.has_validation else None)
        improved = self._count_no_improvement(active, loss, scores)
        if options.verbose:
            shown = int(np.flatnonzero(active)[np.argmin(loss[active])])
            print(f"Iteration {members.n_iter[shown]}, loss = {loss[shown]:.8f}")
            if options.early_stopping:
                print(f"Validation score: {scores[shown]:f}")
        sgd = options.solver == "sgd"
        if sgd and options.learning_rate == "invscaling":
            members.learning_rate = np.where(active, self._invscaling(), members.learning_rate)
        stop = active & ~np.isfinite(loss)
        patience = active & (members.no_improvement > options.n_iter_no_change)
        if sgd and options.learning_rate == "adaptive":
            reduce = patience & (members.learning_rate > MIN_ADAPTIVE_LR)
            members.learning_rate = np.where(
                reduce, members.learning_rate / ADAPTIVE_DIVISOR, members.learning_rate
            )
            members.no_improvement = np.where(reduce, 0, members.no_improvement)
            patience &= ~reduce
        stop |= patience
        if options.early_stopping and improved.any():
            members.best_params = programs.keep_where(
                members.placed.put_members(improved), state.params, members.best_params
            )
        self.done |= stop
        last = len(history) >= self.total_epochs
        return self._next_state(state, last), bool(self.done.all())

    def _next_state(self, state: programs.EpochState, last: bool) -> programs.EpochState:
        """The state with the members' next orders (shuffling, before an epoch that runs),
        learning rates and active flags, each put on the device only when an epoch changed it."""
        placed = self.members.placed
        if self.options.shuffle and not last and not self.done.all():
            self.members.draw_orders(self.orders, ~self.done)
            state = state.replace(orders=placed.put_members(self.orders))
        rates = self.members.learning_rate.astype(np.float32)
        if not np.array_equal(rates, self._rates):
            state, self._rates = state.replace(learning_rate=placed.put_members(rates)), rates
        if not np.array_equal(self.done, self._done_on_device):
            state = state.replace(active=placed.put_members(~self.done))
            self._done_on_device = self.done.copy()
        return state

    def _count_no_improvement(
        self, active: np.ndarray, loss: np.ndarray, scores: np.ndarray
    ) -> np.ndarray:
        """scikit-learn's `_no_improvement_count` and best loss (or best validation score) of
        the active members; returns bool [K]: the members whose validation score improved."""
        members, tol = self.members, self.options.tol
        # Each rule compares with the best before this epoch, as scikit-learn does; a NaN is
        # never worse nor an improvement, and never the best (Python's max and min).
        if self.options.early_stopping:
            worse = scores < members.best_score + tol
            improved = active & (scores > members.best_score)
            members.best_score = np.where(
                active, np.fmax(members.best_score, scores), members.best_score
            )
        else:
            worse = loss > members.best_loss - tol
            improved = np.zeros(members.size, bool)
            members.best_loss = np.where(
                active, np.fmin(members.best_loss, loss), members.best_loss
            )
        members.no_improvement = np.where(
            active, np.where(worse, members.no_improvement + 1, 0), members.no_improvement
        )
        return improved

    def _invscaling(self) -> np.ndarray:
        """sgd's `invscaling` rate of every member after its samples seen so far."""
        # Python's pow on the int, as scikit-learn's iteration_ends: the same float.
        members, power_t = self.members, self.options.power_t
        rates = zip(members.initial_learning_rate, members.samples_seen, strict=True)
        return np.asarray([float(r) / pow(int(t) + 1, power_t) for r, t in rates])


def train_lbfgs(
    engine: programs.Engine,
    members: Members,
    data: tuple[jax.Array, ...],
    options: MLPOptions,
    *,
    has_validation: bool,
) -> None:
    """Runs every member's L-BFGS (in place) from its current weights."""
    params, loss, n_iter, converged = programs.lbfgs_fn(engine)(
        members.params,
        _f32(members.placed, members.alpha),
        *data[:3],  # x, y, w
        np.int32(options.max_iter),
        np.int32(options.max_fun),
        np.float32(options.tol),
    )
    loss, n_iter, converged = (np.asarray(v) for v in jax.device_get((loss, n_iter, converged)))
    members.params = members.best_params = params
    members.n_iter = n_iter.astype(np.int64)
    members.converged = converged
    scores = np.asarray(programs.score_fn(engine)(params, *data[3:])) if has_validation else None
    members.record(np.ones(members.size, bool), loss, scores)
    members.best_loss = np.minimum(members.best_loss, loss.astype(np.float64))
    if options.verbose:
        best = int(np.nanargmin(np.where(np.isfinite(loss), loss, np.inf)))
        print(f"L-BFGS: {members.n_iter[best]} iterations, loss = {loss[best]:.8f}")
