"""scikit-learn's training semantics in jaxnn.sklearn, checked exactly: partial_fit is one
epoch with the optimiser's state kept, warm_start continues the members, a sample weight of 2
is a duplicated row, the members of a vmapped L-BFGS run are the single runs, float64 input
gives float64 attributes, sparse input is densified (refused above the memory bound), and the
user's Flax module trains as the body of FlaxClassifier / FlaxRegressor.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_iris, make_regression
from sklearn.preprocessing import StandardScaler

from jaxnn.sklearn import (
    FlaxClassifier,
    FlaxRegressor,
    MLPClassifier,
    MLPRegressor,
    estimator,
    training,
)
from jaxnn.sklearn import engine as programs
from jaxnn.sklearn.options import ParameterError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), y


def _member_params(est) -> list[np.ndarray]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(est._members.params)]


@pytest.mark.parametrize("shuffle", [False, True])
def test_an_epoch_steps_through_sklearns_batches_the_last_one_the_remainder(shuffle):
    # 70 rows in batches of 32: rows 0-31, 32-63, then the remainder 64-69 (scikit-learn's
    # gen_batches) of the epoch's order, each a plain SGD step on that batch's mean loss, from
    # weights set by hand. Shuffled, the order is the member's epoch 0 drawn on the host.
    x, y = make_regression(70, 3, random_state=0)
    x, y = np.asarray(x, np.float32), np.asarray(y / 100, np.float32)
    rng = np.random.default_rng(0)
    start = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(4, 1)).astype(np.float32)]
    biases = [np.zeros(4, np.float32), np.zeros(1, np.float32)]
    est = MLPRegressor(
        hidden_layer_sizes=(4,),
        solver="sgd",
        momentum=0.0,
        shuffle=shuffle,
        batch_size=32,
        alpha=0.0,
        learning_rate_init=0.01,
        n_restarts=1,
    )
    est.coefs_, est.intercepts_ = [c.copy() for c in start], [b.copy() for b in biases]
    est.partial_fit(x, y)

    def loss(params, xb, yb):
        (w0, w1), (b0, b1) = params
        out = jax.nn.relu(xb @ w0 + b0) @ w1 + b1
        return 0.5 * jnp.mean((out[:, 0] - yb) ** 2)

    order = np.arange(70)
    if shuffle:
        order = np.random.default_rng([*map(int, est._members.order_keys[0])]).permutation(70)
    params, total = (start, biases), 0.0
    for rows in (order[0:32], order[32:64], order[64:70]):
        value, grads = jax.value_and_grad(loss)(params, x[rows], y[rows])
        params = jax.tree_util.tree_map(lambda p, g: p - 0.01 * g, params, grads)
        total += float(value) * len(x[rows])
    for got, want in zip(est.coefs_ + est.intercepts_, params[0] + params[1], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert est.loss_curve_[0] == pytest.approx(total / 70, rel=1e-5)


def test_each_member_and_epoch_has_its_own_order():
    def members():
        values = {name: np.zeros(2) for name in ("learning_rate", "alpha", "momentum")}
        return training.Members.fresh(None, None, np.asarray([[1, 2], [3, 4]], np.uint32), values)

    drawn, orders = members(), np.zeros((2, 50), np.int32)
    drawn.draw_orders(orders, np.ones(2, bool))
    first = orders.copy()
    assert all(sorted(row) == list(range(50)) for row in first)
    assert not np.array_equal(first[0], first[1])
    drawn.draw_orders(orders, np.asarray([True, False]))  # member 1 does not train on
    assert not np.array_equal(orders[0], first[0])
    np.testing.assert_array_equal(orders[1], first[1])
    # A member's orders are its stream's alone: member 0's second is the second of a fresh one.
    again, other = members(), np.zeros((2, 50), np.int32)
    for _ in range(2):
        again.draw_orders(other, np.asarray([True, False]))
    np.testing.assert_array_equal(other[0], orders[0])


def test_partial_fit_twice_equals_one_fit_of_two_epochs(iris):
    x, y = iris
    options = dict(
        hidden_layer_sizes=(8,),
        solver="sgd",
        momentum=0.9,
        learning_rate_init=0.05,
        batch_size=32,
        n_restarts=3,
        tol=0.0,
        n_iter_no_change=100,
        random_state=0,
    )
    fitted = MLPClassifier(max_iter=2, **options).fit(x, y)
    partial = MLPClassifier(**options)
    partial.partial_fit(x, y, classes=np.unique(y))
    partial.partial_fit(x, y)
    for a, b in zip(_member_params(fitted), _member_params(partial), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert partial.loss_curve_ == pytest.approx(fitted.loss_curve_, rel=1e-6)
    assert partial.t_ == fitted.t_ == 2 * len(x)


def test_warm_start_continues_exactly(iris):
    # sgd without momentum keeps no optimiser state, which scikit-learn's warm start resets.
    x, y = iris
    options = dict(
        hidden_layer_sizes=(8,),
        solver="sgd",
        momentum=0.0,
        learning_rate_init=0.05,
        n_restarts=2,
        tol=0.0,
        n_iter_no_change=100,
        random_state=0,
    )
    straight = MLPClassifier(max_iter=5, **options).fit(x, y)
    warm = MLPClassifier(max_iter=3, warm_start=True, **options).fit(x, y)
    warm.set_params(max_iter=2).fit(x, y)
    for a, b in zip(_member_params(straight), _member_params(warm), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert warm.n_iter_ == 2 and len(warm.loss_curve_) == 5
    assert warm.loss_curve_ == pytest.approx(straight.loss_curve_, rel=1e-6)


@pytest.mark.parametrize("solver", ["sgd", "lbfgs"])
def test_a_sample_weight_of_two_equals_a_duplicated_row(solver):
    x, y = make_regression(40, 3, noise=1.0, random_state=0)
    y = y / 50.0
    doubled = np.arange(10)
    weights = np.ones(len(x))
    weights[doubled] = 2.0
    # One batch holding every row: the order of the rows does not matter.
    options = dict(
        hidden_layer_sizes=(6,),
        solver=solver,
        batch_size=1000,
        max_iter=20,
        n_restarts=2,
        random_state=0,
        learning_rate_init=0.05,
    )
    weighted = MLPRegressor(**options).fit(x, y, sample_weight=weights)
    duplicated = MLPRegressor(**options).fit(
        np.concatenate([x, x[doubled]]), np.concatenate([y, y[doubled]])
    )
    for a, b in zip(weighted.coefs_, duplicated.coefs_, strict=True):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


@pytest.mark.slow
def test_lbfgs_members_are_the_single_lbfgs_runs():
    x, y = make_regression(60, 4, noise=5.0, random_state=1)
    y = y / 100.0
    # Equal up to float32 rounding, for 20 iterations: L-BFGS's line search amplifies the last
    # bits that a vmapped program's vectorisation changes (over 40 they can grow to 5e-3).
    options = dict(hidden_layer_sizes=(8,), solver="lbfgs", max_iter=20, random_state=3)
    several = MLPRegressor(n_restarts=3, **options).fit(x, y)
    single = MLPRegressor(n_restarts=1, **options).fit(x, y)
    for a, b in zip(_member_params(several), _member_params(single), strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-3, atol=1e-4)
    # Every member of the vmapped run is the run of that member alone.
    engine = several._engine_
    data = (np.asarray(x, np.float32), np.asarray(y, np.float32)[:, None], np.ones(60, np.float32))
    starts, _ = training.start_members(
        engine,
        several._members.placed,
        several._seed,
        np.arange(3),
        data[0][:1],
        data,
        compile_epoch=False,
    )
    run = programs.lbfgs_fn(engine)
    for k in range(3):
        alone = run(
            jax.tree_util.tree_map(lambda leaf, k=k: leaf[k : k + 1], starts),
            np.full(1, 1e-4, np.float32),
            *data,
            20,
            15000,
            np.float32(1e-4),
        )[0]
        for a, b in zip(_member_params(several), jax.tree_util.tree_leaves(alone), strict=True):
            np.testing.assert_allclose(a[k], np.asarray(b)[0], rtol=1e-3, atol=1e-4)
    assert several.n_members_ == 3


def test_float64_input_gives_float64_attributes_and_outputs():
    x, y = make_regression(30, 3, random_state=0)
    reg = MLPRegressor(hidden_layer_sizes=(4,), max_iter=3, n_restarts=2, random_state=0)
    reg.fit(x.astype(np.float64), y)
    assert all(c.dtype == np.float64 for c in reg.coefs_ + reg.intercepts_)
    assert reg.predict(x).dtype == np.float64
    reg.fit(x.astype(np.float32), y)
    assert all(c.dtype == np.float32 for c in reg.coefs_ + reg.intercepts_)
    assert reg.predict(x.astype(np.float32)).dtype == np.float32


def test_sparse_input_is_densified_and_refused_above_the_bound(iris, monkeypatch):
    x, y = iris
    options = dict(hidden_layer_sizes=(4,), max_iter=3, n_restarts=2, random_state=0)
    dense = MLPClassifier(**options).fit(x, y)
    sparse = MLPClassifier(**options).fit(sp.csr_matrix(x), y)
    np.testing.assert_array_equal(dense.predict_proba(x), sparse.predict_proba(sp.csr_matrix(x)))
    monkeypatch.setattr(estimator, "MAX_DENSE_BYTES", 1000)
    with pytest.raises(ParameterError, match=r"GiB dense, over jaxnn\.sklearn.s bound") as raised:
        MLPClassifier(**options).fit(sp.csr_matrix(x), y)
    assert "\n" not in str(raised.value)


def test_multilabel_targets_get_one_logistic_output_each():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(80, 4))
    labels = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 0] + x[:, 1] > 0], axis=1).astype(int)
    clf = MLPClassifier(hidden_layer_sizes=(16,), solver="lbfgs", n_restarts=2, random_state=0)
    clf.fit(x, labels)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 3
    assert clf.predict(x).shape == (80, 3) and clf.score(x, labels) > 0.9
    assert not np.allclose(clf.predict_proba(x).sum(axis=1), 1.0)


class Body(nn.Module):
    width: int = 8

    @nn.compact
    def __call__(self, x):
        return nn.tanh(nn.Dense(self.width)(x))


def test_a_flax_module_trains_as_the_body_of_an_estimator(iris):
    x, y = iris
    clf = FlaxClassifier(
        module=Body(), max_iter=60, learning_rate_init=0.02, n_restarts=2, random_state=0
    )
    clf.fit(x, y)
    assert clf.score(x, y) > 0.9 and clf.out_activation_ == "softmax"
    assert "head" in clf._members.params
    reg = FlaxRegressor(module=Body(), solver="lbfgs", max_iter=50, n_restarts=2, random_state=0)
    xr, yr = make_regression(60, 3, noise=1.0, random_state=0)
    assert reg.fit(xr, yr / 100.0).score(xr, yr / 100.0) > 0.9
    with pytest.raises(ParameterError, match=r"module must be a flax\.linen\.Module"):
        FlaxClassifier(module="mlp").fit(x, y)
