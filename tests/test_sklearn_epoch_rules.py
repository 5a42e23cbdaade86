"""scikit-learn's epoch rules as the hook of `jaxnn.core.loop.drive` (`jaxnn.sklearn.training.
EpochRules`) train as the estimators' own loop did: the same epochs and loss curves, member by
member, as fits recorded before the rules became a hook (tests/files/sklearn_epoch_rules.npz,
written by `record` below with the estimators of that version and the same seeds). The MLP fits
were recorded again, with the hook, when jaxnn's network began to draw its members on the host
(other initial weights; `flax_adam`, whose module starts through Flax, is the first record)."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import flax.linen as nn
import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.preprocessing import StandardScaler

from jaxnn.sklearn import FlaxClassifier, MLPClassifier, MLPRegressor

REFERENCE = Path(__file__).parent / "files" / "sklearn_epoch_rules.npz"


class Body(nn.Module):
    @nn.compact
    def __call__(self, x):
        return nn.relu(nn.Dense(8)(x))


SMALL = dict(hidden_layer_sizes=(8,), n_restarts=3)
FITS = {
    # sgd's adaptive rate: divided by 5 when the loss stalls, a member stops at the floor
    "sgd_adaptive": lambda: MLPClassifier(
        solver="sgd",
        learning_rate="adaptive",
        learning_rate_init=0.5,
        n_iter_no_change=2,
        tol=1e-3,
        max_iter=60,
        random_state=2,
        **SMALL,
    ),
    # early stopping on the validation score, the best weights kept
    "adam_early_stopping": lambda: MLPClassifier(
        early_stopping=True,
        learning_rate_init=0.01,
        n_iter_no_change=4,
        max_iter=60,
        random_state=1,
        **SMALL,
    ),
    # invscaling's rate from the samples seen, a training-loss stop with a large tol
    "sgd_invscaling_regressor": lambda: MLPRegressor(
        solver="sgd", learning_rate="invscaling", tol=1e-2, max_iter=60, random_state=5, **SMALL
    ),
    "flax_adam": lambda: FlaxClassifier(
        module=Body(), n_iter_no_change=2, tol=1e-3, max_iter=40, n_restarts=2, random_state=7
    ),
}


def _data(name: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = load_iris(return_X_y=True)
    x = StandardScaler().fit_transform(x)
    return (x, x[:, 0] + y) if "regressor" in name else (x, y)


def _fit(name: str) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        estimator = FITS[name]().fit(*_data(name))
    return {
        "n_iter": np.asarray(estimator.results_["n_iter"]),
        "loss_curve": np.asarray(estimator.loss_curve_),
        "best_member": np.asarray(estimator.best_member_),
    }


def record(path: str) -> None:
    """Writes the reference (run with the version to compare against on the import path)."""
    fits = {f"{name}/{key}": value for name in FITS for key, value in _fit(name).items()}
    np.savez(path, **fits)


@pytest.mark.parametrize("name", sorted(FITS))
def test_the_hook_trains_as_the_recorded_fits(name):
    reference = np.load(REFERENCE)
    fit = _fit(name)
    np.testing.assert_array_equal(fit["n_iter"], reference[f"{name}/n_iter"])
    assert int(fit["best_member"]) == int(reference[f"{name}/best_member"])
    np.testing.assert_allclose(fit["loss_curve"], reference[f"{name}/loss_curve"], rtol=1e-5)


if __name__ == "__main__":
    record(sys.argv[1])
