"""One launch per workdir: a live launch's lock refuses a second one; a killed one's is taken over."""

from __future__ import annotations

import io
import json
import os
import signal

import pytest

from jaxnn import runner
from jaxnn.errors import JaxnnError, WorkdirError
from jaxnn.io import lock as lock_lib
from tests.test_faults import (
    Launch,
    assert_one_line_error,
    cli_reference,  # noqa: F401 (fixture)
    command,
    relaunch_to_the_end,
    snapshot,
    write_config,
)
from tests.test_resume import _config as resume_config


def _recorded_pid(workdir) -> int | None:
    try:
        return json.loads((workdir / lock_lib.LOCK).read_text())["pid"]
    except (FileNotFoundError, ValueError, KeyError):
        return None


def test_a_second_launch_is_refused_while_the_first_lives_and_takes_over_once_it_is_killed(
    cli_reference,  # noqa: F811
    tmp_path,
    data_dir,
):
    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir)
    first = Launch.start(args, tmp_path / "first")
    pid = first.process.pid
    # Paused once it has begun to write: alive and holding the lock for as long as we need.
    ready = lambda: (workdir / "config.json").exists() and _recorded_pid(workdir) == pid
    assert first.kill_when(ready, signal_number=signal.SIGSTOP), first.stderr()[-3000:]
    try:
        before = snapshot(workdir)
        second = Launch.start(args, tmp_path / "second")
        second.wait()
        line = assert_one_line_error(second, f"workdir {workdir} is in use by another launch")
        assert f"(pid {pid} on host " in line
        assert second.stdout() == ""  # refused before loading data or compiling anything
        assert snapshot(workdir) == before
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.wait()
    # The lock file still names the killed launch, but nobody holds it any more.
    assert _recorded_pid(workdir) == pid
    said = relaunch_to_the_end(args, workdir, tmp_path / "relaunch", cli_reference)
    assert f"took over the lock of a launch that is no longer running (pid {pid} on host " in said


def test_a_lock_held_elsewhere_refuses_a_launch_before_it_reads_anything(tmp_path, data_dir):
    workdir = tmp_path / "run"
    with lock_lib.WorkdirLock(workdir) as held:
        held.hold()
        with pytest.raises(WorkdirError, match=rf"in use by another launch \(pid {os.getpid()} "):
            runner.run(resume_config(data_dir), workdir, progress=False, out=io.StringIO())
        assert sorted(p.name for p in workdir.iterdir()) == [lock_lib.LOCK]
    assert list(workdir.iterdir()) == []  # released: the lock file is gone


def test_a_launch_that_fails_its_checks_leaves_no_lock_behind(tmp_path, data_dir):
    workdir = tmp_path / "run"
    workdir.mkdir()
    too_big = resume_config(data_dir, **{"training.batch_size": 100_000})
    with pytest.raises(JaxnnError, match="batch_size"):  # found after the data is loaded
        runner.run(too_big, workdir, progress=False, out=io.StringIO())
    assert list(workdir.iterdir()) == []
    # A stale lock (its launch was killed) is taken over, said so, and cleared.
    stale = {"pid": 1, "host": "elsewhere", "started": "2020-01-01T00:00:00"}
    (workdir / lock_lib.LOCK).write_text(json.dumps(stale))
    out = io.StringIO()
    with pytest.raises(JaxnnError, match="batch_size"):
        runner.run(too_big, workdir, progress=False, out=out)
    assert "took over the lock of a launch that is no longer running (pid 1 on host elsewhere" in (
        out.getvalue()
    )
    assert list(workdir.iterdir()) == []


def test_two_locks_on_one_workdir_exclude_each_other_until_released(tmp_path):
    tmp_path.joinpath("run").mkdir()
    first, second = lock_lib.WorkdirLock(tmp_path / "run"), lock_lib.WorkdirLock(tmp_path / "run")
    first.acquire_if_exists()
    with pytest.raises(WorkdirError, match="in use by another launch"):
        second.acquire_if_exists()
    first.release()
    second.acquire_if_exists()
    second.hold()
    assert _recorded_pid(tmp_path / "run") == os.getpid()
    second.release()
    assert not (tmp_path / "run" / lock_lib.LOCK).exists()
