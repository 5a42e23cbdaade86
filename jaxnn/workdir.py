"""The workdir of a run: its files, what a new launch does with them, metrics.jsonl upkeep.

A launch into a workdir that already holds files is one of: a new run (nothing there), a resume
(an unfinished run of the same config), a continuation (a finished run asked for more steps),
or an overwrite (--overwrite: the old run's files are deleted, but only by `prepare` once every
check has passed). A workdir of another config is refused, naming the first differing field.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np

from jaxnn import checkpoint, report, train
from jaxnn.errors import ConfigError

SUMMARY = "summary.json"
CONFIG = "config.json"
METRICS = "metrics.jsonl"


# Config fields a resumed or continued run may change.
RESUMABLE_FIELDS = ("training.steps", "training.epochs")


@dataclasses.dataclass
class RunPaths:
    """The files of a workdir (DESIGN.md, Workdir)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / METRICS

    @property
    def summary(self) -> Path:
        return self.root / SUMMARY

    @property
    def plots(self) -> Path:
        return self.root / "plots"

    @property
    def report(self) -> Path:
        return self.root / "report.md"

    @property
    def checkpoints(self) -> Path:
        return self.root / checkpoint.CHECKPOINTS

    @property
    def best(self) -> Path:
        return self.root / checkpoint.BEST

    def run_files(self) -> list[Path]:
        """Everything a run writes (what --overwrite deletes; other files are left alone)."""
        return [
            self.config,
            self.metrics,
            self.summary,
            self.report,
            self.plots,
            self.checkpoints,
            self.best,
        ]


@dataclasses.dataclass(frozen=True)
class WorkdirPlan:
    """What a launch does with its workdir.

    action: 'new' (nothing there yet), 'resume' (an unfinished run of the same config),
    'continue' (a finished run asked for more steps) or 'overwrite' (--overwrite on a workdir
    that holds a run: deleted once validation and data loading have succeeded).
    """

    paths: RunPaths
    action: str

    @property
    def restores(self) -> bool:
        return self.action in ("resume", "continue")


def check_workdir(workdir: str | Path, *, overwrite: bool) -> RunPaths:
    """Checks that the workdir can be created and written, without writing anything.

    Raises:
      ConfigError: no workdir given, a path that is a file, or an unwritable parent.
    """
    del overwrite  # What an existing run allows is decided by plan_workdir.
    if not str(workdir).strip():
        raise ConfigError("--workdir is required: the directory that receives the run's files")
    root = Path(workdir).expanduser().resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"workdir {root} exists and is not a directory")
    existing = root if root.exists() else next(p for p in root.parents if p.exists())
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"workdir {root} cannot be created or written (no write permission on {existing})"
        )
    return RunPaths(root)


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
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
        missing = object()
        before, after = old_flat.get(field, missing), new_flat.get(field, missing)
        if before != after:
            return (
                field,
                "(absent)" if before is missing else before,
                "(absent)" if after is missing else after,
            )
    return None


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ConfigError(
            f"{path} ({what}) is unreadable: {error}; pass --overwrite to start over"
        ) from error


def plan_workdir(
    workdir: str | Path, config: ml_collections.ConfigDict, *, overwrite: bool
) -> WorkdirPlan:
    """Decides what to do with the workdir's existing files, without writing anything.

    Raises:
      ConfigError: the workdir cannot be written; it holds a run of a different config (the
        message names the first differing field); or a finished run that neither --overwrite
        nor more training steps allow to replace or continue.
    """
    paths = check_workdir(workdir, overwrite=overwrite)
    holds_run = any(p.exists() for p in (paths.config, paths.summary, paths.checkpoints))
    if overwrite:
        return WorkdirPlan(paths, "overwrite" if holds_run else "new")
    if not holds_run:
        return WorkdirPlan(paths, "new")
    if not paths.config.exists():
        raise ConfigError(
            f"workdir {paths.root} holds checkpoints or a summary but no {CONFIG}; pass "
            "--overwrite to start over"
        )
    old = _read_json(paths.config, "the config of the run there")
    difference = first_config_difference(old, json.loads(config.to_json()), ignore=RESUMABLE_FIELDS)
    if difference is not None:
        field, before, after = difference
        raise ConfigError(
            f"workdir {paths.root} holds a run of another config: {field} is {before!r} there "
            f"but {after!r} now (only training.steps/epochs may change to resume); choose "
            "another --workdir or pass --overwrite"
        )
    if not paths.summary.exists():
        return WorkdirPlan(paths, "resume")
    summary = _read_json(paths.summary, "the summary of the finished run there")
    done = int(summary.get("steps", 0))
    wanted = train.total_steps(config.training, int(summary["dataset"]["num_train"]))
    if wanted <= done:
        raise ConfigError(
            f"workdir {paths.root} already holds a finished run ({done} steps); choose another "
            "--workdir, pass --overwrite, or ask for more training.steps to continue it"
        )
    return WorkdirPlan(paths, "continue")


def _clear(paths: RunPaths, files: list[Path]) -> None:
    for path in files:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def prepare(plan: WorkdirPlan, config: ml_collections.ConfigDict, start_step: int) -> None:
    """Writes the first files of a run: only called once every check has passed."""
    paths = plan.paths
    if plan.action == "overwrite":
        _clear(paths, paths.run_files())
    elif plan.action == "new":
        # A run killed before its first checkpoint leaves files of its own config behind.
        _clear(paths, [paths.metrics, paths.checkpoints, paths.best])
    else:
        # The run is unfinished until its new summary is written.
        _clear(paths, [paths.summary, paths.report])
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.plots.mkdir(exist_ok=True)
    truncate_metrics(paths.metrics, start_step)
    report.write_text_atomic(paths.config, config.to_json(indent=2) + "\n")


def truncate_metrics(path: Path, step: int) -> None:
    """Keeps the metrics.jsonl rows of evaluations up to `step` (a resume repeats the later ones)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            break  # A torn last line of a killed run.
        if row["step"] <= step:
            kept.append(line + "\n")
    report.write_text_atomic(path, "".join(kept))


def history_from_metrics(path: Path, member_indices: list[int]) -> list[dict[str, np.ndarray]]:
    """The evaluation history of a run (metric -> [num_members] per evaluation) from metrics.jsonl."""
    position = {member: i for i, member in enumerate(member_indices)}
    by_step: dict[int, dict[str, np.ndarray]] = {}
    rows = report.read_jsonl(path) if path.exists() else []
    for row in rows:
        entry = by_step.setdefault(row["step"], {"step": np.array([row["step"]])})
        for key, value in row.items():
            if key in ("step", "member", "split"):
                continue
            name = key if key == "batch_loss" else f"{row['split']}_{key}"
            values = entry.setdefault(name, np.full(len(member_indices), np.nan))
            values[position[row["member"]]] = np.nan if value is None else float(value)
    return [by_step[step] for step in sorted(by_step)]
