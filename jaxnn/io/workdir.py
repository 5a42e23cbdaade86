"""The workdir of a run: its files, what a new launch does with them, metrics.jsonl upkeep.

A launch is a new run, a resume (an unfinished run of the same config), a continuation (a
finished run asked for more steps), 'complete' (asked for no more steps: nothing changes) or an
overwrite (the old files are deleted by `prepare`, once every check has passed). A workdir of
another config is refused, naming the first differing field. Every file a run rewrites is
replaced by write-then-rename, so a reader, or a launch after a kill, sees the old or the new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from jaxnn.config.fields import run_steps
from jaxnn.config.paths import expand_user
from jaxnn.data import fingerprint as fingerprint_lib
from jaxnn.errors import ConfigError, DataError, WorkdirError
from jaxnn.io import atomic, checkpoint, run_files, run_readers

# Config fields a resumed or continued run may change: the length of training, where it runs
# (checkpoints hold the real members whatever the device count), its compilation cache, and
# whether the data set is prepared afresh (the same builder writes the same records).
RESUMABLE_FIELDS = (
    "dataset.rebuild",
    "training.steps",
    "training.epochs",
    "mesh.num_devices",
    "mesh.data",
    "compilation_cache.enabled",
    "compilation_cache.dir",
)


class _RunFile:
    """A workdir's file by its name: `paths.config` is `paths.root / run_files.CONFIG`."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, paths: RunPaths, owner: type | None = None) -> Path:
        return paths.root / self.name


@dataclasses.dataclass
class RunPaths:
    """The files of a workdir (their rules: `jaxnn.io.run_files`)."""

    root: Path
    config = _RunFile(run_files.CONFIG)
    data = _RunFile(run_files.DATA)
    metrics = _RunFile(run_files.METRICS)
    diagnostics = _RunFile(run_files.DIAGNOSTICS)
    summary = _RunFile(run_files.SUMMARY)
    plots = _RunFile(run_files.PLOTS)
    report = _RunFile(run_files.REPORT)
    checkpoints = _RunFile(run_files.CHECKPOINTS_DIR)
    best = _RunFile(run_files.BEST)
    tensorboard = _RunFile(run_files.TENSORBOARD)

    def __truediv__(self, name: str) -> Path:
        return self.root / name

    def variant_checkpoints(self, variant: int, num_variants: int) -> Path:
        """The checkpoint directory of one structural variant (`checkpoints/` for a plain run)."""
        if num_variants == 1:
            return self.checkpoints
        return self.checkpoints / f"variant_{variant}"

    def variant_events(self, variant: int, num_variants: int) -> Path:
        """The TensorBoard run of one structural variant (`tensorboard/main` for a plain run)."""
        if num_variants == 1:
            return self.tensorboard / "main"
        return self.tensorboard / f"variant_{variant}"

    def run_files(self) -> list[Path]:
        """Everything a run writes, in the order --overwrite deletes it (`run_files.RUN_FILES`)."""
        return [self.root / f.name for f in run_files.RUN_FILES]

    def leftovers(self) -> list[Path]:
        """Temporary files of writes that a killed launch never finished (safe to delete)."""
        found = list(self.root.glob(f"{run_files.BEST}{checkpoint.UNFINISHED_MARKER}*"))
        for entry in run_files.RUN_FILES:
            if not entry.directory:
                found += self.root.glob(f".{entry.name}.*.tmp")
        return sorted(found)


@dataclasses.dataclass(frozen=True)
class WorkdirPlan:
    """What a launch does with its workdir: `action` is 'new', 'resume', 'continue', 'complete'
    (`summary` is the finished run's) or 'overwrite'; `config` is the one `prepare` writes."""

    paths: RunPaths
    action: str
    config: ml_collections.ConfigDict
    summary: dict[str, Any] | None = None
    evaluated: Mapping[int, set[int]] = dataclasses.field(default_factory=dict)

    @property
    def restores(self) -> bool:
        return self.action in ("resume", "continue")

    def has_rows(self, members: list[int], step: int) -> bool:
        """Whether metrics.jsonl holds every split's row of each member at `step`: a checkpoint
        without them (a torn last line) is not resumed from, so that its rows are computed again."""
        return all(step in self.evaluated.get(member, ()) for member in members)


def check_workdir(workdir: str | Path) -> RunPaths:
    """Checks that the workdir can be created and written, without writing anything.

    Raises:
      ConfigError: no workdir given, a path that is a file, or an unwritable parent.
    """
    if workdir is not None and not isinstance(workdir, str | os.PathLike):
        raise ConfigError(
            f"workdir must be a path (a str or pathlib.Path), got {type(workdir).__name__}"
        )
    if workdir is None or not str(workdir).strip():
        raise ConfigError("--workdir is required: the directory that receives the run's files")
    root = checked_path(workdir, "workdir")
    try:
        if root.exists() and not root.is_dir():
            raise ConfigError(f"workdir {root} exists and is not a directory")
        existing = root if root.exists() else next(p for p in root.parents if p.exists())
    except OSError as error:
        raise ConfigError(f"workdir {root} cannot be used ({_os_error_text(error)})") from error
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"workdir {root} cannot be created or written (no write permission on {existing})"
        )
    return RunPaths(root)


