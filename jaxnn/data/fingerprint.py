"""A data set's fingerprint: its name, every split's shape and dtype, and a hash of the arrays.

The workdir records it (`DIR/data.json`, the checkpoints and the export), so that a relaunch
with other arrays under the same name is refused instead of resuming on them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from jaxnn.data.dataset import Dataset

SPLITS = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


def fingerprint(dataset: Dataset) -> dict[str, Any]:
    """{"name", "task", "arrays": {split: {"shape", "dtype"}}, "sha256"} of the arrays as
    trained on (after the split and the standardisation), and of the decoded classes."""
    digest = hashlib.sha256()
    arrays = {}
    for split in SPLITS:
        values = np.ascontiguousarray(getattr(dataset, split))
        arrays[split] = {"shape": list(values.shape), "dtype": values.dtype.str}
        digest.update(f"{split}{values.shape}{values.dtype.str}".encode())
        digest.update(values.tobytes())
    if dataset.classes is not None:
        digest.update(repr(dataset.classes.tolist()).encode())
    return {
        "name": dataset.name,
        "task": dataset.task,
        "arrays": arrays,
        "sha256": digest.hexdigest(),
    }


def difference(recorded: Mapping[str, Any], current: Mapping[str, Any]) -> str | None:
    """What differs between two fingerprints, in words (None when they are the same data)."""
    if recorded.get("sha256") == current.get("sha256"):
        return None
    for split in SPLITS:
        before = recorded.get("arrays", {}).get(split)
        after = current["arrays"][split]
        if before != after:
            return f"{split} is {_shape_text(before)} there but {_shape_text(after)} now"
    if recorded.get("name") != current.get("name"):
        return f"the data is {recorded.get('name')!r} there but {current.get('name')!r} now"
    return (
        f"the arrays have the same shapes but other values (sha256 "
        f"{str(recorded.get('sha256'))[:12]} there, {current['sha256'][:12]} now)"
    )


def _shape_text(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "absent"
    return f"[{', '.join(str(d) for d in entry['shape'])}] {np.dtype(entry['dtype']).name}"
