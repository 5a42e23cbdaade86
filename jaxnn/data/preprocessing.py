"""What training did to the raw data, as a value: feature statistics, target scaling, labels.

A `Dataset` carries its `Preprocessing`; the checkpoints and the export `DIR/best` store it
(`to_json` / `from_json`, exact: floats go through JSON's shortest round-trip form), so that a
predictor given raw inputs applies exactly what training applied and answers in the user's
units (decoded labels, targets in target units).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxnn.errors import DataError

FORMAT = 1
# The largest magnitude of a feature or target as training sees it: float32 training squares
# them (losses, norms, variances), and float32 ends at 3.4e38.
MAX_MAGNITUDE = 1e18


@dataclasses.dataclass(frozen=True, eq=False)
class Preprocessing:
    """The transformation from raw arrays to what the model was trained on, and back.

    Attributes:
      num_outputs: the model's outputs (classes, or target columns).
      feature_divisor: what raw features are divided by first (255 for the uint8 pixels of a
        TFDS catalog image data set, so they become [0, 1]; 1 otherwise).
      feature_mean, feature_std: float64 [*feature_shape], or None (features not standardised).
      target_mean, target_std: float64 [num_outputs] (regression, standardised), or None.
      classes: the decoded labels, sorted as scikit-learn sorts them (or in the order of a
        class subset); index i is the model's output i. None for regression.
    """

    task: str
    feature_shape: tuple[int, ...]
    num_outputs: int
    feature_mean: np.ndarray | None = None
    feature_std: np.ndarray | None = None
    target_mean: np.ndarray | None = None
    target_std: np.ndarray | None = None
    classes: np.ndarray | None = None
    feature_divisor: float = 1.0

    @classmethod
    def identity(cls, task: str, feature_shape: tuple[int, ...], num_outputs: int) -> Preprocessing:
        """No standardisation, classes 0..num_outputs-1 (a Dataset built without statistics)."""
        classes = np.arange(num_outputs) if task == "classification" else None
        return cls(
            task=task, feature_shape=tuple(feature_shape), num_outputs=num_outputs, classes=classes
        )

    @property
    def num_features(self) -> int:
        return math.prod(self.feature_shape)

    def check_features(self, x: Any) -> np.ndarray:
        """x as an array, checked to be [N, *feature_shape] of real numbers (else DataError)."""
        x = np.asarray(x)
        if x.dtype == np.bool_ or not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
            raise DataError(f"x must hold real numbers, got dtype {x.dtype}")
        if x.ndim < 2 or tuple(x.shape[1:]) != self.feature_shape:
            width = "x [N, " + ", ".join(str(d) for d in self.feature_shape) + "]"
            raise DataError(
                f"x has shape {tuple(x.shape)} but the model takes {width} (the feature shape "
                "it was trained on)"
            )
        return x

    def features(self, x: Any) -> np.ndarray:
        """Raw inputs [N, *feature_shape] as the model sees them (float32, standardised);
        DataError: not [N, *feature_shape] of real numbers, or NaN / infinite values."""
        x = self.check_features(x)
        if not np.isfinite(x).all():
            bad = int(np.count_nonzero(~np.isfinite(x)))
            raise DataError(f"x has {bad} NaN or infinite values; inputs must be finite")
        if self.feature_divisor != 1.0:
            x = x / self.feature_divisor
        if self.feature_mean is not None:
            with np.errstate(over="ignore", invalid="ignore"):
                x = (x - self.feature_mean) / self.feature_std
        largest = float(np.max(np.abs(x), initial=0.0))
        if not largest <= MAX_MAGNITUDE:
            raise DataError(
                f"x reaches {largest:.3g} in magnitude as the model sees it (standardised by "
                f"the training data's statistics), beyond the {MAX_MAGNITUDE:.0e} that float32 "
                "can take; inputs must be on the scale of the training data"
            )
        return x.astype(np.float32)

    def encode_labels(self, y: Any) -> np.ndarray:
        """Decoded labels [N] -> class indices int32 [N] (DataError: a label not in `classes`)."""
        y = np.asarray(y)
        if y.ndim != 1:
            raise DataError(f"y must be labels of shape [N], got shape {tuple(y.shape)}")
        classes = self._classes()
        sorter = np.argsort(classes, kind="stable")
        ordered = classes[sorter]
        try:
            position = np.clip(np.searchsorted(ordered, y), 0, len(ordered) - 1)
            found = np.asarray(ordered[position] == y, bool)
        except TypeError:  # labels of another kind (strings against numbers)
            position, found = np.zeros(len(y), int), np.zeros(len(y), bool)
        if not found.all():
            unknown = y[~found][0]
            raise DataError(
                f"y has label {_label_text(unknown)}, which is not a class the model knows; "
                f"its classes are {_classes_text(classes)}"
            )
        return sorter[position].astype(np.int32)

    def decode_labels(self, indices: np.ndarray) -> np.ndarray:
        """Class indices [N] -> decoded labels [N]."""
        return self._classes()[np.asarray(indices)]

    def _classes(self) -> np.ndarray:
        """The decoded labels; labels have no meaning for a regression model."""
        if self.classes is None:
            raise DataError(f"labels apply to classification, but this model does {self.task}")
        return self.classes

    def targets(self, y: Any) -> np.ndarray:
        """Regression targets in target units [N] or [N, O] -> as trained on, float32 [N, O];
        DataError: the wrong number of target columns or non-finite targets."""
        y = np.asarray(y)
        if y.dtype == np.bool_ or not np.issubdtype(y.dtype, np.number) or np.iscomplexobj(y):
            raise DataError(
                f"y must hold real numbers (a regression model's targets), got dtype {y.dtype}"
            )
        y = y.astype(np.float64)
        y = y.reshape(len(y), -1) if y.ndim in (1, 2) else y
        if y.ndim != 2 or y.shape[1] != self.num_outputs:
            raise DataError(
                f"y has shape {tuple(np.shape(y))} but the model predicts {self.num_outputs} "
                "target(s)"
            )
        if not np.isfinite(y).all():
            raise DataError("y has NaN or infinite values; targets must be finite")
        if self.target_mean is not None:
            y = (y - self.target_mean) / self.target_std
        return y.astype(np.float32)

    def in_target_units(self, predictions: np.ndarray) -> np.ndarray:
        """Regression predictions as trained on [N, O] -> in target units [N, O] (float64)."""
        predictions = np.asarray(predictions, np.float64)
        if self.target_mean is None:
            return predictions
        return predictions * self.target_std + self.target_mean

    def to_json(self) -> dict[str, Any]:
        """A JSON-able record that `from_json` reads back exactly."""
        return {
            "format": FORMAT,
            "task": self.task,
            "feature_shape": list(self.feature_shape),
            "num_outputs": int(self.num_outputs),
            "feature_divisor": float(self.feature_divisor),
            **{name: _floats(getattr(self, name)) for name in _FLOAT_FIELDS},
            "classes": None if self.classes is None else self.classes.tolist(),
            "classes_dtype": None if self.classes is None else self.classes.dtype.str,
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Preprocessing:
        feature_shape = tuple(int(d) for d in record["feature_shape"])
        arrays = {}
        for name in _FLOAT_FIELDS:
            value = record.get(name)
            shape = feature_shape if name.startswith("feature") else (-1,)
            arrays[name] = None if value is None else np.asarray(value, np.float64).reshape(shape)
        classes = record.get("classes")
        if classes is not None:
            classes = np.asarray(classes, dtype=np.dtype(record["classes_dtype"]))
        return cls(
            task=record["task"],
            feature_shape=feature_shape,
            num_outputs=int(record["num_outputs"]),
            classes=classes,
            feature_divisor=float(record.get("feature_divisor", 1.0)),
            **arrays,
        )


_FLOAT_FIELDS = ("feature_mean", "feature_std", "target_mean", "target_std")


def _floats(values: np.ndarray | None) -> list[float] | None:
    return None if values is None else np.asarray(values, np.float64).ravel().tolist()


def _label_text(label: Any) -> str:
    return repr(label.item() if isinstance(label, np.generic) else label)


def _classes_text(classes: np.ndarray, limit: int = 10) -> str:
    shown = ", ".join(_label_text(c) for c in classes[:limit])
    return shown + (f", ... ({len(classes)} in all)" if len(classes) > limit else "")
