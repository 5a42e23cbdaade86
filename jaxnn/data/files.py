"""A user's own data file as a data set: `dataset.name=npz:PATH` or `dataset.name=csv:PATH`.

docs/python.md ("npz and CSV files") says which arrays and columns are read, how a CSV's cells
are parsed and how the task is inferred. A file without a test split gets one carved by a
permutation from `dataset.split_seed` (`TEST_STREAM`); the arrays then go through `from_arrays`
like any others. Files are read with numpy and the csv module only: nothing is unpickled.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import numbers
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from jaxnn.config.paths import expand_user
from jaxnn.errors import ConfigError, DataError

TEST_STREAM = 0x7E57  # the test permutation's stream, apart from the validation split's
TASK_CHOICES = ("", "classification", "regression")


@dataclasses.dataclass(frozen=True)
class FileArrays:
    """A file's train and test arrays and its task, before any jaxnn processing."""

    task: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    feature_names: tuple[str, ...] = ()


def scheme_of(name: str) -> str | None:
    """The file scheme of a dataset.name (`npz`, `csv`), or None for a named data set."""
    scheme, sep, _ = name.partition(":")
    return scheme if sep and scheme in READERS else None


def is_fraction(value: Any) -> bool:
    """Whether `value` is a real number in (0, 1) (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < float(value) < 1


def validate_file_config(dataset_config: Any) -> None:
    """Checks a file data set's config fields (a whole config.dataset) without reading the file
    (ConfigError: an empty path, a bad dataset.target, test_fraction or task)."""
    name = dataset_config.name
    if not name.partition(":")[2].strip():
        raise ConfigError(f"dataset.name={name!r} names no file; write {scheme_of(name)}:PATH")
    target = dataset_config.target
    if not isinstance(target, str):
        raise ConfigError(f"dataset.target must be a column or array name, got {target!r}")
    fraction = dataset_config.test_fraction
    if not is_fraction(fraction):
        raise ConfigError(
            f"dataset.test_fraction must be a number in (0, 1) (the test split carved from a "
            f"file that has none), got {fraction!r}"
        )
    task = dataset_config.task
    if task not in TASK_CHOICES:
        raise ConfigError(
            f"dataset.task must be classification, regression or '' (inferred from the "
            f"targets), got {task!r}"
        )


def read(dataset_config: Any) -> FileArrays:
    """Reads `dataset.name=SCHEME:PATH` into train and test arrays (DataError: a missing,
    unreadable or ragged file, or one without the target)."""
    validate_file_config(dataset_config)
    name = dataset_config.name
    path = expand_user(name.partition(":")[2], f"dataset.name={name[:200]}:")
    if not path.is_file():
        raise DataError(f"dataset.name={name!r}: no file {path}")
    target, task = dataset_config.target, dataset_config.task
    reader = READERS[name.partition(":")[0]]
    x_train, y_train, x_test, y_test, feature_names = reader(path, target, task)
    if x_test is None or y_test is None:  # the file has no test split: carve one
        fraction, seed = float(dataset_config.test_fraction), int(dataset_config.split_seed)
        train, test = _carve_test(len(x_train), fraction, seed, name)
        x_test, y_test = x_train[test], y_train[test]
        x_train, y_train = x_train[train], y_train[train]
    if not task:
        task = "regression" if np.issubdtype(y_train.dtype, np.floating) else "classification"
    if task == "regression":
        for split, targets in (("train", y_train), ("test", y_test)):
            if targets.dtype == np.bool_ or not np.issubdtype(targets.dtype, np.number):
                raise DataError(
                    f"{path}: dataset.task=regression, but the {split} targets are of dtype "
                    f"{targets.dtype}, not numbers; pass numeric targets or set "
                    "dataset.task=classification"
                )
    return FileArrays(task, x_train, y_train, x_test, y_test, feature_names)


def _carve_test(num: int, fraction: float, seed: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    num_test = round(num * fraction)
    if not 0 < num_test < num:
        raise DataError(
            f"dataset.test_fraction={fraction} of the {num} rows of {name} leaves {num_test} "
            f"for test and {num - num_test} for training; both need at least one"
        )
    permutation = np.random.default_rng((seed, TEST_STREAM)).permutation(num)
    return np.sort(permutation[num_test:]), np.sort(permutation[:num_test])


Arrays = tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None, tuple[str, ...]]


def _read_npz(path: Path, target: str, task: str) -> Arrays:
    del task  # the dtype says it: checked by `read`
    target = target or "y"
    if not zipfile.is_zipfile(path):
        raise DataError(
            f"cannot read {path} as an .npz file: it is not a zip archive (write it with "
            "numpy.savez)"
        )
    try:
        with np.load(path, allow_pickle=False) as archive:
            stored = {key: archive[key] for key in archive.files}
    except ValueError as error:
        raise DataError(
            f"{path} holds an object array (ragged rows or Python objects), which jaxnn does "
            "not unpickle; save regular numeric arrays"
        ) from error
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise DataError(f"cannot read {path} as an .npz file: {_one_line(error)}") from error
    names = ", ".join(sorted(stored)) or "none"
    if f"{target}_train" in stored and f"{target}_test" in stored:
        for key in ("x_train", "x_test"):
            if key not in stored:
                raise DataError(
                    f"{path} has {target}_train and {target}_test but no {key} ({names})"
                )
        x_train, x_test = stored["x_train"], stored["x_test"]
        return x_train, stored[f"{target}_train"], x_test, stored[f"{target}_test"], ()
    if target in stored and "x" in stored:
        return stored["x"], stored[target], None, None, ()
    raise DataError(
        f"{path} lacks the target {target!r}: it needs arrays x_train, {target}_train, x_test, "
        f"{target}_test or x, {target} (it has {names}; dataset.target names the target)"
    )


def _read_csv(path: Path, target: str, task: str) -> Arrays:
    try:
        with open(path, newline="") as handle:
            rows = [row for row in csv.reader(handle) if row]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise DataError(f"cannot read {path} as a CSV file: {_one_line(error)}") from error
    if len(rows) < 2:
        raise DataError(f"{path} needs a header row and at least one row of data")
    header = [name.strip() for name in rows[0]]
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(
                f"{path} is ragged: line {number} has {len(row)} fields but the header has "
                f"{len(header)}"
            )
    column = target or header[-1]
    if column not in header:
        raise DataError(
            f"{path} has no target column {column!r} (dataset.target); its columns are "
            f"{', '.join(header)}"
        )
    index = header.index(column)
    columns = list(zip(*rows[1:], strict=True))
    features = [
        _numeric_column(path, header[j], values, "feature")
        for j, values in enumerate(columns)
        if j != index
    ]
    if not features:
        raise DataError(f"{path} has no feature column besides the target {column!r}")
    x = np.stack(features, axis=1)
    names = tuple(name for j, name in enumerate(header) if j != index)
    return x, _csv_targets(path, column, columns[index], task), None, None, names


def _non_numbers(cells: tuple[str, ...]) -> list[int]:
    """The positions of the cells that are not finite numbers."""
    positions = []
    for position, cell in enumerate(cells):
        try:
            if math.isfinite(float(cell)):
                continue
        except ValueError:
            pass
        positions.append(position)
    return positions


def _numeric_column(path: Path, name: str, values: tuple[str, ...], what: str) -> np.ndarray:
    """A CSV column of finite numbers, float64 (DataError: naming the first other cell)."""
    stripped = tuple(v.strip() for v in values)
    bad = _non_numbers(stripped)
    if bad:
        raise DataError(
            f"{path}: line {bad[0] + 2}, {what} column {name!r} holds "
            f"{values[bad[0]]!r}, not a finite number; fix or drop that row (a "
            f"{what} column must be numbers)"
        )
    return np.asarray(stripped, np.float64)


def _csv_targets(path: Path, name: str, values: tuple[str, ...], task: str) -> np.ndarray:
    """The target column by the task: finite numbers for regression; labels for classification
    (integers when every cell is one, else strings). Inferred (task ''): integers are labels,
    numbers regression targets, a column with no number strings; one partly numbers is refused."""
    stripped = tuple(v.strip() for v in values)
    if task == "regression":
        return _numeric_column(path, name, values, "regression target")
    try:
        return np.asarray(stripped, np.int64)
    except (ValueError, OverflowError):
        pass
    if task == "classification":
        return np.asarray(stripped, str)
    bad = _non_numbers(stripped)
    if not bad:
        return np.asarray(stripped, np.float64)
    if len(bad) < len(stripped):
        raise DataError(
            f"{path}: line {bad[0] + 2}, target column {name!r} holds "
            f"{values[bad[0]]!r}, not a number, among numbers: fix or drop that row, or set "
            "dataset.task=classification to read the column as labels"
        )
    return np.asarray(stripped, str)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


READERS: dict[str, Callable[[Path, str, str], Arrays]] = {"npz": _read_npz, "csv": _read_csv}
