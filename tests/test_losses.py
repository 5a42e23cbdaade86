"""Tests of jaxnn.nn.losses and jaxnn.nn.metrics: each loss against numpy, task checks,
predictions and metrics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics

from jaxnn.errors import ConfigError
from jaxnn.nn import losses
from jaxnn.nn import metrics as nn_metrics


@pytest.fixture(autouse=True)
def _strict_dtype_promotion():
    # A context manager rather than jax.config.update: the setting must not leak into other
    # test modules of the same pytest process.
    with jax.numpy_dtype_promotion("strict"):
        yield


RNG = np.random.default_rng(0)
OUTPUTS = (RNG.normal(size=(7, 4)) * 3).astype(np.float32)
LABELS = RNG.integers(0, 4, size=7).astype(np.int32)
ONE_HOT = np.eye(4, dtype=np.float32)[LABELS]
TARGETS = (RNG.normal(size=(7, 4)) * 3).astype(np.float32)


def _np_huber(errors: np.ndarray, delta: float) -> np.ndarray:
    a = np.abs(errors)
    return np.where(a <= delta, 0.5 * errors**2, delta * (a - 0.5 * delta))


def _np_loss(name: str, outputs: np.ndarray, targets: np.ndarray, delta: float) -> np.ndarray:
    """Per-example losses of float targets [B, O], computed directly in float64."""
    o, t = outputs.astype(np.float64), targets.astype(np.float64)
    if name == "cross_entropy":
        log_softmax = o - np.log(np.exp(o).sum(axis=1, keepdims=True))
        return -(t * log_softmax).sum(axis=1)
    if name == "binary_cross_entropy":
        p = 1 / (1 + np.exp(-o))
        return -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)
    if name == "mse":
        return ((o - t) ** 2).mean(axis=1)
    if name == "mae":
        return np.abs(o - t).mean(axis=1)
    return _np_huber(o - t, delta).mean(axis=1)


def test_registry_holds_the_documented_names():
    assert set(losses.LOSSES) == {"cross_entropy", "binary_cross_entropy", "mse", "mae", "huber"}


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_classification_loss_matches_numpy(name):
    got = losses.per_example_loss(name, jnp.asarray(OUTPUTS), jnp.asarray(LABELS), huber_delta=0.7)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, _np_loss(name, OUTPUTS, ONE_HOT, 0.7), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
def test_regression_loss_matches_numpy(name):
    got = losses.per_example_loss(name, jnp.asarray(OUTPUTS), jnp.asarray(TARGETS), huber_delta=0.7)
    assert got.shape == (7,)
    np.testing.assert_allclose(got, _np_loss(name, OUTPUTS, TARGETS, 0.7), rtol=1e-5, atol=1e-6)


def test_huber_delta_changes_the_loss():
    big = losses.per_example_loss(
        "huber", jnp.asarray(OUTPUTS), jnp.asarray(TARGETS), huber_delta=100.0
    )
    mse = losses.per_example_loss("mse", jnp.asarray(OUTPUTS), jnp.asarray(TARGETS))
    np.testing.assert_allclose(big, 0.5 * mse, rtol=1e-5)


def test_float_targets_must_match_outputs():
    with pytest.raises(ValueError, match="do not match"):
        losses.per_example_loss("mse", jnp.asarray(OUTPUTS), jnp.asarray(TARGETS[:, :2]))


def test_unknown_loss_lists_choices():
    with pytest.raises(ConfigError) as raised:
        losses.per_example_loss("hinge", jnp.asarray(OUTPUTS), jnp.asarray(LABELS))
    assert "'hinge'" in str(raised.value)
    assert ", ".join(sorted(losses.LOSSES)) in str(raised.value)


@pytest.mark.parametrize("name", sorted(losses.LOSSES))
def test_every_loss_suits_classification(name):
    losses.check_loss_for_task(name, "classification")


@pytest.mark.parametrize("name", ["mse", "mae", "huber"])
def test_elementwise_losses_suit_regression(name):
    losses.check_loss_for_task(name, "regression")


@pytest.mark.parametrize("name", ["cross_entropy", "binary_cross_entropy"])
def test_classification_losses_reject_regression(name):
    with pytest.raises(ConfigError, match=f"loss '{name}' needs a classification.*huber, mae, mse"):
        losses.check_loss_for_task(name, "regression")


def test_check_loss_for_task_rejects_unknown_names():
    with pytest.raises(ConfigError, match="loss"):
        losses.check_loss_for_task("hinge", "classification")
    with pytest.raises(ConfigError, match=r"task.*classification, regression"):
        losses.check_loss_for_task("mse", "ranking")


def test_predictions():
    outputs = jnp.asarray(OUTPUTS)
    softmax = losses.predictions("cross_entropy", "classification", outputs)
    np.testing.assert_allclose(softmax.sum(axis=1), np.ones(7), rtol=1e-6)
    np.testing.assert_allclose(
        softmax, np.exp(OUTPUTS) / np.exp(OUTPUTS).sum(1, keepdims=True), rtol=1e-5
    )
    sigmoid = losses.predictions("binary_cross_entropy", "classification", outputs)
    np.testing.assert_allclose(sigmoid, 1 / (1 + np.exp(-OUTPUTS)), rtol=1e-5)
    for name, task in [("mse", "classification"), ("huber", "regression"), ("mae", "regression")]:
        np.testing.assert_array_equal(losses.predictions(name, task, outputs), OUTPUTS)


def test_accuracy_matches_sklearn():
    scores = RNG.normal(size=(50, 5)).astype(np.float32)
    labels = RNG.integers(0, 5, size=50).astype(np.int32)
    expected = metrics.accuracy_score(labels, scores.argmax(axis=1))
    assert float(nn_metrics.accuracy(jnp.asarray(scores), jnp.asarray(labels))) == pytest.approx(
        expected
    )
    assert 0 < expected < 1  # the comparison is not trivially 0 or 1


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_r2_and_rmse_match_sklearn(num_outputs):
    targets = RNG.normal(size=(40, num_outputs)).astype(np.float32)
    predictions = (targets + 0.5 * RNG.normal(size=(40, num_outputs))).astype(np.float32)
    predictions[:, -1] *= 1.7  # outputs differ, so the average over outputs matters
    r2 = nn_metrics.r2(jnp.asarray(predictions), jnp.asarray(targets))
    assert float(r2) == pytest.approx(metrics.r2_score(targets, predictions), rel=1e-5)
    rmse = nn_metrics.rmse(jnp.asarray(predictions), jnp.asarray(targets))
    expected = metrics.root_mean_squared_error(targets, predictions)
    assert float(rmse) == pytest.approx(expected, rel=1e-5)


def test_r2_and_rmse_accept_one_dimensional_arrays():
    targets = RNG.normal(size=30).astype(np.float32)
    predictions = (targets + 0.3 * RNG.normal(size=30)).astype(np.float32)
    r2 = nn_metrics.r2(jnp.asarray(predictions), jnp.asarray(targets))
    assert float(r2) == pytest.approx(metrics.r2_score(targets, predictions), rel=1e-5)
    rmse = nn_metrics.rmse(jnp.asarray(predictions), jnp.asarray(targets))
    assert float(rmse) == pytest.approx(
        metrics.root_mean_squared_error(targets, predictions), rel=1e-5
    )


def test_r2_of_constant_targets_follows_sklearn():
    targets = np.ones((10, 2), np.float32)
    predictions = targets.copy()
    predictions[:, 1] += 0.5
    got = nn_metrics.r2(jnp.asarray(predictions), jnp.asarray(targets))
    assert float(got) == pytest.approx(metrics.r2_score(targets, predictions))
    assert float(got) == pytest.approx(0.5)


def test_valid_loss_config_passes():
    losses.validate_loss_config("huber", 0.5)
    losses.validate_loss_config("cross_entropy", 1.0)


@pytest.mark.parametrize(
    "loss, huber_delta, field",
    [
        ("hinge", 1.0, "loss"),
        ("", 1.0, "loss"),
        ("huber", 0.0, "huber_delta"),
        ("huber", -1.0, "huber_delta"),
        ("mse", float("nan"), "huber_delta"),
        ("mse", float("inf"), "huber_delta"),
    ],
)
def test_bad_loss_config_names_the_field(loss, huber_delta, field):
    with pytest.raises(ConfigError, match=field) as raised:
        losses.validate_loss_config(loss, huber_delta)
    assert "\n" not in str(raised.value)
