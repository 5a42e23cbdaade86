"""A config read back from a run, upgraded to the current schema in one place.

Every reader of a recorded config (config.json, an exported model's metadata: a resume,
`load_predictor`, `load_model`, a transfer's source) goes through `upgrade`, which gives each
field the record lacks its default; the schema's defaults reproduce what runs did before the
field existed, so code past the readers never asks whether a field exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import ml_collections

from jaxnn.config.schema import default_config


def upgrade(record: Mapping[str, Any]) -> ml_collections.ConfigDict:
    """The recorded config `record` (its JSON form) with every field of the current schema.

    The record's own values are kept (lists back to tuples), fields the schema does not know
    too (a user model's declared fields), so validation judges them like any config's.
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
