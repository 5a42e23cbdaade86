"""jaxnn.sklearn's estimators as a scikit-learn user meets them: a script whose import line is
changed, Pipeline / GridSearchCV / cross_val_score, random starts and their selection, the
solver's arithmetic against scikit-learn's, its stopping rules, pickling, and bad parameters.

Every fit is small (iris or a few blobs, a hidden layer of 8 to 16 units), and fits of the
same shapes share one compiled program.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.datasets import load_iris, make_regression
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

from jaxnn.errors import JaxnnError
from jaxnn.sklearn import FlaxClassifier, MLPClassifier, MLPRegressor
from jaxnn.sklearn.estimator import MAX_SEED
from jaxnn.sklearn.network import SklearnMLP
from jaxnn.sklearn.options import ParameterError

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

REPO = Path(__file__).resolve().parent.parent
SMALL = dict(hidden_layer_sizes=(16,), max_iter=60, learning_rate_init=0.01)


@pytest.fixture(scope="module")
def iris():
    x, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(x), np.asarray(["setosa", "versicolor", "virginica"])[y]


SCRIPT = """\
from sklearn.neural_network import MLPClassifier
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

X, y = load_iris(return_X_y=True)
X = StandardScaler().fit_transform(X)
X_train, X_test, y_train, y_test = train_test_split(X, y, stratify=y, random_state=1)
clf = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=100,
                    random_state=1)
