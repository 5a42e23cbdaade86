"""The workdir: a finished run is reported, not overwritten; leftovers and torn files are handled."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from jaxnn import runner
from jaxnn.errors import ConfigError, WorkdirError
from jaxnn.io import atomic, run_files
from jaxnn.io import workdir as workdir_lib
from tests.test_faults import (
    Launch,
    cli_reference,  # noqa: F401 (fixture)
    command,
    read_only,
    summary_without_timing,
    write_config,
)
from tests.test_resume import _config as resume_config
from tests.test_resume import _snapshot as timestamps
from tests.test_resume import reference  # noqa: F401 (fixture)


def test_the_launcher_reports_a_finished_run_as_complete_and_changes_nothing(
    cli_reference,  # noqa: F811
    tmp_path,
    data_dir,
):
    workdir = tmp_path / "run"
    shutil.copytree(cli_reference, workdir)
    before = timestamps(workdir)
    child = Launch.start(command(write_config(tmp_path), workdir, data_dir), tmp_path / "again")
    assert child.wait() == 0, child.stderr()[-3000:]
    said = child.stdout()
    assert f"workdir {workdir} already holds this run, complete at 60 steps" in said
    summary = json.loads((workdir / "summary.json").read_text())
    assert f"selected member {summary['best_member']} by val_loss" in said
    assert timestamps(workdir) == before


def test_overwrite_starts_a_finished_run_over(reference, tmp_path, data_dir):  # noqa: F811
    workdir = tmp_path / "run"
    shutil.copytree(reference, workdir)
    (workdir / "notes.txt").write_text("not the run's: stays\n")
    out = io.StringIO()
    runner.run(resume_config(data_dir), workdir, overwrite=True, progress=False, out=out)
    assert "resuming" not in out.getvalue() and "complete" not in out.getvalue()
    assert summary_without_timing(workdir) == summary_without_timing(reference)
    assert (workdir / "metrics.jsonl").read_text() == (reference / "metrics.jsonl").read_text()
    assert (workdir / "notes.txt").exists()


def test_where_a_run_is_placed_may_change_on_resume_but_not_what_it_trains(tmp_path, data_dir):
    config = resume_config(data_dir)
    tmp_path.joinpath(run_files.CONFIG).write_text(config.to_json())
    moved = resume_config(data_dir, **{"mesh.num_devices": 1, "mesh.data": "batch"})
    assert workdir_lib.plan_workdir(tmp_path, moved, overwrite=False).action == "resume"
    other = resume_config(data_dir, **{"optimizer.momentum": 0.5})
    with pytest.raises(ConfigError, match=r"optimizer\.momentum is 0\.9 there but 0\.5 now"):
        workdir_lib.plan_workdir(tmp_path, other, overwrite=False)


def test_writes_a_killed_launch_never_finished_are_removed_on_the_next_launch(tmp_path, data_dir):
    config = resume_config(data_dir)
    paths = workdir_lib.RunPaths(tmp_path)
    paths.config.write_text(config.to_json(indent=2) + "\n")
    unfinished = [
        tmp_path / ".summary.json.k2j4.tmp",
        tmp_path / ".metrics.jsonl.x8q1.tmp",
        tmp_path / "best.orbax-checkpoint-tmp-1795727513",
    ]
    unfinished[0].write_text('{"dataset": ')
    unfinished[1].write_text("{}\n")
    unfinished[2].mkdir()
    (tmp_path / "notes.txt").write_text("stays\n")
    assert paths.leftovers() == sorted(unfinished)
    plan = workdir_lib.plan_workdir(tmp_path, config, overwrite=False)
    workdir_lib.prepare(plan, resumed_steps={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "notes.txt", "plots"]


def test_a_workdir_without_a_run_keeps_the_users_files_that_bear_run_file_names(tmp_path, data_dir):
    """No config.json: a run file's name there is the user's (a run writes config.json first);
    the launch is refused whatever it enables, and an empty directory (nothing to lose) is
    taken over."""
    config = resume_config(data_dir, **{"tensorboard.enabled": False})
    (tmp_path / "plots").mkdir()
    plan = workdir_lib.plan_workdir(tmp_path, config, overwrite=False)
    workdir_lib.prepare(plan, resumed_steps={})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "plots"]
    for name, overwrite in [("tensorboard", False), ("report.md", True), ("best", False)]:
        workdir = tmp_path / f"{name}-{overwrite}"
        workdir.mkdir()
        (workdir / name).write_text("the user's own\n")
        with pytest.raises(WorkdirError, match=f"holds {name}, a name a run writes"):
            workdir_lib.plan_workdir(workdir, config, overwrite=overwrite)
        assert (workdir / name).read_text() == "the user's own\n"


def test_metrics_past_the_checkpoint_and_a_torn_last_line_are_dropped_on_resume(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": step, "member": 0, "split": "val", "loss": 1.0} for step in (10, 20, 30)]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    path.write_text(text + '{"step": 40, "memb')
    workdir_lib.cut_back(path, {0: 20})
    assert path.read_text() == "".join(json.dumps(row) + "\n" for row in rows[:2])
    # Nothing to drop: the file is left as it is (not even rewritten).
    inode = path.stat().st_ino
    workdir_lib.cut_back(path, {0: 20})
    assert path.stat().st_ino == inode
    # Each member is cut back to its own checkpoint's step; one without a checkpoint loses all.
    rows = [
        {"step": step, "member": member, "split": "val", "loss": 1.0}
        for step in (10, 20, 30)
        for member in (0, 1, 2)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    workdir_lib.cut_back(path, {0: 20, 1: 30})
    kept = [(row["step"], row["member"]) for row in atomic.read_jsonl(path)]
    assert kept == [(10, 0), (10, 1), (20, 0), (20, 1), (30, 1)]


def test_summary_and_metrics_are_replaced_whole_so_a_reader_never_sees_a_torn_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    atomic.append_jsonl(path, [{"step": 10, "loss": 1.0}])
    with open(path) as reader:  # a reader that opened the file before the next append
        atomic.append_jsonl(path, [{"step": 20, "loss": 0.5}])
        assert reader.read() == '{"step": 10, "loss": 1.0}\n'
    assert atomic.read_jsonl(path) == [{"step": 10, "loss": 1.0}, {"step": 20, "loss": 0.5}]
    assert oct(path.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode
    # A disk that refuses the write leaves the previous version whole, and no temporary file.
    summary = tmp_path / "summary.json"
    atomic.write_json_atomic(summary, {"best_member": 1})
    with read_only(tmp_path), pytest.raises(OSError):
        atomic.write_json_atomic(summary, {"best_member": 2})
    with read_only(tmp_path), pytest.raises(OSError):
        atomic.append_jsonl(path, [{"step": 30, "loss": 0.1}])
    assert json.loads(summary.read_text()) == {"best_member": 1}
    assert len(atomic.read_jsonl(path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.jsonl", "summary.json"]
