"""scikit-learn drop-in estimators trained by jaxnn: `MLPClassifier` and `MLPRegressor`.

    from jaxnn.sklearn import MLPClassifier  # was: from sklearn.neural_network import ...

    clf = MLPClassifier(hidden_layer_sizes=(64,), n_restarts=8).fit(x_train, y_train)
    clf.predict(x_test), clf.score(x_test, y_test), clf.best_member_

They take scikit-learn's constructor parameters with the same meanings (docs/sklearn.md lists
each one that differs), plus `n_restarts` (random starts trained together in one vmapped
program, the best chosen on a validation split), `sweep`, `predict_with` and `model`.
"""

from __future__ import annotations

from jaxnn.sklearn.estimator import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
