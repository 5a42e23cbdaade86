"""Every file a run writes, with its rule: the one owner of "what a run leaves in its workdir".

Rules: `replaced` files are written whole by write-then-rename; `appended` JSON lines (one row
per step and member) are cut back by a resume to its checkpoint's step; `checkpoints` follow
their keep policy (`jaxnn.io.checkpoint`); `events` are TensorBoard's, cut back likewise.
`--overwrite` removes the run files in the order listed (summary first, config last, so an
overwrite killed half-way never leaves a finished-looking run); other files are never touched.
A run writes config.json first, so a run file without one is `foreign` and refuses the launch.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

REPLACED, APPENDED, CHECKPOINTS, EVENTS = "replaced", "appended", "checkpoints", "events"

SUMMARY = "summary.json"
REPORT = "report.md"
BEST = "best"
CHECKPOINTS_DIR = "checkpoints"
METRICS = "metrics.jsonl"
DIAGNOSTICS = "diagnostics.jsonl"
SCHEDULE = "schedule.jsonl"
PLOTS = "plots"
TENSORBOARD = "tensorboard"
DATA = "data.json"
CONFIG = "config.json"


@dataclasses.dataclass(frozen=True)
class RunFile:
    """One file or directory of a workdir and its rule."""

    name: str
    rule: str
    directory: bool = False
    unfinished_on_resume: bool = False  # the run is unfinished until its end rewrites it
    description: str = ""


RUN_FILES: tuple[RunFile, ...] = (
    RunFile(SUMMARY, REPLACED, unfinished_on_resume=True, description="the finished run's summary"),
    RunFile(REPORT, REPLACED, unfinished_on_resume=True, description="summary.json in words"),
    RunFile(BEST, REPLACED, directory=True, description="the selected member's export"),
    RunFile(CHECKPOINTS_DIR, CHECKPOINTS, directory=True, description="the stacked states"),
    RunFile(METRICS, APPENDED, description="every evaluation of every member"),
    RunFile(DIAGNOSTICS, APPENDED, description="training diagnostics (diagnostics.enabled)"),
    RunFile(SCHEDULE, APPENDED, description="a member schedule's decisions (restarts.schedule)"),
    RunFile(PLOTS, REPLACED, directory=True, description="the run's figures"),
    RunFile(TENSORBOARD, EVENTS, directory=True, description="TensorBoard event files"),
    RunFile(DATA, REPLACED, description="the fingerprint of the data (shapes, dtypes, a hash)"),
    RunFile(CONFIG, REPLACED, description="the config the run was launched with"),
)


def appended() -> tuple[RunFile, ...]:
    """The JSON-lines files that a resume cuts back."""
    return tuple(f for f in RUN_FILES if f.rule == APPENDED)


def foreign(root: Path) -> list[Path]:
    """Entries of a workdir without a run (no config.json) that bear a run file's name and hold
    something: not a run's (its first write is config.json), so a launch may not replace them."""
    paths = [root / entry.name for entry in RUN_FILES]
    return [p for p in paths if p.is_symlink() or (p.exists() and not _empty_directory(p))]


def _empty_directory(path: Path) -> bool:
    try:
        return path.is_dir() and not any(path.iterdir())
    except OSError:
        return False


VARIANT_PREFIX = "variant_"


def variant_directories(directory: Path) -> list[Path]:
    """A structural run's per-variant directories under `directory` (`checkpoints/` or
    `tensorboard/`), `variant_<v>` for integers v, in the order of v; any other entry there
    (`variant_old`, a user's) is not a run's and is passed over."""
    found = []
    for path in directory.glob(f"{VARIANT_PREFIX}*"):
        number = path.name.removeprefix(VARIANT_PREFIX)
        if number.isascii() and number.isdigit() and path.is_dir():
            found.append((int(number), path))
    return [path for _, path in sorted(found)]
