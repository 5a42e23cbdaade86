"""scikit-learn drop-in estimators trained by jaxnn (docs/sklearn.md).

`MLPClassifier` and `MLPRegressor` replace scikit-learn's (changing the import line is enough);
`FlaxClassifier` and `FlaxRegressor` train the user's own `flax.linen` module the same way.
"""

from __future__ import annotations

from jaxnn.sklearn.flax_estimators import FlaxClassifier, FlaxRegressor
from jaxnn.sklearn.mlp import MLPClassifier, MLPRegressor

__all__ = ["FlaxClassifier", "FlaxRegressor", "MLPClassifier", "MLPRegressor"]
