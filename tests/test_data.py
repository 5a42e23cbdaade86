"""Data layer: local TFDS builders, prepared-once loading, splits, standardisation, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mnist1d.data
import numpy as np
import pytest
import tensorflow_datasets as tfds
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from jaxnn import data
from jaxnn.data import builders
from jaxnn.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parent.parent


def read_raw(name: str, split: str, data_dir: str) -> tuple[np.ndarray, np.ndarray]:
    """Reads a prepared split straight from its array_record files with tfds.data_source."""
    builders.prepare(name, data_dir)
    source = tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    records = source.__getitems__(list(range(len(source))))
    keys = list(records[0])
    feature_key = "features"
    target_key = next(key for key in keys if key != feature_key)
    return (
        np.stack([r[feature_key] for r in records]),
        np.stack([r[target_key] for r in records]),
    )


def unstandardized(dataset_config, name: str, **overrides) -> data.Dataset:
    return data.load(dataset_config(name, standardize=False, **overrides))


def one_line_error(error_type: type[Exception], match: str, call, *args, **kwargs) -> str:
    with pytest.raises(error_type, match=match) as info:
        call(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- builders ---------------------------------------------------------------------------


def test_mnist1d_records_equal_make_dataset_exactly(data_dir):
    expected = mnist1d.data.make_dataset(mnist1d.data.get_dataset_args())
    x_train, y_train = read_raw("mnist1d", "train", data_dir)
    x_test, y_test = read_raw("mnist1d", "test", data_dir)
    assert x_train.shape == (4000, 40) and x_test.shape == (1000, 40)
    np.testing.assert_array_equal(x_train, expected["x"].astype(np.float32))
    np.testing.assert_array_equal(y_train, expected["y"])
    np.testing.assert_array_equal(x_test, expected["x_test"].astype(np.float32))
    np.testing.assert_array_equal(y_test, expected["y_test"])


def test_mnist1d_generation_leaves_global_random_state_alone():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    builders.make_mnist1d(num_samples=100, seed=5)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_load_keeps_record_order_in_train_val_and_test(dataset_config, data_dir):
    x_raw, y_raw = read_raw("mnist1d", "train", data_dir)
    x_test, y_test = read_raw("mnist1d", "test", data_dir)
    dataset = unstandardized(dataset_config, "mnist1d", split_seed=3)
    train_idx, val_idx = data.validation_split(4000, 0.1, 3)
    np.testing.assert_array_equal(dataset.x_train, x_raw[train_idx])
    np.testing.assert_array_equal(dataset.y_train, y_raw[train_idx])
    np.testing.assert_array_equal(dataset.x_val, x_raw[val_idx])
    np.testing.assert_array_equal(dataset.y_val, y_raw[val_idx])
    np.testing.assert_array_equal(dataset.x_test, x_test)
    np.testing.assert_array_equal(dataset.y_test, y_test)


def test_mnist1d_pretrain_config_sizes_and_a_different_draw(dataset_config):
    pretrain = data.load(dataset_config("mnist1d/pretrain", standardize=False))
    default = data.load(dataset_config("mnist1d", standardize=False))
    assert (pretrain.num_train + pretrain.num_val, pretrain.num_test) == (20000, 5000)
    assert pretrain.num_val == 2000 and pretrain.feature_shape == (40,)
    assert pretrain.num_classes == 10 and pretrain.name == "mnist1d/pretrain"
    assert not np.array_equal(pretrain.x_test[:1000], default.x_test)


@pytest.mark.parametrize(
    ("name", "task", "num_train_and_val", "num_test", "num_features", "num_outputs"),
    [
        ("mnist1d", "classification", 4000, 1000, 40, 10),
        ("digits", "classification", 1437, 360, 64, 10),
        ("diabetes", "regression", 353, 89, 10, 1),
        ("friedman1", "regression", 1600, 400, 10, 1),
    ],
)
def test_local_data_sets_shapes_and_tasks(
    dataset_config, name, task, num_train_and_val, num_test, num_features, num_outputs
):
    dataset = data.load(dataset_config(name))
    assert dataset.task == task
    assert dataset.num_train + dataset.num_val == num_train_and_val
    assert dataset.num_val == round(num_train_and_val * 0.1)
    assert dataset.num_test == num_test
    assert dataset.feature_shape == (num_features,) and dataset.num_features == num_features
    assert dataset.num_outputs == num_outputs
    assert dataset.x_train.dtype == np.float32 and dataset.x_test.dtype == np.float32
    if task == "classification":
        assert dataset.num_classes == num_outputs and len(dataset.class_names) == num_outputs
        assert dataset.y_train.dtype == np.int32 and dataset.y_train.shape == (dataset.num_train,)
        assert set(np.unique(dataset.y_train)) == set(range(num_outputs))
    else:
        assert dataset.num_classes == 0
        assert dataset.y_train.dtype == np.float32
        assert dataset.y_train.shape == (dataset.num_train, num_outputs)
    assert dataset.summary() == {
        "name": name,
        "task": task,
        "num_train": dataset.num_train,
        "num_val": dataset.num_val,
        "num_test": num_test,
        "num_classes": dataset.num_classes,
        "num_outputs": num_outputs,
    }
    assert name in builders.BUILDERS
    assert str(num_test) in (builders.BUILDERS[name].__doc__ or "")


def test_digits_split_is_sklearns_stratified_split(data_dir):
    features, labels = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.2, random_state=0, stratify=labels
    )
    raw_x_train, raw_y_train = read_raw("digits", "train", data_dir)
    raw_x_test, raw_y_test = read_raw("digits", "test", data_dir)
    np.testing.assert_array_equal(raw_x_train, x_train.astype(np.float32))
    np.testing.assert_array_equal(raw_y_train, y_train)
    np.testing.assert_array_equal(raw_x_test, x_test.astype(np.float32))
    np.testing.assert_array_equal(raw_y_test, y_test)


# --- splits -----------------------------------------------------------------------------


def test_validation_split_is_disjoint_covers_train_and_keeps_order():
    train_idx, val_idx = data.validation_split(1000, 0.15, split_seed=7)
    assert len(val_idx) == 150 and len(train_idx) == 850
    assert not set(train_idx) & set(val_idx)
    np.testing.assert_array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(1000))
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    expected_val = np.sort(np.random.default_rng(7).permutation(1000)[:150])
    np.testing.assert_array_equal(val_idx, expected_val)


def test_validation_split_same_seed_same_split_other_seed_other_split():
    first = data.validation_split(500, 0.2, 1)
    again = data.validation_split(500, 0.2, 1)
    other = data.validation_split(500, 0.2, 2)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_validation_is_carved_from_train_never_test(dataset_config):
    with_small_val = unstandardized(dataset_config, "digits", validation_fraction=0.1)
    with_large_val = unstandardized(dataset_config, "digits", validation_fraction=0.5)
    np.testing.assert_array_equal(with_small_val.x_test, with_large_val.x_test)
    assert with_large_val.num_train + with_large_val.num_val == 1437


# --- standardisation ----------------------------------------------------------------------


def test_features_standardised_with_train_statistics_only(dataset_config):
    raw = unstandardized(dataset_config, "digits")
    scaled = data.load(dataset_config("digits"))
    mean = raw.x_train.astype(np.float64).mean(axis=0)
    std = raw.x_train.astype(np.float64).std(axis=0)
    varying = std > 1e-8
    assert not varying.all()  # digits has pixels that are always 0 in train
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(scaled.x_train.std(axis=0)[varying], 1.0, atol=1e-4)
    safe_std = np.where(varying, std, 1.0)
    for raw_x, scaled_x in ((raw.x_val, scaled.x_val), (raw.x_test, scaled.x_test)):
        np.testing.assert_allclose(scaled_x, (raw_x - mean) / safe_std, rtol=1e-5, atol=1e-5)
    assert np.abs(scaled.x_test).max() < 100  # a constant-in-train pixel is not blown up
    assert scaled.target_mean is None and scaled.target_std is None


def test_regression_targets_standardised_with_train_statistics(dataset_config):
    raw = unstandardized(dataset_config, "diabetes")
    scaled = data.load(dataset_config("diabetes"))
    mean = raw.y_train.mean(axis=0)
    std = raw.y_train.std(axis=0)
    np.testing.assert_allclose(scaled.target_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(scaled.target_std, std, rtol=1e-5)
    assert abs(scaled.y_train.mean()) < 1e-5 and abs(scaled.y_train.std() - 1) < 1e-4
    np.testing.assert_allclose(
        scaled.y_test * scaled.target_std + scaled.target_mean, raw.y_test, rtol=1e-5
    )
    np.testing.assert_allclose(scaled.y_val, (raw.y_val - mean) / std, rtol=1e-5, atol=1e-5)
    assert raw.target_mean is None


# --- preparing once ---------------------------------------------------------------------------


def test_second_load_reuses_prepared_files(dataset_config, tmp_path, monkeypatch):
    config = dataset_config("digits", data_dir=str(tmp_path / "tfds"))
    first = data.load(config)
    files = sorted(p for p in (tmp_path / "tfds" / "digits").rglob("*") if p.is_file())
    assert any("array_record" in p.name for p in files)
    mtimes = [p.stat().st_mtime_ns for p in files]

    def refuse(*args, **kwargs):
        raise AssertionError("regenerated a prepared data set")

    monkeypatch.setattr(builders.Digits, "_generate_examples", refuse)
    second = data.load(config)
    np.testing.assert_array_equal(first.x_train, second.x_train)
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    with pytest.raises(AssertionError, match="regenerated"):  # the patch does bite
        data.load(dataset_config("digits", data_dir=str(tmp_path / "other")))


def test_parallel_first_loads_prepare_once_without_racing(tmp_path):
    script = textwrap.dedent(
        """
        import sys, ml_collections
        from jaxnn import data
        config = ml_collections.ConfigDict({"name": "diabetes", "data_dir": sys.argv[1]})
        print(data.load(config).y_test.sum())
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=120) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
    assert len({out.strip().splitlines()[-1] for out, _ in outputs}) == 1
    # One process prepares, and says so in one line; TFDS's own output is held back.
    assert sorted(err for _, err in outputs) == [
        "",
        "",
        f"jaxnn: preparing diabetes in {tmp_path} (once: later runs read it from there)\n",
    ]
    assert not any("prepared" in out for out, _ in outputs)
    assert len(list((tmp_path / "diabetes").glob("*/*train.array_record*"))) == 1
    assert not list((tmp_path / "diabetes").glob("incomplete*"))


