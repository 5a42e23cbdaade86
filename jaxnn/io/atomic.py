"""Atomic file writes: a reader sees the old file or the new one, never a torn one (JSON, text,
JSON lines)."""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return value


@functools.cache
def _file_mode() -> int:
    """The mode open() would give a new file (mkstemp's files are private to their owner)."""
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _replace_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Writes a new version of `path` with `write` into a temporary file, then renames it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Writes `text` to `path` atomically."""
    _replace_atomic(path, lambda handle: handle.write(text.encode()))


def write_json_atomic(path: Path, obj: Any) -> None:
    """Writes `obj` as indented JSON atomically (NaN becomes null, inf the string "inf")."""
    write_text_atomic(path, json.dumps(_jsonable(obj), indent=2, allow_nan=False) + "\n")


def append_jsonl(path: Path, records: Iterable[Mapping[str, Any]]) -> None:
    """Appends records to a JSON-lines file atomically: a copy with them (O(file size) per call)
    is renamed over it."""
    text = "".join(json.dumps(_jsonable(r), allow_nan=False) + "\n" for r in records)
    path = Path(path)

    def write(handle: BinaryIO) -> None:
        if path.exists():
            with open(path, "rb") as old:
                shutil.copyfileobj(old, handle)
        handle.write(text.encode())

    _replace_atomic(path, write)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Reads a JSON-lines file, ignoring a torn last line."""
    records = []
    for line in Path(path).read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return records