clf.fit(X_train, y_train)
test_accuracy = clf.score(X_test, y_test)
"""


def test_changing_the_import_line_gives_random_starts():
    script = SCRIPT.replace(
        "from sklearn.neural_network import MLPClassifier",
        "from jaxnn.sklearn import MLPClassifier",
    )
    assert script != SCRIPT
    namespace: dict = {}
    exec(compile(script, "sklearn_script.py", "exec"), namespace)
    clf = namespace["clf"]
    assert type(clf).__module__.startswith("jaxnn.sklearn")
    assert clf.n_members_ == 8
    assert len(clf.results_["member"]) == 8 and clf.results_["selected"].sum() == 1
    assert clf.results_["selected"][clf.best_member_]
    assert namespace["test_accuracy"] > 0.8


def test_pipeline_grid_search_and_cross_val_score(iris):
    x, y = iris
    pipeline = make_pipeline(StandardScaler(), MLPClassifier(n_restarts=2, random_state=0, **SMALL))
    search = GridSearchCV(pipeline, {"mlpclassifier__alpha": [1e-4, 1e-1]}, cv=3).fit(x, y)
    assert search.best_params_["mlpclassifier__alpha"] in (1e-4, 1e-1)
    assert set(search.predict(x)) <= set(y)
    scores = cross_val_score(MLPClassifier(n_restarts=2, random_state=0, **SMALL), x, y, cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.6)


def test_refits_of_the_same_shapes_compile_nothing(iris):
    x, y = iris
    MLPClassifier(alpha=1e-4, random_state=0, **SMALL).fit(x, y)
    compiles = []

    def listener(event, duration, **kwargs):
        if "backend_compile" in event:
            compiles.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    first = MLPClassifier(alpha=1e-4, random_state=3, **SMALL).fit(x, y)
    second = MLPClassifier(alpha=1.0, random_state=3, **{**SMALL, "learning_rate_init": 0.003})
    second.fit(x, y)
    assert compiles == []
    assert second._engine_ == first._engine_
    # The values the program stands in for are the fit's own: the two fits train differently.
    assert first.loss_curve_[-1] != pytest.approx(second.loss_curve_[-1])


@pytest.mark.parametrize(
    "make, lowerings",
    [
        # jaxnn's network draws its members on the host: the epoch is its one program.
        (lambda: MLPClassifier(n_restarts=2, random_state=0, **{**SMALL, "max_iter": 3}), 1),
        # A user's module starts through its Flax init, a program of its own, while the epoch
        # compiles in a second thread from the members' shapes: the fit's own compile of the
        # epoch must find it, not lower it a second time.
        (lambda: FlaxClassifier(module=TinyNet(), n_restarts=2, random_state=0, max_iter=3), 2),
    ],
)
def test_a_first_fit_lowers_each_program_once(iris, empty_program_store, make, lowerings):
    # (An empty store of compiled programs: one that holds them lowers nothing at all.)
    x, y = iris
    x = np.hstack([x, x[:, :1]])  # a width no other test fits: nothing is compiled for it yet
    lowered = []

    def listener(event, duration, **kwargs):
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration":
            lowered.append(event)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        make().fit(x, y)
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    assert len(lowered) == lowerings


def test_members_start_from_sklearns_bounds_drawn_per_start():
    net = SklearnMLP(hidden=(16,), activation="relu", num_outputs=3)
    params, keys = net.draw_members(4, seed=7, starts=[0, 1, 0])
    kernel, bias = params["layer_0"]["kernel"], params["layer_0"]["bias"]
    assert kernel.shape == (3, 4, 16) and bias.shape == (3, 16) and keys.shape == (3, 2)
    bound = (6.0 / (4 + 16)) ** 0.5
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.8 * bound
    assert np.abs(bias).max() <= bound
    # A member's draw is its start's alone: starts 0 and 0 agree, 0 and 1 do not.
    np.testing.assert_array_equal(kernel[0], kernel[2])
    np.testing.assert_array_equal(keys[0], keys[2])
    assert not np.allclose(kernel[0], kernel[1]) and not np.array_equal(keys[0], keys[1])
    logistic = SklearnMLP(hidden=(16,), activation="sigmoid", num_outputs=3)
    drawn = logistic.draw_members(4, seed=7, starts=[0])[0]["layer_1"]["kernel"]
    assert np.abs(drawn).max() <= (2.0 / (16 + 3)) ** 0.5


def test_a_fit_under_a_threads_x64_switch_trains_in_float64_without_warnings(iris):
    # The epoch compiles in a second thread: it must see this thread's x64 switch too.
    x, y = iris
    with jax.enable_x64(True), warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(n_restarts=2, random_state=0, **{**SMALL, "max_iter": 3}).fit(x, y)
        assert clf.predict_proba(x).dtype == np.float64
    assert clf.coefs_[0].dtype == np.float64


SPLIT_FIT = textwrap.dedent(
    """
    import json, pickle, warnings
    import jax
    import numpy as np
    from sklearn.datasets import load_iris
    from jaxnn.sklearn import MLPClassifier, training

    assert jax.local_device_count() == 2
    warnings.simplefilter("ignore")
    x, y = load_iris(return_X_y=True)
    lowered = []
    jax.monitoring.register_event_duration_secs_listener(
        lambda event, duration, **kw: lowered.append(event)
        if event == "/jax/core/compile/jaxpr_to_mlir_module_duration" else None
    )
    fits = {}
    for split, work in (("one device", 10**12), ("split", 0)):
        training.SPLIT_WORK = work
        fit = MLPClassifier((16,), n_restarts=4, max_iter=30, random_state=0).fit(x, y)
        kernel = fit._members.params["layer_0"]["kernel"]
        fits[split] = {
            "devices": len(kernel.sharding.device_set),
            "n_iter": fit.results_["n_iter"].tolist(),
            "loss_curve": fit.loss_curve_,
            "predicted": fit.predict(x).tolist(),
        }
        # A split fit pickles (a mesh's devices do not) and goes on where it is loaded, its
        # members placed as before: the programs compiled for them serve again.
        loaded = pickle.loads(pickle.dumps(fit))
        fits[split]["loaded predicted"] = loaded.predict(x).tolist()
        lowered.clear()
        loaded.partial_fit(x, y)
        fits[split]["loaded epochs"] = len(loaded.loss_curve_)
        fits[split]["loaded lowered"] = len(lowered)
    # L-BFGS's run is one loop over every member: it stays on one device, as on an
    # accelerator (where the split was not measured).
    lbfgs = MLPClassifier((16,), solver="lbfgs", n_restarts=4, max_iter=10).fit(x, y)
    fits["lbfgs devices"] = len(lbfgs._members.params["layer_0"]["kernel"].sharding.device_set)
    training.jax.default_backend = lambda: "gpu"
    other = MLPClassifier((16,), n_restarts=4, max_iter=5).fit(x, y)
    fits["gpu devices"] = len(other._members.params["layer_0"]["kernel"].sharding.device_set)
    print(json.dumps(fits))
    """
)


def test_members_split_over_the_devices_train_as_on_one(tmp_path):
    # The tests run on one CPU device (conftest): a process of two, as `import jaxnn` makes on
    # a two-core machine, fits with its members on one device and split over both (its
    # compilation cache a directory of the test's, never the user's).
    env = {**os.environ, "JAXNN_SPLIT_CPU": "1", "PYTHONPATH": str(REPO)}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", SPLIT_FIT], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    fits = json.loads(done.stdout.strip().splitlines()[-1])
    one, split = fits["one device"], fits["split"]
    assert (one["devices"], split["devices"]) == (1, 2)
    assert fits["lbfgs devices"] == fits["gpu devices"] == 1
    assert split["n_iter"] == one["n_iter"] and split["predicted"] == one["predicted"]
    for fit in (one, split):
        assert fit["loaded predicted"] == fit["predicted"]
        assert fit["loaded epochs"] == len(fit["loss_curve"]) + 1
        assert fit["loaded lowered"] == 0
    np.testing.assert_allclose(split["loss_curve"], one["loss_curve"], rtol=1e-5)


def test_labels_are_encoded_and_decoded_in_sorted_order(iris):
    x, y = iris
    clf = MLPClassifier(random_state=0, **SMALL).fit(x, y)
    assert list(clf.classes_) == ["setosa", "versicolor", "virginica"]
    assert clf.predict(x).dtype == y.dtype
    proba = clf.predict_proba(x)
    assert proba.shape == (150, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(x))
    assert clf.score(x, y) > 0.8


def test_member_zero_of_random_starts_is_the_single_fit(iris):
    # The same random_state gives the same validation split, and member 0 the same key.
    x, y = iris
    options = dict(early_stopping=True, random_state=5, **SMALL)
    single = MLPClassifier(n_restarts=1, **options).fit(x, y)
    several = MLPClassifier(n_restarts=3, **options).fit(x, y)
    assert several.n_members_ == 3
    assert several.results_["n_iter"][0] == single.n_iter_
    np.testing.assert_allclose(several.results_["final_loss"][0], single.loss_, rtol=1e-5)
    np.testing.assert_allclose(
        several.results_["best_validation_score"][0], single.best_validation_score_, rtol=1e-6
    )


def test_selection_keeps_the_best_validation_score_and_the_ensemble_averages(iris):
    x, y = iris
    clf = MLPClassifier(n_restarts=4, select_by="validation", random_state=2, **SMALL).fit(x, y)
    scores = np.where(clf.results_["diverged"], -np.inf, clf.results_["validation_score"])
    assert clf.best_member_ == int(np.argmax(scores))
    per_member = []
    best = clf.best_member_
    for member in range(clf.n_members_):
        clf.best_member_ = member
        per_member.append(clf.predict_proba(x))
    clf.best_member_ = best
    clf.set_params(predict_with="ensemble")
    np.testing.assert_allclose(clf.predict_proba(x), np.mean(per_member, axis=0), rtol=1e-5)
    assert clf.predict_proba(x) != pytest.approx(per_member[best])


def _sklearn_stop_epoch(values, *, tol, n_iter_no_change, greater_is_better):
    """The epoch (1-based) at which scikit-learn's _update_no_improvement_count stops."""
    best, count = (-np.inf if greater_is_better else np.inf), 0
    for epoch, value in enumerate(values, start=1):
        worse = value < best + tol if greater_is_better else value > best - tol
        count = count + 1 if worse else 0
        best = max(best, value) if greater_is_better else min(best, value)
        if count > n_iter_no_change:
            return epoch
    return len(values)


