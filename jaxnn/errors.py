"""User errors: the launcher prints `jaxnn: error: <msg>` (one line) and exits 2."""

from __future__ import annotations


class JaxnnError(Exception):
    """A user mistake: the launcher prints `jaxnn: error: <msg>` and exits 2."""


class ConfigError(JaxnnError):
    """A bad config value or flag."""


class DataError(JaxnnError):
    """A bad data set, bad arrays, or missing prepared data."""


class CheckpointError(JaxnnError):
    """A missing, incompatible or corrupt checkpoint."""


class WorkdirError(JaxnnError):
    """A workdir that cannot be written (read-only, full) or is in use by another launch."""
