"""Data sets as numpy arrays: TFDS loading, a validation split carved from train, standardisation.

The order of operations is fixed, for `load` and `from_arrays` alike:
positions permuted (`permute_seed`, off by default) -> class subset (relabelled 0..n-1) ->
validation carved from train (never from test) -> per-class train limit -> features (and
regression targets) standardised by train statistics.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from jaxnn.config.fields import INTEGER_FIELDS
from jaxnn.config.schema import default_config
from jaxnn.data import builders, files
from jaxnn.data.preprocessing import MAX_MAGNITUDE, Preprocessing
from jaxnn.errors import ConfigError, DataError

TASKS = ("classification", "regression")
MIN_STD = 1e-8  # features whose train std is below this are only centred, not scaled
# dataset.name of a run given the user's arrays from Python (`jaxnn.run(..., data=...)`)
ARRAYS_SCHEME = "arrays:"


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Train/validation/test arrays of one data set, ready for training.

    Features are float32 [n, *feature_shape]; labels int32 [n] (classification) or targets
    float32 [n, num_outputs] (regression).
    """

    name: str
    task: str  # 'classification' | 'regression'
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int  # 0 for regression
    num_outputs: int  # num_classes for classification; target dims for regression
    class_names: tuple[str, ...] = ()
    feature_names: tuple[str, ...] = ()
    target_mean: np.ndarray | None = None  # [num_outputs]: targets were standardised with these
    target_std: np.ndarray | None = None
    preprocessing: Preprocessing | None = None  # what was done to the raw arrays

    @property
    def classes(self) -> np.ndarray | None:
        """The decoded labels [num_classes] (label i is class index i); None for regression."""
        return None if self.preprocessing is None else self.preprocessing.classes

    @property
    def num_train(self) -> int:
        return len(self.x_train)

    @property
    def num_val(self) -> int:
        return len(self.x_val)

    @property
    def num_test(self) -> int:
        return len(self.x_test)

    @property
    def feature_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_features(self) -> int:
        return math.prod(self.feature_shape)

    def summary(self) -> dict[str, Any]:
        """The `dataset` block of summary.json."""
        keys = ("name", "task", "num_train", "num_val", "num_test", "num_classes", "num_outputs")
        return {key: getattr(self, key) for key in keys}


@dataclasses.dataclass(frozen=True)
class _Recipe:
    """The options of config.dataset (or of `from_arrays`) that `_assemble` applies."""

    permute_seed: int
    classes: tuple[Any, ...]  # the classes kept, in this order (empty: all); indices once checked
    validation_fraction: float
    split_seed: int
    train_per_class: int
    standardize: bool

    @classmethod
    def of_config(cls, dataset_config: ml_collections.ConfigDict) -> _Recipe:
        values = {field.name: dataset_config[field.name] for field in dataclasses.fields(cls)}
        return cls(**values | {"classes": tuple(dataset_config.classes)})


def with_defaults(dataset_config: Any) -> ml_collections.ConfigDict:
    """config.dataset with the schema's default for each field it lacks but its name.

    Raises:
        ConfigError: `dataset_config` is not a ConfigDict or a mapping.
    """
    if isinstance(dataset_config, ml_collections.ConfigDict):
        given = dataset_config.to_dict()
    elif isinstance(dataset_config, Mapping):
        given = dict(dataset_config)
    else:
        raise ConfigError(
            "config.dataset must be an ml_collections.ConfigDict (jaxnn.default_config().dataset), "
            f"got {type(dataset_config).__name__}"
        )
    return ml_collections.ConfigDict({**default_config().dataset.to_dict(), "name": "", **given})


def is_file_name(name: str) -> bool:
    """Whether dataset.name names a user's file (`npz:PATH`, `csv:PATH`)."""
    return files.scheme_of(name) is not None