def test_early_stopping_follows_sklearn_and_keeps_the_best_weights(iris):
    x, y = iris
    clf = MLPClassifier(
        n_restarts=1, early_stopping=True, n_iter_no_change=3, tol=1e-3, random_state=4, **SMALL
    ).fit(x, y)
    scores = clf.validation_scores_
    assert clf.n_iter_ == len(scores) == len(clf.loss_curve_)
    assert clf.n_iter_ == _sklearn_stop_epoch(
        scores, tol=1e-3, n_iter_no_change=3, greater_is_better=True
    )
    assert clf.best_validation_score_ == pytest.approx(max(scores))
    assert clf.best_loss_ is None
    # The kept weights are those of the best validation score: rebuild scikit-learn's split
    # (not stratified for more than two classes, as scikit-learn's).
    rng = check_random_state(4)
    rng.randint(MAX_SEED)
    _, x_val, _, y_val = train_test_split(x, y, random_state=rng, test_size=0.1)
    assert clf.score(x_val, y_val) == pytest.approx(clf.best_validation_score_)


def test_training_loss_convergence_follows_sklearn(iris):
    x, y = iris
    clf = MLPClassifier(n_restarts=1, n_iter_no_change=2, tol=0.05, random_state=0, **SMALL).fit(
        x, y
    )
    assert clf.n_iter_ < SMALL["max_iter"]
    assert clf.n_iter_ == _sklearn_stop_epoch(
        clf.loss_curve_, tol=0.05, n_iter_no_change=2, greater_is_better=False
    )
    assert clf.validation_scores_ is None and clf.best_validation_score_ is None
    assert clf.best_loss_ == pytest.approx(min(clf.loss_curve_))
    assert clf.t_ == clf.n_iter_ * len(x)


