"""Classification and regression for jaxnn.sklearn's estimators: targets, outputs, prediction.

A classifier encodes its labels with scikit-learn's `LabelBinarizer`: one logistic output for
two classes, a softmax over n > 2 classes, one logistic output per label for multilabel
targets. A regressor predicts [n, n_targets] (raveled for one target) with the identity
output, or with exp for `loss='poisson'`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import _check_partial_fit_first_call, type_of_target, unique_labels

from jaxnn.sklearn.estimator import BaseNetwork
from jaxnn.sklearn.options import REGRESSION_LOSSES, STOCHASTIC_SOLVERS, MLPOptions


def _check_solver(estimator: BaseNetwork) -> bool:
    """partial_fit exists for the stochastic solvers only (an AttributeError otherwise)."""
    if estimator.solver not in STOCHASTIC_SOLVERS:
        raise AttributeError(
            f"partial_fit is only available for stochastic optimizers. {estimator.solver} is "
            "not stochastic."
        )
    return True


class Classifier(ClassifierMixin, BaseNetwork):
    """A network classifier: labels in, labels and probabilities out."""

    _task = "classification"

    def _targets(self, y: Any, *, incremental: bool) -> Any:
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                )
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        return self._label_binarizer.transform(y)

    def _validation_targets(self, y: Any) -> Any:
        unknown = np.setdiff1d(unique_labels(y), self.classes_)
        if len(unknown):
            raise ValueError(
                f"y_val has labels {list(unknown[:5])} that y lacks; y's classes are "
                f"{list(self.classes_)}"
            )
        return self._label_binarizer.transform(y)

    def _output(self, options: MLPOptions) -> str:
        return "softmax" if self._label_binarizer.y_type_ == "multiclass" else "logistic"

    @available_if(_check_solver)
    def partial_fit(
        self, X: Any, y: Any, sample_weight: Any = None, classes: Any = None
    ) -> Classifier:
        """One epoch over X, y from the members' current state (the optimiser's kept).

        classes: every label of the whole data, required on the first call.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_binarizer = LabelBinarizer()
            if type_of_target(y).startswith("multilabel"):
                self._label_binarizer.fit(y)
            else:
                self._label_binarizer.fit(classes)
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities [n_samples, n_classes] in the order of `classes_` (independent
        probabilities [n_samples, n_labels] for multilabel targets)."""
        probabilities = self._predictions(X)
        if self.n_outputs_ == 1:
            positive = probabilities.ravel()
            return np.vstack([1 - positive, positive]).T
        return probabilities

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """Logarithms of `predict_proba`."""
        return np.log(self.predict_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels [n_samples] from `classes_` ([n_samples, n_labels] multilabel)."""
        probabilities = self._predictions(X)
        if self.n_outputs_ == 1:
            probabilities = probabilities.ravel()
        return self._label_binarizer.inverse_transform(probabilities)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class Regressor(RegressorMixin, BaseNetwork):
    """A network regressor: one or several targets."""

    _task = "regression"

    def _targets(self, y: Any, *, incremental: bool) -> Any:
        return np.asarray(y).reshape(len(y), -1)

    def _validation_targets(self, y: Any) -> Any:
        return np.asarray(y, np.float64).reshape(len(y), -1)

    def _output(self, options: MLPOptions) -> str:
        return REGRESSION_LOSSES[options.loss]

    @available_if(_check_solver)
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> Regressor:
        """One epoch over X, y from the members' current state (the optimiser's kept)."""
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predictions [n_samples] (one target) or [n_samples, n_targets]."""
        predictions = self._predictions(X)
        return predictions.ravel() if self.n_outputs_ == 1 else predictions

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