# --- class subsets and per-class limits -----------------------------------------------------------


def test_class_subset_keeps_given_classes_relabelled_in_given_order(dataset_config, data_dir):
    x_raw, y_raw = read_raw("mnist1d", "train", data_dir)
    x_test_raw, y_test_raw = read_raw("mnist1d", "test", data_dir)
    dataset = unstandardized(dataset_config, "mnist1d", classes=(7, 3))
    assert dataset.num_classes == 2 and dataset.num_outputs == 2
    assert dataset.class_names == ("7", "3")
    keep = np.isin(y_raw, (7, 3))
    x_kept, y_kept = x_raw[keep], np.where(y_raw[keep] == 7, 0, 1)
    train_idx, val_idx = data.validation_split(len(y_kept), 0.1, 0)
    np.testing.assert_array_equal(dataset.x_train, x_kept[train_idx])
    np.testing.assert_array_equal(dataset.y_train, y_kept[train_idx])
    np.testing.assert_array_equal(dataset.x_val, x_kept[val_idx])
    test_keep = np.isin(y_test_raw, (7, 3))
    np.testing.assert_array_equal(dataset.x_test, x_test_raw[test_keep])
    np.testing.assert_array_equal(dataset.y_test, np.where(y_test_raw[test_keep] == 7, 0, 1))


