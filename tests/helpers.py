"""Small data sets and configs for fast tests, and run directories shared by xdist workers."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import pytest

from jaxnn import data as data_lib
from jaxnn.config import default_config


def blob_arrays(
    num_train: int = 120,
    num_test: int = 60,
    num_features: int = 6,
    num_classes: int = 3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The raw arrays of `blobs` (x_train, y_train, x_test, y_test): what a predictor takes."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, num_features)) * 3

    def draw(n):
        y = rng.integers(0, num_classes, size=n)
        return (centres[y] + rng.normal(size=(n, num_features))).astype(np.float32), y.astype(
            np.int32
        )

    x_train, y_train = draw(num_train)
    x_test, y_test = draw(num_test)
    return x_train, y_train, x_test, y_test


def blobs(
    num_train: int = 120,
    num_test: int = 60,
    num_features: int = 6,
    num_classes: int = 3,
    seed: int = 0,
):
    """A small classification problem: Gaussian blobs, learnable in a few dozen steps."""
    arrays = blob_arrays(num_train, num_test, num_features, num_classes, seed)
    return data_lib.from_arrays(*arrays, task="classification")


def tiered(values, fast) -> list:
    """`values` for `pytest.mark.parametrize`, each one not in `fast` marked slow: the fast tier
    proves the point on the cases of `fast`, the slow tier (`-m slow`) on every other one. A
    tuple is the arguments of one case (several argument names)."""
    slow = pytest.mark.slow
    return [
        v
        if v in fast
        else pytest.param(*v, marks=slow)
        if isinstance(v, tuple)
        else pytest.param(v, marks=slow)
        for v in values
    ]


def small_config(**overrides) -> ml_collections.ConfigDict:
    """A tiny MLP trained for a few chunks; overrides are dotted field -> value."""
    config = default_config()
    config.model.hidden = (16, 16)
    config.training.batch_size = 16
    config.training.steps = 30
    config.training.eval_every = 10
    config.optimizer.learning_rate = 0.05
    for field, value in overrides.items():
        *parents, leaf = field.split(".")
        node = config
        for part in parents:
            node = node[part]
        node[leaf] = value
    return config


def shared_dir(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A run directory built once per test session, shared by xdist workers (read-only for tests)."""
    root = tmp_path_factory.getbasetemp()
    if root.name.startswith("popen-gw"):
        root = root.parent
    directory = root / name
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (directory / "done").exists():
            shutil.rmtree(directory, ignore_errors=True)
            build(directory)
            (directory / "done").touch()
    return directory


def tensorboard_events(directory: Path) -> dict[str, Any]:
    """What TensorBoard's own reader finds under DIR/tensorboard, wall times aside: every scalar
    record as (run, tag, step, value) in file order (a repeat shows as a second entry), and
    the hparams of each HParams session by run."""
    from google.protobuf import json_format
    from tensorboard.backend.event_processing import event_file_loader
    from tensorboard.plugins.hparams import metadata as hparams_metadata

    scalars, sessions = [], {}
    for path in sorted(directory.rglob("*tfevents*")):
        run = str(path.parent.relative_to(directory))
        for event in event_file_loader.LegacyEventFileLoader(str(path)).Load():
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    scalars.append((run, value.tag, event.step, value.simple_value))
                elif value.tag == hparams_metadata.SESSION_START_INFO_TAG:
                    start = hparams_metadata.parse_session_start_info_plugin_data(
                        value.metadata.plugin_data.content
                    )
                    sessions[run] = {
                        name: json_format.MessageToDict(v) for name, v in start.hparams.items()
                    }
    return {"scalars": scalars, "sessions": sessions}


def user_home(tmp_path: Path) -> Path:
    """A home directory for a child process run as a new user would: its `~/tensorflow_datasets`
    is the tests' prepared data (`.data/tfds`), so commands and snippets that name no data_dir
    read it instead of preparing their own."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    link = home / "tensorflow_datasets"
    prepared = Path(__file__).resolve().parent.parent / ".data" / "tfds"
    prepared.mkdir(parents=True, exist_ok=True)  # a fresh clone has none yet: no dangling link
    if not link.is_symlink():
        link.symlink_to(prepared)
    return home


def markdown_blocks(text: str) -> list[tuple[str, str, int]]:
    """Every fenced code block of a Markdown text as (info string, code, line of the fence)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            fence = line[: len(line) - len(line.lstrip("`"))]
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].rstrip() != fence:
                body.append(lines[i])
                i += 1
            blocks.append((line[len(fence) :].strip(), "\n".join(body) + "\n", start))
        i += 1
    return blocks
