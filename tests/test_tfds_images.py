"""A TFDS catalog image data set (`mnist`, `cifar10`) read as a user's prepared copy would be.

Nothing can be downloaded here, so each test prepares a few random images with the catalog's
own builder class, its download swapped for local examples: the features are the catalog's
spec (`Image` uint8 [H, W, C] and `ClassLabel`, plus cifar10's `id` text), written as
array_record into a temporary data_dir, where `dataset.name=mnist` finds them prepared.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.image_classification import cifar, mnist

import jaxnn
from jaxnn import data
from jaxnn.data.preprocessing import Preprocessing
from jaxnn.errors import DataError

REPO = Path(__file__).resolve().parent.parent
CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer"]
CIFAR10_NAMES += ["dog", "frog", "horse", "ship", "truck"]
SIZES = {"train": 40, "test": 10}


def _pixels(split: str, shape: tuple[int, ...]) -> np.ndarray:
    """The random uint8 images [n, *shape] of one split, each channel on its own scale."""
    rng = np.random.default_rng(len(split))
    top = np.array([255, 128, 64][: shape[-1]], np.int64)
    return (rng.integers(0, 256, (SIZES[split], *shape)) * top // 255).astype(np.uint8)


def _labels(split: str) -> np.ndarray:
    return np.arange(SIZES[split]) % 10


def _examples(split: str, shape: tuple[int, ...], with_id: bool):
    for index, (image, label) in enumerate(zip(_pixels(split, shape), _labels(split))):
        # PNG-encoded by PIL: TFDS encodes a numpy image with TensorFlow, not installed here.
        pil = Image.fromarray(image[..., 0] if shape[-1] == 1 else image)
        example = {"image": pil, "label": int(label)}
        yield index, example | ({"id": f"{split}_{index:05d}"} if with_id else {})


class LocalMnist(mnist.MNIST, skip_registration=True):
    """The catalog's `mnist` (its `_info`, name and version), its download swapped for local
    random images."""

    name = "mnist"

    def _split_generators(self, dl_manager):
        return {split: _examples(split, (28, 28, 1), False) for split in SIZES}


class LocalCifar10(cifar.Cifar10, skip_registration=True):
    """The catalog's `cifar10`; its class names set as its own generator sets them."""

    name = "cifar10"

    def _split_generators(self, dl_manager):
        self.info.features["label"].names = CIFAR10_NAMES
        return {split: _examples(split, (32, 32, 3), True) for split in SIZES}


def _prepared(builder_cls, data_dir: Path) -> str:
    builder_cls(data_dir=os.fspath(data_dir)).download_and_prepare(file_format="array_record")
    return os.fspath(data_dir)


