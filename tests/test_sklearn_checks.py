"""scikit-learn's estimator checks on jaxnn.sklearn's estimators (`parametrize_with_checks`).

The estimators run with scikit-learn's own setting for its MLPs in its common tests
(`max_iter=100`, else the defaults). Random starts with selection on a validation split
(`n_restarts`) are tested in tests/test_sklearn.py.
"""

from __future__ import annotations

from sklearn.utils.estimator_checks import parametrize_with_checks

from jaxnn.sklearn import MLPClassifier, MLPRegressor

ESTIMATORS = [
    MLPClassifier(max_iter=100),
    MLPRegressor(max_iter=100),
]


def expected_failures(estimator) -> dict[str, str]:
    """Checks that fail by design, each with its reason: none. (scikit-learn itself skips
    check_array_api_input unless SCIPY_ARRAY_API is set, saying so.)"""
    return {}


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=expected_failures)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