def test_train_per_class_keeps_first_n_after_carving_validation(dataset_config):
    full = unstandardized(dataset_config, "digits")
    limited = unstandardized(dataset_config, "digits", train_per_class=20)
    np.testing.assert_array_equal(np.bincount(limited.y_train), np.full(10, 20))
    keep = np.sort(np.concatenate([np.flatnonzero(full.y_train == c)[:20] for c in range(10)]))
    np.testing.assert_array_equal(limited.x_train, full.x_train[keep])
    np.testing.assert_array_equal(limited.y_train, full.y_train[keep])
    np.testing.assert_array_equal(limited.x_val, full.x_val)  # validation untouched
    np.testing.assert_array_equal(limited.x_test, full.x_test)
    val_rows = {row.tobytes() for row in limited.x_val}
    assert not any(row.tobytes() in val_rows for row in limited.x_train)


def test_train_per_class_statistics_come_from_the_kept_examples(dataset_config):
    raw = unstandardized(dataset_config, "digits", train_per_class=20)
    scaled = data.load(dataset_config("digits", train_per_class=20))
    mean = raw.x_train.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0.0, atol=1e-5)
    std = raw.x_train.astype(np.float64).std(axis=0)
    expected = (raw.x_test - mean) / np.where(std > 1e-8, std, 1.0)
    np.testing.assert_allclose(scaled.x_test, expected, rtol=1e-5, atol=1e-5)