def validation_split(
    num_examples: int, validation_fraction: float, split_seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train_idx, val_idx), int64, sorted: validation is the first
    round(num_examples * validation_fraction) of `default_rng(split_seed).permutation`.

    Raises:
        ConfigError: validation_fraction outside (0, 1).
        DataError: the split would leave train or validation empty.
    """
    _check_fraction(validation_fraction)
    num_val = round(num_examples * validation_fraction)
    if not 0 < num_val < num_examples:
        raise DataError(
            f"dataset.validation_fraction={validation_fraction} of {num_examples} train "
            f"examples leaves {num_val} for validation and {num_examples - num_val} for "
            "training; both need at least one (change validation_fraction)"
        )
    permutation = np.random.default_rng(split_seed).permutation(num_examples)
    return np.sort(permutation[num_val:]), np.sort(permutation[:num_val])


def position_permutation(length: int, permute_seed: int) -> np.ndarray | None:
    """The fixed permutation int64 [length] of the positions that `permute_seed` names, or
    None for 0 (off): `np.random.default_rng(permute_seed).permutation(length)`."""
    if permute_seed == 0:
        return None
    return np.random.default_rng(permute_seed).permutation(length)


def validate_dataset_config(dataset_config: Any) -> None:
    """Checks config.dataset without preparing or reading any data.

    Raises:
        ConfigError: a field has a bad value or does not apply to the data set's task.
        DataError: unknown data set name (the message lists the local ones).
    """
    _check_whole_config(with_defaults(dataset_config))


def _check_whole_config(dataset_config: ml_collections.ConfigDict) -> None:
    """`validate_dataset_config` of a section that has every field (`with_defaults`)."""
    name = dataset_config.name
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"dataset.name must be a data set name such as "
            f"{', '.join(sorted(builders.BUILDERS))}, npz:PATH or csv:PATH, got {name!r}"
        )
    if files.scheme_of(name):
        files.validate_file_config(dataset_config)
    _check_fraction(dataset_config.validation_fraction)
    _check_integer_options(
        "dataset.",
        split_seed=dataset_config.split_seed,
        train_per_class=dataset_config.train_per_class,
        permute_seed=dataset_config.permute_seed,
    )
    for flag in ("standardize", "rebuild"):
        value = dataset_config[flag]
        if not isinstance(value, bool):
            raise ConfigError(f"dataset.{flag} must be True or False, got {value!r}")
    if files.scheme_of(name) or name.startswith(ARRAYS_SCHEME):
        return  # the task and classes are known once the file is read (or the arrays given)
    spec = builders.describe(name, dataset_config.data_dir)
    _check_subset_options(
        spec.task, spec.num_classes, tuple(dataset_config.classes), dataset_config.train_per_class
    )


def load(dataset_config: Any) -> Dataset:
    """Loads config.dataset: prepares it in data_dir once (again first with `rebuild`),
    reads it, splits it.

    Raises:
        ConfigError, DataError: before any data is prepared where the config shows the mistake.
    """
    dataset_config = with_defaults(dataset_config)
    _check_whole_config(dataset_config)
    if dataset_config.name.startswith(ARRAYS_SCHEME):
        raise DataError(
            f"dataset.name={dataset_config.name!r} names arrays given from Python: pass them "
            "again, jaxnn.run(config, workdir, data=jaxnn.from_arrays(...))"
        )
    recipe = _Recipe.of_config(dataset_config)
    if files.scheme_of(dataset_config.name):
        arrays = files.read(dataset_config)
        return from_arrays(
            arrays.x_train,
            arrays.y_train,
            arrays.x_test,
            arrays.y_test,
            task=arrays.task,
            name=dataset_config.name,
            feature_names=arrays.feature_names,
            **dataclasses.asdict(recipe),
        )
    raw = builders.read(
        dataset_config.name, dataset_config.data_dir, rebuild_first=dataset_config.rebuild
    )
    spec = raw.spec
    x_train, y_train = _checked_arrays("train", raw.x_train, raw.y_train, spec.task)
    x_test, y_test = _checked_arrays("test", raw.x_test, raw.y_test, spec.task)
    return _assemble(
        dataset_config.name,
        spec.task,
        (x_train, y_train, x_test, y_test),
        np.arange(spec.num_classes),
        class_names=spec.class_names,
        feature_names=spec.feature_names,
        recipe=recipe,
        feature_divisor=raw.feature_divisor,
    )


def from_arrays(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    task: str,
    validation_fraction: float = 0.1,
    standardize: bool = True,
    split_seed: int = 0,
    name: str = "arrays",
    class_names: Sequence[str] = (),
    feature_names: Sequence[str] = (),
    classes: Sequence[Any] = (),
    train_per_class: int = 0,
    permute_seed: int = 0,
) -> Dataset:
    """Builds a Dataset from the user's own arrays, processed exactly as `load` does.

    Class labels may be of any sortable kind (integers, strings, ...): they are encoded as
    scikit-learn's LabelEncoder does, the sorted distinct labels of train and test becoming
    classes 0..C-1 (`Dataset.classes` holds them; a predictor decodes to them), so labels
    1..3 or {0, 1, 9} are 3 classes.

    Args:
        x_train, x_test: features [n, *feature_shape], any real dtype, all finite.
        y_train, y_test: class labels [n] (classification) or targets [n] / [n, outputs].
        class_names: optional names of the classes, one per class; for integer labels they
            name labels 0..len(class_names)-1 (so a class absent from the arrays still counts).
        classes: keep only these labels (as config.dataset.classes), classes in this order.
        train_per_class, permute_seed: as config.dataset.train_per_class / permute_seed.

    Raises:
        ConfigError: bad task, fraction, class subset or per-class limit.
        DataError: mismatched lengths or shapes, NaN/inf, wrong dtypes.
    """
    recipe = _Recipe(
        permute_seed, tuple(classes), validation_fraction, split_seed, train_per_class, standardize
    )
    arrays = _checked_inputs((x_train, y_train, x_test, y_test), task, recipe, feature_names)
    label_values, class_names = None, tuple(class_names)
    if task == "classification":
        x_train, y_train, x_test, y_test = arrays
        label_values, encoded = _encoded_labels(y_train, y_test, class_names)
        positions = _subset_positions(recipe.classes, label_values)
        arrays = (x_train, encoded[: len(y_train)], x_test, encoded[len(y_train) :])
        class_names = class_names or tuple(str(v) for v in label_values.tolist())
        recipe = dataclasses.replace(recipe, classes=positions)
    num_classes = 0 if label_values is None else len(label_values)
    _check_subset_options(task, num_classes, recipe.classes, train_per_class)
    return _assemble(
        name,
        task,
        arrays,
        label_values,
        class_names=class_names,
        feature_names=tuple(feature_names),
        recipe=recipe,
    )


def _encoded_labels(
    y_train: np.ndarray, y_test: np.ndarray, class_names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """(the decoded classes [C], the labels of train then test as class indices int64), the
    classes sorted as scikit-learn's LabelEncoder sorts them."""
    labels = np.concatenate([y_train, y_test])
    values, encoded = np.unique(labels, return_inverse=True)
    encoded = encoded.reshape(-1).astype(np.int64)
    if not class_names:
        return values, encoded
    named = np.arange(len(class_names))
    if np.issubdtype(labels.dtype, np.integer) and np.isin(values, named).all():
        return named, labels.astype(np.int64)
    if len(class_names) != len(values):
        raise DataError(
            f"{len(class_names)} class_names were given for {len(values)} classes "
            f"({', '.join(repr(v) for v in values.tolist()[:10])}); give one name per class"
        )
    return values, encoded