# Linux's limits (os.pathconf gives them where a directory exists; these are their usual values).
NAME_MAX = 255
PATH_MAX = 4096


def checked_path(path: str | os.PathLike, what: str) -> Path:
    """`path` with `~` expanded, made absolute, within the file system's length limits.

    Raises:
      ConfigError: a `~user` with no such user, a component longer than NAME_MAX bytes, or a
        path longer than PATH_MAX bytes (named with the lengths).
    """
    text = os.fspath(path)
    resolved = Path(os.path.abspath(expand_user(text, what)))
    for part in resolved.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise ConfigError(
                f"{what} {text[:80]}...: the component {part[:40]}... is {len(os.fsencode(part))} "
                f"bytes long, more than the {NAME_MAX} a file name may have"
            )
    if len(os.fsencode(str(resolved))) > PATH_MAX:
        raise ConfigError(
            f"{what} {str(resolved)[:80]}...: the path is {len(os.fsencode(str(resolved)))} bytes "
            f"long, more than the {PATH_MAX} a path may have"
        )
    try:
        return resolved.resolve()
    except (OSError, RuntimeError) as error:
        raise ConfigError(f"{what} {text}: cannot be resolved ({error})") from error


_ABSENT = object()


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            flat |= _flatten(value, f"{prefix}{key}.")
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def first_config_difference(
    old: Mapping[str, Any], new: Mapping[str, Any], *, ignore: tuple[str, ...] = ()
) -> tuple[str, Any, Any] | None:
    """(field, old value, new value) of the first field that differs, in the new config's order."""
    old_flat, new_flat = _flatten(old), _flatten(new)
    for field in [*new_flat, *(f for f in old_flat if f not in new_flat)]:
        if field in ignore:
            continue
        before, after = old_flat.get(field, _ABSENT), new_flat.get(field, _ABSENT)
        if before != after:
            return field, before, after
    return None


def _value_text(value: Any) -> str:
    return "absent" if value is _ABSENT else json.dumps(value)


def plan_workdir(
    workdir: str | Path, config: ml_collections.ConfigDict, *, overwrite: bool
) -> WorkdirPlan:
    """Decides what to do with the workdir's existing files, without writing anything (a damaged
    run file is refused here, before anything is deleted).

    Raises:
      ConfigError: the workdir cannot be written; it holds a run of a different config (the
        message names the first differing field).
      WorkdirError: a run file there is damaged (the message names it and the way out).
    """
    paths = check_workdir(workdir)
    holds_run = any(
        p.exists() or p.is_symlink() for p in (paths.config, paths.summary, paths.checkpoints)
    )
    if not holds_run:
        _refuse_foreign_files(paths)
        return WorkdirPlan(paths, "new", config)
    if overwrite:
        return WorkdirPlan(paths, "overwrite", config)
    run_readers.check_kinds(paths.root)
    if not paths.config.exists():
        raise ConfigError(
            f"workdir {paths.root} holds checkpoints or a summary but no {run_files.CONFIG}; pass "
            "--overwrite to start over"
        )
    old = json.loads(run_readers.read_config(paths.config).to_json())
    difference = first_config_difference(old, json.loads(config.to_json()), ignore=RESUMABLE_FIELDS)
    if difference is not None:
        field, before, after = difference
        raise ConfigError(
            f"workdir {paths.root} holds a run of another config: {field} is "
            f"{_value_text(before)} there but {_value_text(after)} now (only "
            f"{', '.join(RESUMABLE_FIELDS)} may change to resume); choose another --workdir "
            "or pass --overwrite"
        )
    summary = run_readers.read_summary(paths.summary) if paths.summary.exists() else None
    if summary is not None:
        wanted = run_steps(config.training, summary["dataset"]["num_train"])
        if wanted <= summary["steps"]:
            return WorkdirPlan(paths, "complete", config, summary=summary)
    # A damaged file is refused here, not half-way through prepare.
    appended = {f.name: run_readers.read_appended(paths / f.name) for f in run_files.appended()}
    evaluated = appended[run_files.METRICS].evaluated()
    action = "resume" if summary is None else "continue"
    return WorkdirPlan(paths, action, config, evaluated=evaluated)