def test_max_iter_without_convergence_warns_as_sklearn(iris):
    x, y = iris
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        MLPClassifier(n_restarts=1, tol=0.0, n_iter_no_change=1000, random_state=0, **SMALL).fit(
            x, y
        )


def test_adaptive_divides_the_learning_rate_before_stopping(iris):
    x, y = iris
    clf = MLPClassifier(
        n_restarts=1,
        solver="sgd",
        learning_rate="adaptive",
        n_iter_no_change=1,
        tol=10.0,  # never an improvement: every second epoch divides the rate by 5
        random_state=0,
        **{**SMALL, "max_iter": 30},
    ).fit(x, y)
    # Epoch 1 sets the best loss; from then on every second epoch triggers: it divides the
    # rate by 5 while the rate is above 1e-6, and stops the member the first time it is not.
    rate, epoch = np.float32(0.01), 1
    while True:
        epoch += 2
        if rate <= 1e-6:
            break
        rate /= np.float32(5.0)
    assert clf.n_iter_ == epoch


def test_sweep_and_restarts_share_one_program(iris):
    x, y = iris
    clf = MLPClassifier(
        n_restarts=2, sweep="optimizer.learning_rate=[0.001, 0.03]", random_state=0, **SMALL
    ).fit(x, y)
    assert clf.n_members_ == 4
    np.testing.assert_allclose(clf.results_["learning_rate"], [0.001, 0.001, 0.03, 0.03])
    np.testing.assert_array_equal(clf.results_["seed_index"], [0, 1, 0, 1])
    # Same start, other learning rate: another end.
    assert clf.results_["final_loss"][0] != pytest.approx(clf.results_["final_loss"][2])


class TinyNet(nn.Module):
    num_outputs: int = 3

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.num_outputs, name="head")(jnp.tanh(nn.Dense(8)(x)))


def test_a_flax_module_as_the_model(iris):
    x, y = iris
    clf = MLPClassifier(model=TinyNet(), random_state=0, **SMALL).fit(x, y)
    assert clf.score(x, y) > 0.8
    assert not hasattr(clf, "coefs_")


