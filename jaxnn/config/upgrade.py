"""A config read back from a run, upgraded to the current schema in one place.

A run records its config (config.json, an exported model's metadata) as JSON. A run written
before a field was added to the schema lacks that field; every reader of a recorded config (a
resume, `load_predictor`, `load_model`, a transfer's source run) goes through `upgrade`, which
gives each missing field its default. A field is added to `default_config()` only with a default
that reproduces what runs did before it existed (`model.dtype` float32, `optimizer.ema_decay` 0,
`optimizer.accumulate_steps` 1, `restarts.schedule` none, ...), so the upgraded config describes
the run as it was trained, and the code past the readers never asks whether a field exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxnn.config.schema import default_config


def upgrade(record: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """The recorded config `record` (its JSON form) with every field of the current schema.

    Fields the record lacks take the schema's default; the record's own values are kept as they
    are (lists back to tuples, as the schema has them), fields the schema does not know too (a
    user model's declared fields), so validation judges them like those of any config.
    """
    return ml_collections.ConfigDict(_merged(default_config().to_dict(), record))


def _merged(defaults: Mapping[str, Any], record: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for key, default in defaults.items():
        if key not in record:
            merged[key] = default
        elif isinstance(default, Mapping) and isinstance(record[key], Mapping):
            merged[key] = _merged(default, record[key])
        else:
            merged[key] = _tuples(record[key])
    for key, value in record.items():
        if key not in defaults:
            merged[key] = _tuples(value)
    return merged


def _tuples(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return tuple(_tuples(v) for v in value)
    return value
