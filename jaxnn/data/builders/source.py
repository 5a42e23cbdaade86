"""Preparing TFDS data sets once per data_dir (under a file lock) and reading them as numpy.

Reading goes through `tfds.data_source` on `array_record` files, so TensorFlow is not needed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import io
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from jaxnn.config.paths import expand_user
from jaxnn.data.builders.base import ArrayBuilder
from jaxnn.data.builders.image_builders import DigitsImages, MnistSubset
from jaxnn.data.builders.mnist1d_builder import Mnist1d
from jaxnn.data.builders.sklearn_builders import Diabetes, Digits, Friedman1
from jaxnn.errors import DataError

BUILDERS: dict[str, type[ArrayBuilder]] = {
    builder.name: builder
    for builder in (Mnist1d, Digits, Diabetes, Friedman1, DigitsImages, MnistSubset)
}
DEFAULT_DATA_DIR = "~/tensorflow_datasets"
LOCK_FOLDER = ".jaxnn_locks"  # in data_dir: one lock file per data set variant
FILE_FORMAT = "array_record"
READ_CHUNK = 8192  # records decoded per bulk read


@dataclasses.dataclass(frozen=True)
class SourceSpec:
    """What a data set is, known without preparing it."""

    task: str  # 'classification' | 'regression'
    num_classes: int  # 0 for regression
    class_names: tuple[str, ...]
    feature_names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RawSplits:
    """A data set's train and test splits as read from disk, before any jaxnn processing."""

    spec: SourceSpec
    x_train: np.ndarray  # [n_train, *feature_shape], as stored
    y_train: np.ndarray  # [n_train] labels or [n_train, ...] targets
    x_test: np.ndarray
    y_test: np.ndarray
    feature_divisor: float = 1.0  # what the stored features are divided by (`image_divisor`)


