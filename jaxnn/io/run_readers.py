"""One reader per run file: each checks what it reads, and a damaged file is one line.

A workdir's files (`jaxnn.io.run_files`) are read back when a launch resumes, continues or
reports a run. Each reader accepts only what jaxnn writes (numbers finite: jaxnn never writes
NaN or Infinity). A torn last line of an appended file (a launch killed mid-write) is dropped:
the resume computes it again. Anything else that does not fit raises `WorkdirError` naming the
file and the way out, before anything in the workdir is changed.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import ml_collections

from jaxnn.config.fields import is_number
from jaxnn.config.schema import default_config
from jaxnn.config.upgrade import upgrade
from jaxnn.errors import WorkdirError
from jaxnn.io import run_files

WAY_OUT = "pass --overwrite to start over (it deletes the run's files), or choose another --workdir"
# The way out when the damaged file is in a run jaxnn only reads (a transfer's source run, a
# workdir given to load_predictor): it is never overwritten from here.
SOURCE_WAY_OUT = "name another run, or launch that run again with --overwrite"


def damaged(path: Path, what: str, way_out: str = WAY_OUT) -> WorkdirError:
    """The one-line error for a run file that is not what jaxnn writes."""
    return WorkdirError(f"{path} is damaged: {what}; {way_out}")


def _no_constants(name: str) -> Any:
    raise ValueError(f"it holds {name}, which jaxnn never writes")


def parse_json(text: str) -> Any:
    """JSON as jaxnn writes it: NaN, Infinity and -Infinity are refused (ValueError)."""
    return json.loads(text, parse_constant=_no_constants)


def _read_text(path: Path, way_out: str = WAY_OUT) -> str:
    if path.is_dir():
        raise damaged(path, "it should be a file but is a directory", way_out)
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise damaged(path, f"it cannot be read ({reason})", way_out) from error


def _read_json(path: Path, way_out: str = WAY_OUT) -> Any:
    try:
        return parse_json(_read_text(path, way_out))
    except (ValueError, RecursionError, MemoryError) as error:
        text = " ".join(str(error).split())[:200] or type(error).__name__
        raise damaged(path, f"not valid JSON ({text})", way_out) from error


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_metric_map(value: Any) -> bool:
    return isinstance(value, Mapping) and all(
        isinstance(k, str) and is_number(v) for k, v in value.items()
    )


# summary.json field -> (what it must be, the check): what `plan_workdir` and the console read.
SUMMARY_FIELDS: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "steps": ("an integer >= 0", _is_int),
    "dataset": (
        "an object with num_train an integer >= 1",
        lambda v: isinstance(v, Mapping) and _is_int(v.get("num_train"), 1),
    ),
    "best_member": ("an integer >= 0 or null", lambda v: v is None or _is_int(v)),
    "selected_by": ("a string", lambda v: isinstance(v, str)),
    "best": ("an object of finite numbers", _is_metric_map),
    "ensemble": ("an object of finite numbers", _is_metric_map),
    "members": ("a list of objects", lambda v: isinstance(v, list)),
}


def read_config(path: Path, way_out: str = WAY_OUT) -> ml_collections.ConfigDict:
    """config.json: the config of the run there, a JSON object whose sections (the fields
    that are sections in `default_config()`: `model`, `optimizer`, ...) are objects, upgraded
    to the current schema (`jaxnn.config.upgrade`: fields added since take their defaults)."""
    config = _read_json(path, way_out)
    if not isinstance(config, dict) or not config:
        raise damaged(
            path, f"it holds {_kind(config)}, not the run's config (a JSON object)", way_out
        )
    schema = default_config()
    for name, value in config.items():
        section = isinstance(schema.get(name), ml_collections.ConfigDict)
        if section and not isinstance(value, dict):
            raise damaged(
                path,
                f"its field {name!r} holds {_kind(value)}, not a config section (an object)",
                way_out,
            )
    return upgrade(config)


def read_data_record(path: Path) -> dict[str, Any]:
    """data.json: the fingerprint of the arrays a run was given, as a JSON object."""
    record = _read_json(path)
    if not isinstance(record, dict) or not record:
        raise damaged(path, f"it holds {_kind(record)}, not the fingerprint of the run's data")
    return record


def read_summary(path: Path, way_out: str = WAY_OUT) -> dict[str, Any]:
    """summary.json: a finished run's summary, with every field of `SUMMARY_FIELDS` valid."""
    summary = _read_json(path, way_out)
    if not isinstance(summary, dict):
        raise damaged(
            path, f"it holds {_kind(summary)}, not a run's summary (a JSON object)", way_out
        )
    for field, (what, check) in SUMMARY_FIELDS.items():
        if field not in summary:
            raise damaged(path, f"it lacks the field {field!r}", way_out)
        if not check(summary[field]):
            raise damaged(path, f"its field {field!r} must be {what}", way_out)
    return summary


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an empty object"
    if isinstance(value, list):
        return "a list" if value else "an empty list []"
    return "null" if value is None else f"a {type(value).__name__}"


@dataclasses.dataclass(frozen=True)
class AppendedRows:
    """The valid rows of a JSON-lines run file, in file order; `torn`: a torn last line was
    dropped."""

    rows: list[dict[str, Any]]
    torn: bool = False

    def evaluated(self) -> dict[int, set[int]]:
        """member -> the steps at which it has every split's row (metrics.jsonl)."""
        splits: dict[tuple[int, int], set[str]] = {}
        for row in self.rows:
            splits.setdefault((row["member"], row["step"]), set()).add(row.get("split", ""))
        done: dict[int, set[int]] = {}
        for (member, step), seen in splits.items():
            if seen >= {"train", "val"}:
                done.setdefault(member, set()).add(step)
        return done


def _row_problem(row: Any, split: bool) -> str | None:
    if not isinstance(row, dict):
        return f"a {type(row).__name__}, not a row object"
    for field in ("step", "member"):
        if not _is_int(row.get(field)):
            return f"{field} must be an integer >= 0"
    if split and row.get("split") not in ("train", "val"):
        return "split must be train or val"
    for key, value in row.items():
        if key not in ("step", "member", "split") and not (value is None or is_number(value)):
            return f"{key} must be a finite number or null"
    return None


def read_appended(path: Path, *, split: bool | None = None) -> AppendedRows:
    """An appended file (absent: no rows): every row checked, a torn last line (one without its
    newline: a kill, or a copy cut short) dropped; `split`: rows carry one (default: metrics')."""
    if not path.exists():
        return AppendedRows([])
    if split is None:
        split = path.name == run_files.METRICS
    # `last` is '' when the file ends with a newline, else the torn row.
    *lines, last = _read_text(path).split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        try:
            row = parse_json(line)
        except ValueError as error:
            raise damaged(path, f"line {number} is not valid JSON ({error})") from error
        problem = _row_problem(row, split)
        if problem is not None:
            raise damaged(path, f"line {number} is not a row jaxnn writes ({problem})")
        rows.append(row)
    return AppendedRows(rows, torn=last != "")


def check_kinds(root: Path) -> None:
    """Every run file that exists is what it should be: a directory or a plain file."""
    for entry in run_files.RUN_FILES:
        path = root / entry.name
        if not path.exists() and not path.is_symlink():
            continue
        if entry.directory and not path.is_dir():
            raise damaged(path, f"it should be a directory ({entry.description}) but is a file")
        if not entry.directory and not path.is_file():
            raise damaged(path, f"it should be a file ({entry.description}) but is not")