# --- from_arrays --------------------------------------------------------------------------


def test_from_arrays_equals_load(dataset_config, data_dir):
    x_train, y_train = read_raw("digits", "train", data_dir)
    x_test, y_test = read_raw("digits", "test", data_dir)
    options = {"validation_fraction": 0.2, "split_seed": 4, "classes": (1, 2, 3)}
    loaded = data.load(dataset_config("digits", train_per_class=30, **options))
    built = data.from_arrays(
        x_train, y_train, x_test, y_test, task="classification", name="digits",
        train_per_class=30, **options,
    )  # fmt: skip
    for field in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(built, field), getattr(loaded, field), err_msg=field)
    assert built.summary() == loaded.summary()


def test_from_arrays_regression_with_1d_targets():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 3)), rng.normal(size=50) * 5 + 2
    dataset = data.from_arrays(x[:40], y[:40], x[40:], y[40:], task="regression")
    assert dataset.y_train.shape == (36, 1) and dataset.y_test.shape == (10, 1)
    assert dataset.num_outputs == 1 and dataset.num_classes == 0
    np.testing.assert_allclose(
        dataset.y_test * dataset.target_std + dataset.target_mean, y[40:, None], rtol=1e-5
    )


# --- bad input --------------------------------------------------------------------------------


def test_unknown_name_lists_local_data_sets_and_writes_nothing(dataset_config, tmp_path):
    config = dataset_config("mnist_one_d", data_dir=str(tmp_path / "tfds"))
    message = one_line_error(DataError, "mnist_one_d", data.load, config)
    for name in ("diabetes", "digits", "friedman1", "mnist1d"):
        assert name in message
    assert not (tmp_path / "tfds").exists()


def test_unknown_builder_config_lists_configs(dataset_config, tmp_path):
    config = dataset_config("mnist1d/pretrian", data_dir=str(tmp_path))
    message = one_line_error(DataError, "pretrian", data.load, config)
    assert "default, pretrain" in message
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5, -0.1, True, "0.1"])
def test_validation_fraction_outside_open_unit_interval(dataset_config, tmp_path, fraction):
    config = dataset_config("digits", validation_fraction=fraction, data_dir=str(tmp_path / "d"))
    message = one_line_error(ConfigError, "validation_fraction", data.load, config)
    assert "(0, 1)" in message
    assert not (tmp_path / "d").exists()


def test_validation_fraction_too_small_for_the_data():
    x = np.zeros((5, 2))
    y = np.arange(5)
    message = one_line_error(
        DataError, "leaves 0 for validation", data.from_arrays, x, y, x, y,
        task="classification", validation_fraction=0.05,
    )  # fmt: skip
    assert "validation_fraction=0.05" in message


@pytest.mark.parametrize(
    ("overrides", "error_type", "expected"),
    [
        (
            {"classes": (3, 12)},
            ConfigError,
            "classes [12] that the data set lacks; its labels are 0..9",
        ),
        ({"classes": (3, 3)}, ConfigError, "repeats a class"),
        ({"classes": (3,)}, ConfigError, "at least 2"),
        ({"classes": ("three", "four")}, ConfigError, "integer labels"),
        ({"train_per_class": -1}, ConfigError, "train_per_class must be an integer in [0,"),
        ({"split_seed": 0.5}, ConfigError, "split_seed must be an integer"),
        ({"standardize": "yes"}, ConfigError, "standardize must be True or False"),
    ],
)
def test_bad_dataset_fields_fail_before_any_data_is_written(
    dataset_config, tmp_path, overrides, error_type, expected
):
    config = dataset_config("digits", data_dir=str(tmp_path / "d"), **overrides)
    one_line_error(error_type, expected.replace("[", r"\[").replace("(", r"\("), data.load, config)
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("field", ["classes", "train_per_class"])
def test_class_options_rejected_for_regression(dataset_config, tmp_path, field):
    value = (0, 1) if field == "classes" else 5
    config = dataset_config("diabetes", data_dir=str(tmp_path / "d"), **{field: value})
    message = one_line_error(ConfigError, f"dataset.{field}", data.load, config)
    assert "only to classification" in message and "regression" in message
    assert not (tmp_path / "d").exists()


