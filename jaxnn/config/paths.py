"""A path a user wrote (a workdir, a data file, a source run, a data directory) with `~`
expanded: one owner of the expansion and of its one-line failure.

`Path.expanduser` raises `RuntimeError` for `~nosuchuser` (and for `~` without a home), while
`os.path.expanduser` leaves it as a relative directory name (a launch would write under
`./~nosuchuser`): both become one ConfigError here.
"""

from __future__ import annotations

import os
from pathlib import Path

from jaxnn.errors import ConfigError


def expand_user(path: str | os.PathLike, what: str) -> Path:
    """`path` with a leading `~` or `~user` expanded (ConfigError if it cannot be); `what` names
    its field for the message ('init_from.workdir')."""
    text = os.fspath(path)
    if not text.startswith("~"):
        return Path(text)
    expanded = os.path.expanduser(text)
    if expanded.startswith("~"):
        user = text.split("/", 1)[0]
        raise ConfigError(
            f"{what} {text[:200]}: cannot expand {user} (no such user or no home directory); "
            "write the path out in full"
        )
    return Path(expanded)