def _subset_positions(classes: Sequence[Any], label_values: np.ndarray) -> tuple[int, ...]:
    """The class indices of a subset given as labels (`from_arrays(classes=...)`)."""
    known = {value: i for i, value in enumerate(label_values.tolist())}
    unknown = [c for c in classes if c not in known]
    if unknown:
        shown = ", ".join(repr(v) for v in label_values.tolist()[:10])
        raise ConfigError(
            f"classes={tuple(classes)!r} names {unknown[0]!r}, which is not a label of the "
            f"arrays; their labels are {shown}"
        )
    return tuple(known[c] for c in classes)


def _checked_inputs(
    arrays: tuple[Any, Any, Any, Any], task: Any, recipe: _Recipe, feature_names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """`from_arrays`'s options (classes aside) and arrays checked, targets 2-D for regression."""
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    _check_fraction(recipe.validation_fraction)
    if not isinstance(recipe.standardize, bool):
        raise ConfigError(f"standardize must be True or False, got {recipe.standardize!r}")
    _check_integer_options("", split_seed=recipe.split_seed, train_per_class=recipe.train_per_class)
    if not _is_int(recipe.permute_seed) or recipe.permute_seed < 0:
        raise ConfigError(
            f"permute_seed must be an integer >= 0 (0 = off), got {recipe.permute_seed!r}"
        )
    x_train, y_train, x_test, y_test = _as_arrays(arrays)
    checked = (
        *_checked_arrays("train", x_train, y_train, task),
        *_checked_arrays("test", x_test, y_test, task),
    )
    _check_whole(checked, task, feature_names)
    return checked


def _as_arrays(arrays: tuple[Any, Any, Any, Any]) -> list[np.ndarray]:
    """x_train, y_train, x_test, y_test as numpy arrays of numbers (not ragged, not objects)."""
    names = ("x_train", "y_train", "x_test", "y_test")
    converted = []
    for name, array in zip(names, arrays, strict=True):
        try:
            converted.append(np.asarray(array))
        except (ValueError, TypeError) as error:
            raise DataError(
                f"{name} cannot be made an array ({' '.join(str(error).split())[:120]}); every "
                "row must have the same shape (ragged rows are not supported)"
            ) from error
        if converted[-1].dtype == object:
            raise DataError(f"{name} holds Python objects (ragged rows?), not numbers")
    return converted


def _check_whole(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    task: str,
    feature_names: Sequence[str],
) -> None:
    """The checked splits together: features, targets, two train classes, matching shapes."""
    x_train, y_train, x_test, y_test = arrays
    for name, array in (("x_train", x_train), ("x_test", x_test)):
        if math.prod(array.shape[1:]) == 0:
            raise DataError(
                f"{name} has feature shape {array.shape[1:]}: no features to learn from"
            )
    if task == "regression":
        for name, array in (("y_train", y_train), ("y_test", y_test)):
            if array.shape[1] == 0:
                raise DataError(f"{name} has shape {array.shape}: no targets to learn")
    elif len(np.unique(y_train)) < 2:
        raise DataError(
            f"y_train holds a single class ({y_train[0]!r}); classification needs at least "
            "two classes in the training split"
        )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DataError(
            f"x_train has feature shape {x_train.shape[1:]} but x_test has "
            f"{x_test.shape[1:]}; they must match"
        )
    if task == "regression" and y_train.shape[1:] != y_test.shape[1:]:
        raise DataError(
            f"y_train has {y_train.shape[1]} target columns but y_test has {y_test.shape[1]}"
        )
    if feature_names and len(feature_names) != math.prod(x_train.shape[1:]):
        raise DataError(
            f"{len(feature_names)} feature_names given for {math.prod(x_train.shape[1:])} features"
        )


def _check_integer_options(prefix: str, **values: Any) -> None:
    """Checks dataset.<name> integers by their `INTEGER_FIELDS` rows, named with `prefix`."""
    for entry in INTEGER_FIELDS:
        field = entry.field.removeprefix("dataset.")
        if field != entry.field and field in values:
            problem = entry.problem(values[field])
            if problem is not None:
                raise ConfigError(prefix + problem.removeprefix("dataset."))


def _assemble(
    name: str,
    task: str,
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    label_values: np.ndarray | None,
    *,
    class_names: tuple[str, ...],
    feature_names: tuple[str, ...],
    recipe: _Recipe,
    feature_divisor: float = 1.0,
) -> Dataset:
    """The Dataset by the module's order of operations; `label_values` are the decoded classes
    (None for regression); features are divided by `feature_divisor` first (uint8 pixels: 255)."""
    x_train, y_train, x_test, y_test = arrays
    if feature_divisor != 1.0:
        x_train, x_test = x_train / feature_divisor, x_test / feature_divisor
    permutation = position_permutation(x_train.shape[1], recipe.permute_seed)
    if permutation is not None:  # out[:, t] = x[:, permutation[t]]
        x_train, x_test = x_train[:, permutation], x_test[:, permutation]
    if recipe.classes and label_values is not None:  # a class subset (classification only)
        x_train, y_train = _subset_classes(x_train, y_train, recipe.classes)
        x_test, y_test = _subset_classes(x_test, y_test, recipe.classes)
        class_names = tuple(class_names[c] for c in recipe.classes) if class_names else ()
        label_values = label_values[list(recipe.classes)]
    num_classes = 0 if label_values is None else len(label_values)
    splits = _carved_splits((x_train, y_train, x_test, y_test), num_classes, recipe)
    stats: dict[str, np.ndarray] = {}
    if recipe.standardize:
        splits, stats = _standardised(splits, task)
    typed = _typed_splits(name, task, splits, stats, standardize=recipe.standardize)
    num_outputs = num_classes if task == "classification" else typed["y_train"].shape[1]
    return Dataset(
        name=name,
        task=task,
        **typed,
        num_classes=num_classes,
        num_outputs=num_outputs,
        class_names=class_names if task == "classification" else (),
        feature_names=feature_names,
        preprocessing=Preprocessing(
            task=task,
            feature_shape=tuple(typed["x_train"].shape[1:]),
            num_outputs=num_outputs,
            classes=label_values if task == "classification" else None,
            feature_divisor=feature_divisor,
            **stats,
        ),
    )


def _carved_splits(
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray], num_classes: int, recipe: _Recipe
) -> dict[str, np.ndarray]:
    """The six splits: validation carved from train, then train limited per class."""
    x_train, y_train, x_test, y_test = arrays
    train_idx, val_idx = validation_split(
        len(x_train), recipe.validation_fraction, recipe.split_seed
    )
    splits = {
        "x_train": x_train[train_idx],
        "y_train": y_train[train_idx],
        "x_val": x_train[val_idx],
        "y_val": y_train[val_idx],
        "x_test": x_test,
        "y_test": y_test,
    }
    if recipe.train_per_class:
        keep = _first_per_class(splits["y_train"], num_classes, recipe.train_per_class)
        splits["x_train"], splits["y_train"] = splits["x_train"][keep], splits["y_train"][keep]
    return splits


