"""Local TFDS builders and the code that prepares and reads TFDS data sets without TensorFlow.

`BUILDERS` maps each local name (as given to `jaxnn.data.load`) to its builder class, all
generated on this machine (no download). Importing this package registers them with TFDS, so
`tfds.builder(name)` and `tfds.data_source(name, ...)` find them.
"""

from __future__ import annotations

from jaxnn.data.builders.mnist1d_builder import make_mnist1d
from jaxnn.data.builders.sklearn_builders import Digits
from jaxnn.data.builders.source import BUILDERS, describe, prepare, prepared_dir, read

__all__ = [
    "BUILDERS",
    "Digits",
    "describe",
    "make_mnist1d",
    "prepare",
    "prepared_dir",
    "read",
]