@contextlib.contextmanager
def quiet_tfds() -> Iterator[None]:
    """Holds back what TFDS prints (progress bars, stdout lines, absl warnings); a decorator too."""
    from absl import logging as absl_logging
    from tensorflow_datasets.core.utils import tqdm_utils

    bars, verbosity = getattr(tqdm_utils, "_active", True), absl_logging.get_verbosity()
    tfds.display_progress_bar(False)
    absl_logging.set_verbosity(absl_logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        tfds.display_progress_bar(bars)
        absl_logging.set_verbosity(verbosity)


def resolve_data_dir(data_dir: str) -> Path:
    """Returns `data_dir` expanded and absolute; '' means `~/tensorflow_datasets`."""
    return expand_user(data_dir or DEFAULT_DATA_DIR, "dataset.data_dir").absolute()


def split_name(name: str) -> tuple[str, str]:
    """Splits 'name[:version][/config[:version]]' into (name, config), config '' if absent."""
    base, _, config = name.partition("/")
    return base.partition(":")[0], config.partition(":")[0]


@quiet_tfds()
def describe(name: str, data_dir: str = "") -> SourceSpec:
    """Returns what the data set `name` is, without preparing or writing anything.

    Raises:
        DataError: unknown name (lists the local ones) or unknown builder config.
    """
    base, config = split_name(name)
    if base in BUILDERS:
        builder_cls = BUILDERS[base]
        for part in (name.partition("/")[0], name.partition("/")[2]):
            version = part.partition(":")[2]
            if ":" in part and version != str(builder_cls.VERSION):
                raise DataError(
                    f"dataset.name={name!r}: {base} is built at version {builder_cls.VERSION} "
                    f"only, not {version!r} (leave the version out)"
                )
        config_names = [c.name for c in builder_cls.BUILDER_CONFIGS]
        if config and config not in config_names:
            raise DataError(
                f"dataset.name={name!r}: {base} has no builder config {config!r}; "
                f"known: {', '.join(sorted(config_names)) or 'none'}"
            )
        class_names = builder_cls.CLASS_NAMES or tuple(map(str, range(builder_cls.NUM_CLASSES)))
        return SourceSpec(
            task=builder_cls.TASK,
            num_classes=builder_cls.NUM_CLASSES,
            class_names=class_names if builder_cls.TASK == "classification" else (),
            feature_names=builder_cls.FEATURE_NAMES,
        )
    return _describe_tfds(name, _tfds_builder(name, data_dir))


@quiet_tfds()
def prepare(name: str, data_dir: str = "") -> None:
    """Writes `name` as array_record files into data_dir unless they are already there.

    Processes preparing one data set serialise on a lock file in data_dir (the second finds it
    prepared); a preparation says one line on stderr, TFDS's own output held back.

    Raises:
        DataError: data_dir is not writable, or a TFDS data set is neither prepared nor
            downloadable.
    """
    describe(name, data_dir)  # Unknown names fail before anything is written.
    if _tfds_builder(name, data_dir).is_prepared():
        return
    root = resolve_data_dir(data_dir)
    with _locked(root, name):
        builder = _tfds_builder(name, data_dir)  # Fresh: another process may have prepared it.
        if builder.is_prepared():
            return
        base, _ = split_name(name)
        message = f"jaxnn: preparing {name} in {root} (once: later runs read it from there)"
        print(message, file=sys.stderr, flush=True)
        if base in BUILDERS:
            builder.download_and_prepare(file_format=FILE_FORMAT)
            return
        dataset_folder = root / base
        existed = dataset_folder.exists()
        try:
            builder.download_and_prepare(file_format=FILE_FORMAT)
        except Exception as error:  # Whatever failed, the data set is not available here.
            if not existed:
                _remove_empty_folders(dataset_folder)
            if _lacks_tensorflow(error):
                raise DataError(
                    f"preparing dataset {name!r} in {root} needs TensorFlow (TFDS encodes "
                    "its images with it), which is not installed: `pip install tensorflow` "
                    "for the one preparation (reading it later needs none), or prepare it "
                    "elsewhere with file_format='array_record' and copy it there"
                ) from error
            cause = " ".join(f"{type(error).__name__}: {error}".split())[:200]
            raise DataError(
                f"dataset {name!r} is not prepared in {root} and could not be downloaded "
                f"({cause}); prepare it there with file_format='array_record' or pick one "
                f"of the local data sets: {', '.join(sorted(BUILDERS))}"
            ) from error


def _lacks_tensorflow(error: BaseException) -> bool:
    """Whether `error` (or what it wraps) is TensorFlow missing: TFDS imports it to encode a
    catalog's images and re-raises the ImportError with the feature's name prefixed."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ImportError) and "'tensorflow'" in str(cause):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def prepared_dir(name: str, data_dir: str = "") -> Path:
    """Where `name`'s prepared files are (or would be): DATA_DIR/NAME[/CONFIG]/VERSION for a
    local data set, TFDS's own folder for a catalog one (DATA_DIR/NAME when it cannot say)."""
    root = resolve_data_dir(data_dir)
    base, config = split_name(name)
    if base in BUILDERS:
        builder_cls = BUILDERS[base]
        configs = [c.name for c in builder_cls.BUILDER_CONFIGS]
        folder = root / base / (config or configs[0]) if configs else root / base
        return folder / str(builder_cls.VERSION)
    try:
        return Path(_tfds_builder(name, data_dir).data_dir)
    except Exception:  # A catalog builder that cannot even be built: its whole folder.
        return root / base


def rebuild(name: str, data_dir: str = "") -> None:
    """Deletes `name`'s prepared files in data_dir (under the preparation lock), prepares it again.

    Raises:
        DataError: as `prepare`, or the prepared files cannot be deleted.
    """
    describe(name, data_dir)
    folder = prepared_dir(name, data_dir)
    with _locked(resolve_data_dir(data_dir), name):
        try:
            if folder.is_dir():
                shutil.rmtree(folder)
            elif folder.exists():
                folder.unlink()
        except OSError as error:
            raise DataError(
                f"cannot delete {folder} to rebuild dataset {name!r} ({error.strerror}); "
                "fix its permissions"
            ) from error
    prepare(name, data_dir)


@quiet_tfds()
def read(name: str, data_dir: str = "", *, rebuild_first: bool = False) -> RawSplits:
    """Prepares `name` if needed (or again, `rebuild_first`) and reads its train and test splits.

    Raises:
        DataError: as `prepare`, no supervised keys, train/test split or array_record files, or
            damaged prepared files (one error naming the folder and how to rebuild it).
    """
    spec = describe(name, data_dir)
    if rebuild_first:
        rebuild(name, data_dir)
    prepare(name, data_dir)  # a failure to prepare is its own error, not damaged files
    try:
        return _read_prepared(name, data_dir, spec)
    except DataError:
        raise
    except Exception as error:
        raise _damaged(name, data_dir, error) from error


def _damaged(name: str, data_dir: str, error: Exception) -> DataError:
    """The one error for prepared files that TFDS or array_record cannot read."""
    folder = prepared_dir(name, data_dir)
    cause = " ".join(f"{type(error).__name__}: {error}".split())[:200]
    return DataError(
        f"dataset {name!r} prepared in {folder} cannot be read ({cause}); launch again with "
        f"--config.dataset.rebuild=True to prepare it afresh (or delete {folder})"
    )


def _read_prepared(name: str, data_dir: str, spec: SourceSpec) -> RawSplits:
    builder = _tfds_builder(name, data_dir)
    file_format = getattr(builder.info.file_format, "value", builder.info.file_format)
    if file_format is not None and file_format != FILE_FORMAT:
        raise DataError(
            f"dataset {name!r} in {resolve_data_dir(data_dir)} is prepared as {file_format}, "
            "which tfds.data_source cannot read; prepare it again with file_format='array_record'"
        )
    missing = [split for split in ("train", "test") if split not in builder.info.splits]
    if missing:
        raise DataError(
            f"dataset {name!r} has no {' or '.join(missing)} split "
            f"(it has: {', '.join(sorted(builder.info.splits))}); jaxnn needs train and test"
        )
    feature_key, target_key = builder.info.supervised_keys
    splits = {}
    for split in ("train", "test"):
        features, targets = _read_split(name, split, data_dir, feature_key, target_key)
        expected = builder.info.splits[split].num_examples
        if len(features) != expected:
            raise ValueError(f"the {split} split has {len(features)} records, {expected} expected")
        splits[split] = features, targets
    divisor = image_divisor(builder.info.features[feature_key])
    return RawSplits(spec, *splits["train"], *splits["test"], feature_divisor=divisor)


def image_divisor(feature: tfds.features.FeatureConnector) -> float:
    """255 for an image feature of uint8 pixels (the catalog's `tfds.features.Image`, kept
    [H, W, C]), so that its pixels become floats in [0, 1]; 1 for any other feature."""
    if isinstance(feature, tfds.features.Image) and np.dtype(feature.np_dtype) == np.uint8:
        return float(np.iinfo(np.uint8).max)
    return 1.0


def _read_split(
    name: str, split: str, data_dir: str, feature_key: str, target_key: str
) -> tuple[np.ndarray, np.ndarray]:
    """Reads one split in bulk through `tfds.data_source`; returns (features, targets)."""
    source = tfds.data_source(
        name, split=split, data_dir=os.fspath(resolve_data_dir(data_dir)), download=False
    )
    features, targets = [], []
    for start in range(0, len(source), READ_CHUNK):
        records = source.__getitems__(list(range(start, min(start + READ_CHUNK, len(source)))))
        features.append(np.stack([np.asarray(record[feature_key]) for record in records]))
        targets.append(np.stack([np.asarray(record[target_key]) for record in records]))
    return np.concatenate(features), np.concatenate(targets)


def _tfds_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
    """Returns TFDS's builder for `name` in data_dir (writes nothing)."""
    data_dir_str = os.fspath(resolve_data_dir(data_dir))
    try:
        return tfds.builder(name, data_dir=data_dir_str)
    except Exception as error:  # TFDS raises several types for an unknown name.
        if split_name(name)[0] in BUILDERS:
            # A local builder exists, so only its prepared files (dataset_info.json) can fail.
            raise _damaged(name, data_dir, error) from error
        raise DataError(
            f"unknown dataset.name={name!r}: not a local data set "
            f"({', '.join(sorted(BUILDERS))}) nor a TFDS builder"
        ) from error


def _describe_tfds(name: str, builder: tfds.core.DatasetBuilder) -> SourceSpec:
    """Reads the task and classes of a TFDS catalog data set from its DatasetInfo."""
    keys = builder.info.supervised_keys
    if not keys or len(keys) != 2 or not all(isinstance(key, str) for key in keys):
        raise DataError(
            f"dataset {name!r} has no (features, label) supervised_keys (got {keys!r}); "
            "use jaxnn.data.from_arrays with arrays built from it instead"
        )
    target = builder.info.features[keys[1]]
    if isinstance(target, tfds.features.ClassLabel):
        return SourceSpec("classification", target.num_classes, tuple(target.names), ())
    return SourceSpec("regression", 0, (), ())


def _remove_empty_folders(folder: Path) -> None:
    """Removes `folder` and its subfolders where empty (TFDS leaves them after a failure)."""
    for path, _, _ in sorted(os.walk(folder), key=lambda entry: -len(entry[0])):
        with contextlib.suppress(OSError):
            os.rmdir(path)


@contextlib.contextmanager
def _locked(root: Path, name: str) -> Iterator[None]:
    """Holds an exclusive fcntl lock on root/LOCK_FOLDER/<name>.lock (creating it if needed)."""
    lock_path = root / LOCK_FOLDER / f"{name.replace('/', '--')}.lock"
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock_file = open(lock_path, "a")  # noqa: SIM115 (closed below)
    except OSError as error:
        raise DataError(
            f"dataset.data_dir={os.fspath(root)!r} is not writable ({error.strerror}); "
            "point dataset.data_dir at a writable folder"
        ) from error
    with lock_file:  # closing the file releases the lock
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        yield
