"""scikit-learn's bundled and generated data sets as TFDS builders (no download)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from jaxnn.data.builders.base import ArrayBuilder

TEST_SIZE = 0.2
SPLIT_RANDOM_STATE = 0


def train_test(
    features: np.ndarray, targets: np.ndarray, **options: Any
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (x, y), "test": (x, y)} by `train_test_split(..., random_state=0, **options)`."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        features, targets, random_state=SPLIT_RANDOM_STATE, **options
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


class Digits(ArrayBuilder):
    """scikit-learn's 8x8 handwritten digits (`load_digits`): 1797 x 64 pixels (0..16), 10 classes.

    Split once by `train_test_split(test_size=0.2, random_state=0, stratify=labels)`:
    1437 train / 360 test, in the order that call returns.
    """

    name = "digits"
    HOMEPAGE = "https://scikit-learn.org/stable/datasets/toy_dataset.html#digits-dataset"
    TASK = "classification"
    FEATURE_SHAPE: ClassVar[tuple[int, ...]] = (64,)
    NUM_CLASSES = 10
    FEATURE_NAMES: ClassVar[tuple[str, ...]] = tuple(
        f"pixel_{row}_{col}" for row in range(8) for col in range(8)
    )

    def _make_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from sklearn.datasets import load_digits

        features, labels = load_digits(return_X_y=True)
        return train_test(features, labels, test_size=TEST_SIZE, stratify=labels)


class Diabetes(ArrayBuilder):
    """scikit-learn's diabetes regression set (`load_diabetes`): 442 x 10 features, 1 target.

    Features are as sklearn ships them (each column centred and scaled to unit norm); the
    target is disease progression after one year (25..346), shape (1,). Split once by
    `train_test_split(test_size=0.2, random_state=0)`: 353 train / 89 test.
    """

    name = "diabetes"
    HOMEPAGE = "https://scikit-learn.org/stable/datasets/toy_dataset.html#diabetes-dataset"
    TASK = "regression"
    FEATURE_SHAPE = (10,)
    NUM_OUTPUTS = 1
    FEATURE_NAMES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")

    def _make_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from sklearn.datasets import load_diabetes

        features, targets = load_diabetes(return_X_y=True)
        return train_test(features, targets, test_size=TEST_SIZE)


class Friedman1(ArrayBuilder):
    """Friedman #1 regression (`make_friedman1`): 2000 x 10 uniform features, 1 target.

    y = 10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4 + N(0, 1) noise; x5..x9 are
    irrelevant. Generated with n_samples=2000, n_features=10, noise=1.0, random_state=0;
    the first 1600 rows are train, the last 400 test.
    """

    name = "friedman1"
    HOMEPAGE = (
        "https://scikit-learn.org/stable/modules/generated/sklearn.datasets.make_friedman1.html"
    )
    TASK = "regression"
    FEATURE_SHAPE = (10,)
    NUM_OUTPUTS = 1
    FEATURE_NAMES = tuple(f"x{i}" for i in range(10))
    NUM_SAMPLES = 2000
    NUM_TEST = 400

    def _make_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        from sklearn.datasets import make_friedman1

        features, targets = make_friedman1(
            n_samples=self.NUM_SAMPLES, n_features=10, noise=1.0, random_state=0
        )
        return train_test(features, targets, test_size=self.NUM_TEST, shuffle=False)
