"""scikit-learn drop-in estimators trained by jaxnn.

    from jaxnn.sklearn import MLPClassifier  # was: from sklearn.neural_network import ...

    clf = MLPClassifier(hidden_layer_sizes=(64,), n_restarts=8).fit(x_train, y_train)
    clf.predict(x_test), clf.score(x_test, y_test), clf.best_member_

`MLPClassifier` and `MLPRegressor` take scikit-learn's constructor parameters with the same
meanings (docs/sklearn.md lists each one), plus `n_restarts` (random starts trained together
in one vmapped program), `sweep`, `select_by`, `predict_with` and `model`. `FlaxClassifier`
and `FlaxRegressor` train the user's own `flax.linen` module the same way.
"""

from __future__ import annotations

from jaxnn.sklearn.flax_estimators import FlaxClassifier, FlaxRegressor
from jaxnn.sklearn.mlp import MLPClassifier, MLPRegressor

__all__ = ["FlaxClassifier", "FlaxRegressor", "MLPClassifier", "MLPRegressor"]
