"""What a launch prints: on fresh data, only jaxnn's own lines (one line for the data
preparation, plain progress lines where stderr is no terminal, the closing block); on a
terminal, a progress bar of member-steps with their rate and the ETA; no library warnings."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np

from jaxnn import cli
from jaxnn.core.loop import Evaluation
from jaxnn.io import orbax_io
from jaxnn.io.workdir import RunPaths
from jaxnn.reporting import metrics_log

REPO = Path(__file__).resolve().parent.parent


def test_a_launch_on_fresh_data_prints_only_jaxnns_lines(tmp_path):
    workdir, data_dir = tmp_path / "run", tmp_path / "fresh_data"
    done = subprocess.run(
        [
            sys.executable,
            "launch.py",
            "--config=experiments/digits_mlp.py:smoke",
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for stream in (done.stdout, done.stderr):
        assert "\x1b" not in stream and "\r" not in stream, stream  # no terminal control codes
    errors = done.stderr.splitlines()
    assert all(line.startswith("jaxnn: ") for line in errors), errors
    assert [line for line in errors if "preparing" in line] == [errors[0]]
    assert "digits" in errors[0] and str(data_dir) in errors[0]
    progress = errors[1:]
    assert progress and all("member-steps/s" in line and "ETA" in line for line in progress)
    assert progress[-1].startswith("jaxnn: step 41/41 (100%)")
    lines = done.stdout.splitlines()
    assert lines[0].startswith("digits: classification"), lines[:3]  # nothing before the header
    assert lines[-4].startswith("selected member 0 by val_loss: ")
    assert lines[-3].startswith("ensemble average: ")
    assert lines[-2].startswith(f"files: {workdir} (report.md, summary.json")
    assert lines[-1] == f"tensorboard --logdir {workdir / 'tensorboard'}"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _evaluation(step: int, num_members: int, elapsed_s: float = 2.0) -> Evaluation:
    metrics = {
        name: np.full(num_members, 0.5)
        for name in ("batch_loss", "train_loss", "val_loss", "val_accuracy")
    }
    return Evaluation(step=step, metrics=metrics, state=None, elapsed_s=elapsed_s)


def test_the_progress_bar_counts_member_steps_with_their_rate_and_eta(tmp_path):
    members = [types.SimpleNamespace(index=i) for i in range(4)]
    program = types.SimpleNamespace(total_steps=100, metric="accuracy")
    terminal = _Terminal()
    progress = metrics_log.Progress(
        RunPaths(tmp_path), program, members, show=True, start_step=20, stream=terminal
    )
    progress(_evaluation(60, 4))
    progress.close()
    bar = terminal.getvalue().split("\r")[-1]
    assert "240/400 member-steps" in bar  # (20 + 40 steps) x 4 members of 100 x 4
    assert "<" in bar  # elapsed<ETA
    # the rate of this launch's member-steps over the loop's wall time: 40 x 4 in 2 s
    assert "member-steps/s=80.0" in bar
    assert "step=60/100" in bar and "its val_accuracy=0.5000" in bar


def test_the_progress_names_each_figure_and_the_member_it_comes_from(tmp_path):
    members = [types.SimpleNamespace(index=i) for i in (10, 11, 12)]
    program = types.SimpleNamespace(total_steps=100, metric="accuracy")
    log = io.StringIO()
    progress = metrics_log.Progress(RunPaths(tmp_path), program, members, show=True, stream=log)
    evaluation = _evaluation(100, 3, elapsed_s=4.0)
    # One member exploded: a mean would read 3e9; the median member's batch loss is 0.7.
    evaluation.metrics["batch_loss"] = np.array([0.7, 1e10, 0.2])
    evaluation.metrics["val_loss"] = np.array([0.9, np.inf, 0.3])
    evaluation.metrics["val_accuracy"] = np.array([0.6, 0.1, 0.8])
    progress(evaluation)
    progress.close()
    line = log.getvalue().strip()
    assert "median batch_loss 0.7000" in line, line
    assert "best val_loss (member 12) 0.3000, its val_accuracy 0.8000" in line, line
    assert "member-steps/s 75.0" in line, line  # 100 steps x 3 members in 4 s


def test_progress_lines_off_a_terminal_are_plain_and_a_tenth_apart(tmp_path):
    members = [types.SimpleNamespace(index=i) for i in range(2)]
    program = types.SimpleNamespace(total_steps=100, metric="accuracy")
    log = io.StringIO()
    progress = metrics_log.Progress(RunPaths(tmp_path), program, members, show=True, stream=log)
    for step in range(5, 101, 5):
        progress(_evaluation(step, 2))
    progress.close()
    lines = log.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == [f"{s}/100" for s in range(5, 101, 10)] + [
        "100/100"
    ]
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()


def _coroutine_of(filename: str):
    namespace: dict = {}
    exec(compile("async def save():\n    pass\n", filename, "exec"), namespace)
    return namespace["save"]()


def test_unraisable_reports_of_orbax_coroutines_are_dropped_and_others_kept():
    seen = []
    hook = cli._unraisable_hook(lambda unraisable: seen.append(unraisable.object))
    ours = _coroutine_of("/venv/site-packages/orbax/checkpoint/async_utils.py")
    theirs = _coroutine_of("/home/user/research/save.py")
    try:
        hook(types.SimpleNamespace(object=ours, exc_value=None))
        hook(types.SimpleNamespace(object=theirs, exc_value=None))
    finally:
        ours.close()
        theirs.close()
    assert seen == [theirs]


def test_absl_logs_of_tfds_and_orbax_are_held_back_and_others_kept():
    def record(pathname: str) -> logging.LogRecord:
        return logging.LogRecord("absl", logging.WARNING, pathname, 1, "message", (), None)

    site = "/venv/lib/python3.11/site-packages"
    assert not cli._not_from_quiet_libraries(
        record(f"{site}/tensorflow_datasets/core/file_utils.py")
    )
    assert not cli._not_from_quiet_libraries(
        record(f"{site}/orbax/checkpoint/checkpoint_manager.py")
    )
    assert cli._not_from_quiet_libraries(record(f"{site}/jax/_src/compiler.py"))
    assert cli._not_from_quiet_libraries(record("/home/user/research/train.py"))


def test_asyncio_reports_of_orbax_futures_nobody_retrieved_are_dropped_and_others_kept():
    """A launch whose every checkpoint is unreadable said so in its line; Orbax's gathered
    reads then left futures whose exceptions asyncio reported at exit (hundreds of lines)."""

    def record_raised_in(filename: str) -> logging.LogRecord:
        code = compile("raise ValueError('a torn chunk')", filename, "exec")
        try:
            exec(code, {})
        except ValueError:
            exc_info = sys.exc_info()
        return logging.LogRecord(
            "asyncio", logging.ERROR, "/usr/lib/python3.11/asyncio/base_events.py", 1,
            "_GatheringFuture exception was never retrieved", (), exc_info,
        )  # fmt: skip

    site = "/venv/lib/python3.11/site-packages"
    assert not cli._not_about_quiet_futures(record_raised_in(f"{site}/orbax/checkpoint/a.py"))
    assert cli._not_about_quiet_futures(record_raised_in("/home/user/research/train.py"))


def test_a_read_completing_after_its_loop_closed_is_not_reported_and_other_reports_are():
    # What TensorStore's threads report (with no object and no message) when one of Orbax's
    # parallel reads of a torn checkpoint completes after the failed read closed its loop.
    loop = asyncio.new_event_loop()
    loop.close()
    try:
        loop.call_soon_threadsafe(print)
    except RuntimeError as error:
        closed = error
    seen = []
    hook = orbax_io._ClosedLoopFilter(seen.append)

    def report(error: BaseException) -> types.SimpleNamespace:
        return types.SimpleNamespace(
            exc_type=type(error), exc_value=error, exc_traceback=error.__traceback__,
            err_msg=None, object=None,
        )  # fmt: skip

    hook(report(closed))
    assert seen == []
    other = report(RuntimeError("a user's callback failed"))
    hook(other)
    assert seen == [other]
