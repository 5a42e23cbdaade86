"""A user's own data file as a data set: `dataset.name=npz:PATH` or `dataset.name=csv:PATH`.

    npz  arrays x_train, y_train, x_test, y_test; or x, y (a test split is carved). The
         target arrays are named by `dataset.target` (default `y`: y_train / y_test or y).
    csv  one table with a header row; `dataset.target` names the target column (default: the
         last one); every other column is a feature and must be numeric. A test split is
         carved.

The carved test split is the first round(n * dataset.test_fraction) rows of a permutation
drawn from `dataset.split_seed` (a stream of its own, not the validation split's). The task is
`dataset.task`, or inferred from the targets: floating-point targets are regression, integer,
string or boolean ones classification. The arrays then go through `from_arrays` (the label
encoding, the validation split, the standardisation) like any others. Files are read with
numpy and the csv module only: nothing is unpickled.
"""

from __future__ import annotations

import csv
import dataclasses
import numbers
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

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


def path_of(name: str) -> Path:
    return Path(name.partition(":")[2]).expanduser()


def validate_file_config(dataset_config: Any) -> None:
    """Checks a file data set's config fields (without reading the file).

    Raises:
      ConfigError: an empty path, a bad dataset.target, test_fraction or task.
    """
    name = dataset_config.name
    if not name.partition(":")[2].strip():
        raise ConfigError(f"dataset.name={name!r} names no file; write {scheme_of(name)}:PATH")
    target = getattr(dataset_config, "target", "")
    if not isinstance(target, str):
        raise ConfigError(f"dataset.target must be a column or array name, got {target!r}")
    fraction = getattr(dataset_config, "test_fraction", 0.2)
    if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction < 1:
        raise ConfigError(
            f"dataset.test_fraction must be a number in (0, 1) (the test split carved from a "
            f"file that has none), got {fraction!r}"
        )
    task = getattr(dataset_config, "task", "")
    if task not in TASK_CHOICES:
        raise ConfigError(
            f"dataset.task must be classification, regression or '' (inferred from the "
            f"targets), got {task!r}"
        )


def read(dataset_config: Any) -> FileArrays:
    """Reads `dataset.name=SCHEME:PATH` into train and test arrays.

    Raises:
      DataError: a missing, unreadable or ragged file, or one without the target.
    """
    validate_file_config(dataset_config)
    name = dataset_config.name
    path = path_of(name)
    if not path.is_file():
        raise DataError(f"dataset.name={name!r}: no file {path}")
    target = getattr(dataset_config, "target", "")
    x_train, y_train, x_test, y_test, feature_names = READERS[scheme_of(name)](path, target)
    if x_test is None:
        train_idx, test_idx = _carve_test(
            len(x_train),
            float(getattr(dataset_config, "test_fraction", 0.2)),
            int(getattr(dataset_config, "split_seed", 0)),
            name,
        )
        x_train, y_train, x_test, y_test = (
            x_train[train_idx],
            y_train[train_idx],
            x_train[test_idx],
            y_train[test_idx],
        )
    task = getattr(dataset_config, "task", "") or _inferred_task(y_train)
    return FileArrays(task, x_train, y_train, x_test, y_test, feature_names)


def _inferred_task(targets: np.ndarray) -> str:
    return "regression" if np.issubdtype(targets.dtype, np.floating) else "classification"


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


def _read_npz(path: Path, target: str) -> Arrays:
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
        return (
            stored["x_train"],
            stored[f"{target}_train"],
            stored["x_test"],
            stored[f"{target}_test"],
            (),
        )
    if target in stored and "x" in stored:
        return stored["x"], stored[target], None, None, ()
    raise DataError(
        f"{path} lacks the target {target!r}: it needs arrays x_train, {target}_train, x_test, "
        f"{target}_test or x, {target} (it has {names}; dataset.target names the target)"
    )


def _read_csv(path: Path, target: str) -> Arrays:
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
    features = []
    for j, values in enumerate(columns):
        if j == index:
            continue
        try:
            features.append(np.asarray(values, np.float64))
        except ValueError as error:
            raise DataError(
                f"{path}: feature column {header[j]!r} is not numeric ({_one_line(error)}); "
                "encode it as numbers or drop it"
            ) from error
    if not features:
        raise DataError(f"{path} has no feature column besides the target {column!r}")
    x = np.stack(features, axis=1)
    names = tuple(name for j, name in enumerate(header) if j != index)
    return x, _csv_targets(columns[index]), None, None, names


def _csv_targets(values: tuple[str, ...]) -> np.ndarray:
    """A CSV column as integers, else floats, else strings."""
    stripped = [v.strip() for v in values]
    for kind in (np.int64, np.float64):
        try:
            return np.asarray(stripped, kind)
        except ValueError:
            continue
    return np.asarray(stripped, str)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__


READERS: dict[str, Callable[[Path, str], Arrays]] = {"npz": _read_npz, "csv": _read_csv}