def _refuse_foreign_files(paths: RunPaths) -> None:
    """Refuses the user's own files under a run file's name (`run_files.foreign`)."""
    found = run_files.foreign(paths.root)
    if found:
        names = ", ".join(p.name for p in found)
        raise WorkdirError(
            f"workdir {paths.root} holds no run (no {run_files.CONFIG}) but holds {names}, a "
            f"name a run writes: jaxnn deletes only what a run wrote; move {found[0].name} "
            "elsewhere or choose another --workdir"
        )


def check_data(plan: WorkdirPlan, current: Mapping[str, Any]) -> None:
    """Refuses to continue a run on other data than its own (DIR/data.json, its fingerprint).

    Raises:
      DataError: the workdir's run was trained on data with another fingerprint.
    """
    if plan.action in ("new", "overwrite") or not plan.paths.data.is_file():
        return
    recorded = run_readers.read_data_record(plan.paths.data)
    difference = fingerprint_lib.difference(recorded, current)
    if difference is not None:
        raise DataError(
            f"workdir {plan.paths.root} holds a run of other data: {difference}; pass the "
            "arrays it was trained on, choose another --workdir, or pass --overwrite"
        )


def _clear(files: list[Path]) -> None:
    for path in files:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def prepare(
    plan: WorkdirPlan,
    resumed_steps: Mapping[int, int],
    data_record: Mapping[str, Any] | None = None,
) -> None:
    """Writes the first files of a run, once every check has passed (what --overwrite, a new
    run and a continued run remove: `jaxnn.io.run_files`), and data.json from `data_record`.

    Args:
      resumed_steps: global member index -> the step its restored checkpoint is at (a member
        absent here has no checkpoint: its rows are all dropped).

    Raises:
      WorkdirError: the workdir cannot be created or written (a read-only or full file system).
    """
    paths = plan.paths
    try:
        paths.root.mkdir(parents=True, exist_ok=True)
        _clear(paths.leftovers())
        if plan.action == "overwrite":
            _clear(paths.run_files())
        elif plan.action == "new":
            _clear([p for p in paths.run_files() if p.is_dir()])  # empty ones (plan_workdir)
        else:
            _clear([paths / f.name for f in run_files.RUN_FILES if f.unfinished_on_resume])
        # config.json first: every other run file is then in a workdir that holds a run.
        text = plan.config.to_json(indent=2) + "\n"
        if not paths.config.is_file() or paths.config.read_text() != text:
            atomic.write_text_atomic(paths.config, text)
        paths.plots.mkdir(exist_ok=True)
        for entry in run_files.appended():
            cut_back(paths / entry.name, resumed_steps)
        if data_record is not None:
            atomic.write_json_atomic(paths.data, dict(data_record))
    except OSError as error:
        raise WorkdirError(
            f"workdir {paths.root} cannot be written: {_os_error_text(error)}"
        ) from error


def _os_error_text(error: OSError) -> str:
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}"


@contextlib.contextmanager
def writing(what: str, path: Path) -> Iterator[None]:
    """An OSError while writing `what` (read-only or full file system) becomes one line."""
    try:
        yield
    except OSError as error:
        raise WorkdirError(
            f"cannot write {what} {path}: {_os_error_text(error)}; the run's checkpoints are "
            "intact: free space or fix permissions, then launch again to finish"
        ) from error


def cut_back(path: Path, resumed_steps: Mapping[int, int]) -> None:
    """Keeps each member's rows of an appended file (metrics.jsonl, diagnostics.jsonl) up to the
    step of its checkpoint, and drops a torn last line; the file is replaced only when rows go.

    Raises:
      WorkdirError: a row that is not one jaxnn writes (`run_readers.read_appended`).
    """
    if not path.exists():
        return
    appended = run_readers.read_appended(path)
    kept = [row for row in appended.rows if row["step"] <= resumed_steps.get(row["member"], -1)]
    if appended.torn or len(kept) < len(appended.rows):
        atomic.write_text_atomic(
            path, "".join(json.dumps(row, allow_nan=False) + "\n" for row in kept)
        )


def history_from_metrics(path: Path, member_indices: list[int]) -> list[dict[str, np.ndarray]]:
    """The evaluation history of a run (metric -> [num_members] per evaluation) from metrics.jsonl."""
    position = {member: i for i, member in enumerate(member_indices)}
    by_step: dict[int, dict[str, np.ndarray]] = {}
    for row in run_readers.read_appended(path).rows:
        entry = by_step.setdefault(row["step"], {"step": np.array([row["step"]])})
        for key, value in row.items():
            if key in ("step", "member", "split"):
                continue
            name = key if key == "batch_loss" else f"{row['split']}_{key}"
            values = entry.setdefault(name, np.full(len(member_indices), np.nan))
            values[position[row["member"]]] = np.nan if value is None else float(value)
    return [by_step[step] for step in sorted(by_step)]
