"""jaxnn: many random starts of neural networks, trained in one vmapped JAX program.

The curated public API, imported on first use (`import jaxnn` pulls in neither JAX nor TFDS).
Importing jaxnn before JAX starts splits the host into one CPU device per core, as the launcher
does; `JAXNN_SPLIT_CPU=0` turns that off (`jaxnn.parallel.cpu_devices`).

    import jaxnn

    config = jaxnn.default_config()
    summary = jaxnn.run(config, "runs/first", model=MyModule(), metrics={"top2": top2})
    result = jaxnn.fit_ensemble(config, data, jax.random.PRNGKey(0), sweep={...})

Everything else lives in the layered packages (`jaxnn.core`, `jaxnn.nn`, `jaxnn.data`,
`jaxnn.io`, ...; see docs/architecture.md) and may change between versions.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from jaxnn.parallel.cpu_devices import split_on_import

__version__ = "0.1.0"

split_on_import(os.environ)

# public name -> the module that defines it
_API = {
    # training
    "run": "jaxnn.runner",
    "fit": "jaxnn.core.loop",
    "fit_ensemble": "jaxnn.core.ensemble",
    "fit_variants": "jaxnn.core.variants",
    "load_model": "jaxnn.io.export",
    "LoadedModel": "jaxnn.io.export",
    # predictions on raw inputs
    "load_predictor": "jaxnn.predict.load",
    "Predictor": "jaxnn.predict.predictor",
    # results as pandas DataFrames (pip install jaxnn[pandas])
    "members_frame": "jaxnn.reporting.frames",
    "history_frame": "jaxnn.reporting.frames",
    "enable_compilation_cache": "jaxnn.core.compile_cache",
    # configuration
    "default_config": "jaxnn.config.schema",
    "Sweep": "jaxnn.config.sweep",
    "validate": "jaxnn.front_end",
    # data
    "Dataset": "jaxnn.data.dataset",
    "from_arrays": "jaxnn.data.dataset",
    "load_dataset": "jaxnn.data.dataset",
    # bring your own
    "ModelFamily": "jaxnn.nn.family",
    "UserModel": "jaxnn.nn.user_model",
    "Dropout": "jaxnn.nn.dropout",
    "Metric": "jaxnn.nn.metrics",
    "Components": "jaxnn.nn.components",
    # registries (name -> entry; add to them to extend the config's choices)
    "MODEL_FAMILIES": "jaxnn.nn.registry",
    "ACTIVATIONS": "jaxnn.nn.activations",
    "INITIALIZERS": "jaxnn.nn.activations",
    "LOSSES": "jaxnn.nn.losses",
    "OPTIMIZERS": "jaxnn.nn.optimizers",
    "SCHEDULES": "jaxnn.nn.optimizers",
    "DATASETS": "jaxnn.data.builders",
    # errors
    "JaxnnError": "jaxnn.errors",
    "ConfigError": "jaxnn.errors",
    "DataError": "jaxnn.errors",
    "CheckpointError": "jaxnn.errors",
    "WorkdirError": "jaxnn.errors",
}
# public names defined under another name in their module
_RENAMED = {
    "load_dataset": "load",
    "DATASETS": "BUILDERS",
    "enable_compilation_cache": "enable",
    "validate": "resolve",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first use."""
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
