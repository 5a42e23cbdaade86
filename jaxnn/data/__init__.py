"""Data sets: the `Dataset` value, loading a named data set, and arrays of the user's own.

Named data sets come from TFDS builders that generate their data locally (`jaxnn.data.builders`).
"""

from jaxnn.data.dataset import (
    MIN_STD,
    Dataset,
    from_arrays,
    load,
    validate_dataset_config,
    validation_split,
)

__all__ = [
    "MIN_STD",
    "Dataset",
    "from_arrays",
    "load",
    "validate_dataset_config",
    "validation_split",
]