def _stored(name: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """The test split's uint8 images and labels as stored (TFDS shuffles a catalog set's
    records when it writes them), read straight from the array_record files; checked to be
    the generated ones."""
    source = tfds.data_source(name, split="test", data_dir=data_dir, download=False)
    records = [source[i] for i in range(len(source))]
    images = np.stack([record["image"] for record in records])
    labels = np.array([record["label"] for record in records])
    shape = images.shape[1:]
    generated = {
        image.tobytes(): label for image, label in zip(_pixels("test", shape), _labels("test"))
    }
    assert {image.tobytes(): label for image, label in zip(images, labels)} == generated
    return images, labels


def _load(name: str, data_dir: str, **fields) -> data.Dataset:
    config = jaxnn.default_config().dataset
    config.name, config.data_dir = name, data_dir
    for field, value in fields.items():
        setattr(config, field, value)
    return data.load(config)


def test_the_local_builders_have_the_catalogs_spec(tmp_path):
    for local, catalog in ((LocalMnist, "mnist"), (LocalCifar10, "cifar10")):
        ours = local(data_dir=os.fspath(tmp_path)).info
        theirs = tfds.builder(catalog, data_dir=os.fspath(tmp_path / "empty")).info
        assert ours.full_name == theirs.full_name
        assert repr(ours.features) == repr(theirs.features)
        assert ours.supervised_keys == theirs.supervised_keys


def test_catalog_images_are_kept_hwc_and_scaled_to_floats_in_0_1(tmp_path):
    data_dir = _prepared(LocalMnist, tmp_path)
    raw = _load("mnist", data_dir, standardize=False, validation_fraction=0.25)
    assert raw.x_train.shape == (30, 28, 28, 1) and raw.x_train.dtype == np.float32
    images, labels = _stored("mnist", data_dir)
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(raw.x_test, (images / 255.0).astype(np.float32))
    np.testing.assert_array_equal(raw.y_test, labels)
    assert raw.y_test.dtype == np.int32
    assert raw.class_names == tuple(str(i) for i in range(10))


def test_catalog_images_are_standardised_per_channel_over_training_pixels(tmp_path):
    data_dir = _prepared(LocalCifar10, tmp_path)
    dataset = _load("cifar10", data_dir, validation_fraction=0.25)
    assert dataset.class_names == tuple(CIFAR10_NAMES)  # restored from the prepared files
    assert dataset.x_train.shape[1:] == (32, 32, 3) and dataset.num_classes == 10
    train = _load("cifar10", data_dir, standardize=False, validation_fraction=0.25).x_train
    pixels = train.astype(np.float64).reshape(-1, 3)
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    assert std[0] > 3 * std[2]  # the channels differ, so one scale for all would not do
    expected = (_stored("cifar10", data_dir)[0] / 255.0 - mean) / std
    np.testing.assert_allclose(dataset.x_test, expected, rtol=1e-5, atol=1e-5)
    stats = dataset.x_train.astype(np.float64).reshape(-1, 3)
    np.testing.assert_allclose(stats.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(stats.std(axis=0), 1.0, atol=1e-5)


def test_a_predictor_given_the_stored_uint8_images_sees_what_training_saw(tmp_path):
    data_dir = _prepared(LocalMnist, tmp_path)
    dataset = _load("mnist", data_dir)
    assert dataset.preprocessing.feature_divisor == 255.0
    record = json.loads(json.dumps(dataset.preprocessing.to_json()))
    images = _stored("mnist", data_dir)[0]
    np.testing.assert_array_equal(Preprocessing.from_json(record).features(images), dataset.x_test)


def test_a_catalog_image_set_is_read_without_tensorflow(tmp_path):
    data_dir = _prepared(LocalCifar10, tmp_path / "tfds")
    # A `tensorflow` that records every attempt to import it (and fails, as when absent).
    stub = tmp_path / "stub" / "tensorflow"
    stub.mkdir(parents=True)
    marks = tmp_path / "imports"
    stub.joinpath("__init__.py").write_text(
        f"open({os.fspath(marks)!r}, 'a').write('imported')\nraise ImportError('no TensorFlow')\n"
    )
    script = textwrap.dedent(
        f"""
        import sys
        import jaxnn
        from jaxnn import data
        config = jaxnn.default_config().dataset
        config.name, config.data_dir = "cifar10", {data_dir!r}
        dataset = data.load(config)
        assert dataset.x_train.shape[1:] == (32, 32, 3), dataset.x_train.shape
        assert "tensorflow" not in sys.modules
        print("read", len(dataset.x_train) + len(dataset.x_val), len(dataset.x_test))
        """
    )
    path = os.pathsep.join([os.fspath(tmp_path / "stub"), os.fspath(REPO)])
    done = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["read", "40", "10"]
    assert not marks.exists()


def test_cnn2d_trains_on_a_catalog_image_set_and_predicts_its_stored_images(tmp_path):
    config = jaxnn.default_config()
    config.dataset.name, config.dataset.data_dir = "mnist", _prepared(LocalMnist, tmp_path / "d")
    config.model.name = "cnn2d"
    config.model.channels, config.model.kernel_sizes, config.model.hidden = (4,), (3,), ()
    config.model.pool = "max"
    config.training.batch_size, config.training.steps, config.training.eval_every = 8, 4, 2
    result = jaxnn.run(config, tmp_path / "run", progress=False)
    images, labels = _stored("mnist", config.dataset.data_dir)
    probabilities = result.predict_proba(images)  # the uint8 images as the files hold them
    log_loss = -np.mean(np.log(probabilities[np.arange(len(labels)), labels]))
    np.testing.assert_allclose(log_loss, result["best"]["test_loss"], rtol=1e-5)


class JaxnnTestNumpyImages(mnist.MNIST, skip_registration=False):
    """A catalog-style image builder that yields numpy images, as the catalog's own do: TFDS
    encodes them with TensorFlow, which is not installed here."""

    name = "jaxnn_test_numpy_images"

    def _split_generators(self, dl_manager):
        return {"train": self._numpy_examples(), "test": self._numpy_examples()}

    def _numpy_examples(self):
        yield 0, {"image": np.zeros((28, 28, 1), np.uint8), "label": 0}


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("tensorflow") is not None,
    reason="TensorFlow is installed: preparing would work",
)
def test_preparing_a_catalog_image_set_without_tensorflow_says_what_is_missing(tmp_path):
    with pytest.raises(DataError) as raised:
        _load("jaxnn_test_numpy_images", os.fspath(tmp_path))
    message = str(raised.value)
    assert "needs TensorFlow" in message and "\n" not in message
    assert "pip install tensorflow" in message