def test_coefs_and_intercepts_have_sklearns_layout(iris):
    x, y = iris
    clf = MLPClassifier(hidden_layer_sizes=(16, 5), random_state=0, max_iter=5).fit(x, y)
    assert [c.shape for c in clf.coefs_] == [(4, 16), (16, 5), (5, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (5,), (3,)]
    assert clf.n_layers_ == 4 and clf.out_activation_ == "softmax"


def test_regressor_outputs_in_target_units_one_or_several_targets():
    x, y = make_regression(200, 5, n_targets=2, noise=1.0, random_state=0)
    y = y / 50.0
    reg = MLPRegressor(random_state=0, **SMALL).fit(x, y)
    assert reg.predict(x).shape == (200, 2)
    assert reg.score(x, y) > 0.8
    single = MLPRegressor(random_state=0, **SMALL).fit(x, y[:, 0])
    assert single.predict(x).shape == (200,)
    assert single.out_activation_ == "identity"


def test_pickled_estimator_predicts_the_same(iris):
    x, y = iris
    clf = MLPClassifier(n_restarts=2, random_state=0, **SMALL).fit(x, y)
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(x), clf.predict_proba(x))


def test_warm_start_continues_from_the_last_weights(iris):
    x, y = iris
    clf = MLPClassifier(n_restarts=1, warm_start=True, random_state=0, **SMALL).fit(x, y)
    first = list(clf.loss_curve_)
    clf.fit(x, y)
    # scikit-learn's loss_curve_ goes on from the last fit's (tests/test_sklearn_semantics.py
    # checks that the weights go on exactly).
    assert clf.loss_curve_[: len(first)] == first
    assert clf.loss_curve_[len(first)] < first[0]
    assert clf.loss_curve_[len(first)] == pytest.approx(first[-1], rel=0.2)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(solver="newton"), "solver must be one of"),
        (dict(shuffle=1), "shuffle must be True or False"),
        (dict(activation="swish"), "activation must be one of"),
        (dict(momentum=1.5, solver="sgd"), "momentum must be in"),
        (dict(n_iter_no_change=0), "n_iter_no_change must be"),
        (dict(select_by="median"), "select_by must be one of"),
        (dict(hidden_layer_sizes=(0,)), "hidden_layer_sizes must be"),
        (dict(predict_with="median"), "predict_with must be one of"),
        (dict(sweep="optimizer.learning_rate=[-1.0]"), "learning_rate"),
        (dict(sweep="model.hidden=[(4,), (8,)]"), "sweep may vary"),
        (dict(n_restarts=0), "n_restarts must be an integer >= 1"),
    ],
)
def test_bad_parameters_are_one_line_value_errors(iris, params, message):
    x, y = iris
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is trained: no ConvergenceWarning either
        with pytest.raises(ParameterError, match=message) as raised:
            MLPClassifier(**{**SMALL, **params}).fit(x, y)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, JaxnnError)
    assert "\n" not in str(raised.value)


def test_bad_inputs_to_predict(iris):
    x, y = iris
    clf = MLPClassifier(random_state=0, **SMALL).fit(x, y)
    with pytest.raises(ValueError, match="X has 3 features, but MLPClassifier is expecting 4"):
        clf.predict(x[:, :3])
    with pytest.raises(ValueError, match="NaN"):
        clf.predict(np.where(np.eye(150, 4) > 0, np.nan, x))
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier(**SMALL).fit(x, np.linspace(0, 1, 150))


def test_a_given_validation_set_selects_the_member(iris):
    x, y = iris
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.3, random_state=0)
    clf = MLPClassifier(n_restarts=3, random_state=0, **SMALL)
    clf.fit(x_train, y_train, X_val=x_val, y_val=y_val)
    assert clf.results_["validation_score"][clf.best_member_] == pytest.approx(
        clf.score(x_val, y_val)
    )
    assert len(clf.validation_scores_) == clf.n_iter_
    with pytest.raises(ValueError, match="y_val has labels"):
        clf.fit(x_train, y_train, X_val=x_val, y_val=np.full(len(x_val), "rose"))