def test_train_per_class_larger_than_smallest_class(dataset_config):
    smallest = np.bincount(unstandardized(dataset_config, "digits").y_train).min()
    config = dataset_config("digits", train_per_class=1000)
    message = one_line_error(ConfigError, "train_per_class=1000", data.load, config)
    assert f"use at most {smallest}" in message


def _arrays(n_train=10, n_test=4, features=3):
    rng = np.random.default_rng(0)
    return (
        rng.normal(size=(n_train, features)),
        rng.integers(0, 3, size=n_train),
        rng.normal(size=(n_test, features)),
        rng.integers(0, 3, size=n_test),
    )


def _with(index, value):
    arrays = list(_arrays())
    arrays[index] = value(arrays[index])
    return arrays


def _nan_at_first(x):
    x = x.copy()
    x[0, 0] = np.nan
    return x


@pytest.mark.parametrize(
    ("arrays", "task", "error_type", "expected"),
    [
        (
            _with(1, lambda y: y[:9]),
            "classification",
            DataError,
            "x_train has 10 examples but y_train has 9",
        ),
        (_with(0, _nan_at_first), "classification", DataError, "x_train has 1 NaN or infinite"),
        (
            _with(2, lambda x: x * np.inf),
            "classification",
            DataError,
            "x_test has 12 NaN or infinite",
        ),
        (
            _with(0, lambda x: x.astype(str)),
            "classification",
            DataError,
            "x_train must hold real numbers",
        ),
        (
            _with(1, lambda y: y.astype(np.float32) + 0.5),
            "classification",
            DataError,
            "y_train holds fractional or non-finite values, which are not class labels",
        ),
        (
            _with(3, lambda y: y[:, None]),
            "classification",
            DataError,
            r"y_test must be class labels of shape \[n\]",
        ),
        (_with(2, lambda x: x[:, :2]), "classification", DataError, "feature shape"),
        (
            _with(0, lambda x: x[:, 0]),
            "classification",
            DataError,
            r"reshape a single feature to \[n, 1\]",
        ),
        (
            _with(1, lambda y: np.zeros((10, 2, 2))),
            "regression",
            DataError,
            r"shape \[n\] or \[n, outputs\]",
        ),
        (_arrays(), "clustering", ConfigError, "task must be one of classification, regression"),
    ],
)
def test_from_arrays_rejects_bad_arrays(arrays, task, error_type, expected):
    one_line_error(error_type, expected, data.from_arrays, *arrays, task=task)


# --- TFDS data sets outside jaxnn --------------------------------------------------------------


class JaxnnTestOffline(tfds.core.GeneratorBasedBuilder):
    """A TFDS catalog-style data set whose download fails, as every download does offline."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict(
            {
                "image": tfds.features.Tensor(shape=(2,), dtype=np.float32),
                "label": tfds.features.ClassLabel(num_classes=2),
            }
        )
        return tfds.core.DatasetInfo(
            builder=self, features=features, supervised_keys=("image", "label")
        )

    def _split_generators(self, dl_manager):
        raise ConnectionError("Failed to resolve 'data.example.org'\n(network unreachable)")

    def _generate_examples(self):
        yield from ()


def test_tfds_name_not_prepared_and_not_downloadable(dataset_config, tmp_path):
    config = dataset_config("jaxnn_test_offline", data_dir=str(tmp_path))
    message = one_line_error(DataError, "could not be downloaded", data.load, config)
    assert f"'jaxnn_test_offline' is not prepared in {tmp_path}" in message
    assert "ConnectionError" in message
    assert not (tmp_path / "jaxnn_test_offline").exists()


def test_a_dataset_section_written_by_hand_takes_the_schemas_defaults(dataset_config):
    import ml_collections

    whole = dataset_config("digits")
    by_hand = ml_collections.ConfigDict(
        {"name": "digits", "data_dir": whole.data_dir, "train_per_class": 5}
    )
    loaded = data.load(by_hand)
    expected = data.load(dataset_config("digits", train_per_class=5))
    np.testing.assert_array_equal(loaded.x_train, expected.x_train)
    np.testing.assert_array_equal(loaded.x_val, expected.x_val)  # the default 0.1 validation
    assert loaded.preprocessing.to_json() == expected.preprocessing.to_json()  # standardised
    one_line_error(ConfigError, "dataset.name must be a data set name", data.load, {"data_dir": ""})
    one_line_error(ConfigError, "must be an ml_collections.ConfigDict", data.load, "digits")