def _standardised(
    splits: dict[str, np.ndarray], task: str
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The splits standardised by train statistics, and those statistics (float64)."""
    mean, std = _feature_stats(splits["x_train"])
    out = dict(splits)
    for split in ("x_train", "x_val", "x_test"):
        out[split] = (splits[split] - mean) / std
    stats = {"feature_mean": mean, "feature_std": std}
    if task == "regression":
        target_mean, target_std = _train_stats(splits["y_train"])
        for split in ("y_train", "y_val", "y_test"):
            out[split] = (splits[split] - target_mean) / target_std
        stats |= {"target_mean": target_mean, "target_std": target_std}
    return out, stats


def _typed_splits(
    name: str,
    task: str,
    splits: dict[str, np.ndarray],
    stats: dict[str, np.ndarray],
    *,
    standardize: bool,
) -> dict[str, np.ndarray]:
    """The Dataset's arrays as training holds them (float32, labels int32), the float32 ones
    checked to stay within `MAX_MAGNITUDE`, which training can square."""
    floats = ["x_train", "x_val", "x_test"]
    if task == "regression":
        floats += ["y_train", "y_val", "y_test"]
    with np.errstate(over="ignore", invalid="ignore"):
        typed = {split: splits[split].astype(np.float32) for split in floats}
        targets = ("target_mean", "target_std")
        typed |= {stat: stats[stat].astype(np.float32) for stat in targets if stat in stats}
    for split, array in typed.items():
        largest = float(np.max(np.abs(array), initial=0.0))
        if not largest <= MAX_MAGNITUDE:  # also catches an overflow to inf
            cure = (
                "rescale them (their spread overflows)"
                if standardize
                else "pass standardize=True (config.dataset.standardize) or rescale them"
            )
            raise DataError(
                f"{name}: {split} reaches {largest:.3g} in magnitude, beyond the {MAX_MAGNITUDE:.0e} "
                f"that float32 training can square; {cure}"
            )
    labels = ("y_train", "y_val", "y_test") if task == "classification" else ()
    return typed | {split: splits[split].astype(np.int32) for split in labels}


def _feature_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The features' standardisation: per feature (`_train_stats`), except for images
    [N, H, W, C], standardised per channel over every pixel (as image models expect: a pixel
    that is always dark in train stays dark rather than becoming noise) and broadcast to
    [H, W, C], so the preprocessing record has the examples' shape either way."""
    if x.ndim != 4:
        return _train_stats(x)
    mean, std = _train_stats(x.reshape((-1, x.shape[-1])))
    shape = x.shape[1:]
    return np.broadcast_to(mean, shape).copy(), np.broadcast_to(std, shape).copy()


def _train_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std over axis 0 (float64); std < MIN_STD becomes 1 (centre only):
    a floor of MIN_STD itself would turn a feature constant in train but not in test (digits'
    pixel 24) into values near 1e8. A column whose statistics overflow float64 (values near
    1e300) is computed again divided by its largest magnitude and scaled back, so it keeps its
    true spread rather than being standardised to zeros."""
    values = values.astype(np.float64)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is refused after, in words
        mean, std = values.mean(axis=0), values.std(axis=0)
        overflowed = ~(np.isfinite(mean) & np.isfinite(std))
        if overflowed.any():
            scale = np.max(np.abs(values), axis=0, initial=0.0)
            scale = np.where(overflowed & (scale > 0) & np.isfinite(scale), scale, 1.0)
            scaled = values / scale
            mean = np.where(overflowed, scaled.mean(axis=0) * scale, mean)
            std = np.where(overflowed, scaled.std(axis=0) * scale, std)
    return mean, np.where(std < MIN_STD, 1.0, std)


def _subset_classes(
    x: np.ndarray, y: np.ndarray, classes: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Keeps examples of `classes` (original order) with labels relabelled to their positions."""
    relabel = np.full(int(max(y.max(initial=0), *classes)) + 1, -1, dtype=np.int64)
    relabel[list(classes)] = np.arange(len(classes))
    new_labels = relabel[y]
    keep = new_labels >= 0
    return x[keep], new_labels[keep]


def _first_per_class(labels: np.ndarray, num_classes: int, limit: int) -> np.ndarray:
    """Sorted indices of the first `limit` examples of every class."""
    counts = np.bincount(labels, minlength=num_classes)
    if counts.min() < limit:
        label = int(counts.argmin())
        raise ConfigError(
            f"dataset.train_per_class={limit} but class {label} has only {counts[label]} train "
            f"examples after carving validation; use at most {int(counts.min())}"
        )
    return np.sort(
        np.concatenate([np.flatnonzero(labels == c)[:limit] for c in range(num_classes)])
    )


def _checked_arrays(split: str, x: Any, y: Any, task: str) -> tuple[np.ndarray, np.ndarray]:
    """Validates one split's features and targets; returns them as arrays, targets 2-D for regression."""
    x, y = np.asarray(x), np.asarray(y)
    if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise DataError(f"x_{split} must hold real numbers, got dtype {x.dtype}")
    if x.ndim < 2 or len(x) == 0:
        raise DataError(
            f"x_{split} must be [num_examples, *feature_shape] with at least one example, got "
            f"shape {x.shape} (reshape a single feature to [n, 1])"
        )
    if len(x) != len(y):
        raise DataError(
            f"x_{split} has {len(x)} examples but y_{split} has {len(y)}; they must match"
        )
    if not np.isfinite(x).all():
        bad = int(np.count_nonzero(~np.isfinite(x)))
        raise DataError(f"x_{split} has {bad} NaN or infinite values; features must be finite")
    if task == "classification":
        return x, _checked_labels(split, y)
    if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number) or y.ndim not in (1, 2):
        raise DataError(
            f"y_{split} must be real regression targets of shape [n] or [n, outputs], got "
            f"dtype {y.dtype} shape {y.shape}"
        )
    if not np.isfinite(y).all():
        raise DataError(f"y_{split} has NaN or infinite values; targets must be finite")
    return x, y.reshape(len(y), -1)


