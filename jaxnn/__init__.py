"""jaxnn: many random restarts of small networks, trained in one vmapped JAX program.

Submodules (`jaxnn.data`, `jaxnn.models`, `jaxnn.run`, ...) are imported on first attribute
access, so `import jaxnn` stays cheap and pulls in neither JAX nor TFDS.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__version__ = "0.1.0"

__all__ = ["__version__"]


def __getattr__(name: str) -> ModuleType:
    """Imports the submodule `jaxnn.<name>` lazily on first attribute access."""
    if not name.startswith("_") and importlib.util.find_spec(f"{__name__}.{name}") is not None:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
