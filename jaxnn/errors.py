"""User errors: the launcher prints `jaxnn: error: <msg>` (one line) and exits 2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class JaxnnError(Exception):
    """A user mistake: the launcher prints `jaxnn: error: <msg>` and exits 2."""


class ConfigError(JaxnnError):
    """A bad config value or flag."""


def unknown_name(field: str, name: Any, known: Mapping[str, Any]) -> str:
    """The one message for a name that is not in a registry: the field, the name, the known."""
    return f"{field}: unknown {name!r}; choose one of {', '.join(sorted(known))}"


class DataError(JaxnnError):
    """A bad data set, bad arrays, or missing prepared data."""


class CheckpointError(JaxnnError):
    """A missing, incompatible or corrupt checkpoint."""


class WorkdirError(JaxnnError):
    """A workdir that cannot be written (read-only, full) or is in use by another launch."""


class Interrupted(Exception):
    """A run stopped by SIGTERM or SIGINT at a chunk boundary, its checkpoint saved (not a user
    mistake: the launcher prints it and exits 128 + the signal's number, 143 or 130)."""

    def __init__(self, step: int, signal_name: str, exit_code: int):
        self.step = step
        self.signal_name = signal_name
        self.exit_code = exit_code
        super().__init__(f"interrupted at step {step} by {signal_name}; launch again to resume")