def _checked_labels(split: str, y: np.ndarray) -> np.ndarray:
    """Class labels [n] of any sortable kind: integers, strings, booleans, or whole floats."""
    if y.ndim != 1:
        raise DataError(
            f"y_{split} must be class labels of shape [n] for classification, got shape {y.shape}"
        )
    if np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all() or (y != np.round(y)).any():
            raise DataError(
                f"y_{split} holds fractional or non-finite values, which are not class labels "
                "(use task='regression' for continuous targets, or y.astype(int))"
            )
        return y.astype(np.int64)
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype.kind in "USb"):
        raise DataError(
            f"y_{split} must be class labels (integers or strings) of shape [n], got dtype {y.dtype}"
        )
    return y


def _check_fraction(validation_fraction: Any) -> None:
    if not files.is_fraction(validation_fraction):
        raise ConfigError(
            "dataset.validation_fraction must be a number in (0, 1) (validation is carved "
            f"from train), got {validation_fraction!r}"
        )


def _check_subset_options(
    task: str, num_classes: int, classes: tuple[Any, ...], train_per_class: Any
) -> None:
    """Checks dataset.classes and dataset.train_per_class against the data set's classes."""
    if task != "classification":
        for field, value in (("classes", classes), ("train_per_class", train_per_class)):
            if value:
                raise ConfigError(
                    f"dataset.{field}={value!r} applies only to classification; this data set "
                    f"is {task} (leave it at its default)"
                )
        return
    if not classes:
        return
    if not all(_is_int(c) for c in classes):
        raise ConfigError(f"dataset.classes must be integer labels, got {classes!r}")
    unknown = sorted(int(c) for c in set(classes) if not 0 <= c < num_classes)
    if unknown:
        raise ConfigError(
            f"dataset.classes={tuple(classes)!r} names classes {unknown} that the data set "
            f"lacks; its labels are 0..{num_classes - 1}"
        )
    if len(set(classes)) != len(classes):
        raise ConfigError(f"dataset.classes={tuple(classes)!r} repeats a class")
    if len(classes) < 2:
        raise ConfigError(
            f"dataset.classes={tuple(classes)!r} keeps fewer than 2 classes; name at least 2"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)
