"""Data sets: the `Dataset` value, loading a named data set, and arrays of the user's own.

Named data sets come from TFDS builders that generate their data locally (`jaxnn.data.builders`);
a user's file is `npz:PATH` or `csv:PATH` (`jaxnn.data.files`).
"""

from jaxnn.data.dataset import (
    ARRAYS_SCHEME,
    Dataset,
    from_arrays,
    is_file_name,
    load,
    validate_dataset_config,
    validation_split,
)

__all__ = [
    "ARRAYS_SCHEME",
    "Dataset",
    "from_arrays",
    "is_file_name",
    "load",
    "validate_dataset_config",
    "validation_split",
]
