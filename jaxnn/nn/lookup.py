"""The one lookup of a name a config gives in a registry of nn parts (activations,
initialisers, pools, optimisers, schedules, losses, model families)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jaxnn.errors import ConfigError, unknown_name


def lookup(registry: Mapping[str, Any], name: str, field: str) -> Any:
    """registry[name], or a ConfigError for `field` that lists the known names."""
    if name not in registry:
        raise ConfigError(unknown_name(field, name, registry))
    return registry[name]
