"""Each row of the bad-input tables (docs/reliability.md) exits 2 with one line, changing nothing.

"Bad input" rows are arguments to the launcher; "Damaged workdirs and data" rows first damage a
copy of a finished smoke run (or of the prepared MNIST-1D files) by the steps of their first
column, then launch into it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from forked_launch import forked_launch
from helpers import shared_dir

REPO = Path(__file__).resolve().parent.parent
TABLE_DOC = REPO / "docs" / "reliability.md"
DEFAULT_CONFIG = "--config=experiments/mnist1d_mlp.py:smoke"


def _section(heading: str) -> str:
    """The doc's text under `## heading`, its ### sub-headings included."""
    text = TABLE_DOC.read_text()
    section = re.split(rf"^## {heading}$", text, maxsplit=1, flags=re.MULTILINE)[1]
    return re.split(r"^## ", section, maxsplit=1, flags=re.MULTILINE)[0]


def _table_rows() -> list[tuple[str, str]]:
    """(arguments, fragment of the message) of each row under the doc's "Bad input" heading."""
    return re.findall(r"^\| `(.+?)` \| `(.+?)` \|$", _section("Bad input"), flags=re.MULTILINE)


def _damage_rows() -> list[tuple[str, str, str]]:
    """(damage, arguments, fragment) of each row under "Damaged workdirs and data"."""
    section = _section("Damaged workdirs and data")
    return re.findall(r"^\| `(.+?)` \| `(.*?)` \| `(.+?)` \|$", section, flags=re.MULTILINE)


ROWS = _table_rows()
DAMAGE_ROWS = _damage_rows()


def test_the_tables_have_at_least_150_rows():
    assert len(ROWS) >= 30 and len(DAMAGE_ROWS) >= 20
    assert len(ROWS) + len(DAMAGE_ROWS) >= 150


def _snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        if p.is_file()
        else "dir"
        for p in sorted(root.rglob("*"))
    }


def launch_arguments(arguments: str, workdir: Path, data_dir: str) -> list[str]:
    """The arguments of `python launch.py` for a table row."""
    args = shlex.split(arguments)
    if not any(a.startswith("--config=") for a in args):
        args.insert(0, DEFAULT_CONFIG)
    if not any(a.startswith("--workdir=") for a in args):
        args.append(f"--workdir={workdir}")
    args = [a for a in args if a != "--workdir=(none)"]
    return [*args, f"--config.dataset.data_dir={data_dir}", "--noprogress"]


@pytest.mark.parametrize(("arguments", "fragment"), ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_exits_2_with_one_line_and_changes_nothing(
    arguments, fragment, tmp_path, data_dir
):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("a researcher's file that must survive\n")
    before = _snapshot(tmp_path)
    result = forked_launch(launch_arguments(arguments, workdir, data_dir))
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("jaxnn: error: ")
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert _snapshot(tmp_path) == before


# Rows too long to print in the table (docs/reliability.md names them under "Parsers"): the
# same launch and the same checks, the arguments generated.
DEEP = "-" * 100_000 + "1"
GENERATED_ROWS = [
    (
        f"--config.restarts.search=model.dropout=uniform({DEEP},0.5)",
        "is nested too deeply to parse",
    ),
    (f"--config.restarts.search=model.dropout=uniform(0,{DEEP})", "is nested too deeply to parse"),
    (f"--config.restarts.sweep=model.dropout=[{DEEP}]", "is nested too deeply to parse"),
    (f"--config.restarts.sweep=model.dropout=[0.1,{DEEP}]", "is nested too deeply to parse"),
    (
        f"--config.restarts.sweep=model.dropout=[{'[' * 50_000}{']' * 50_000}]",
        "which is neither a number nor a name",
    ),
    (
        f"--config.restarts.search=model.dropout=uniform(0,{'(' * 300}1{')' * 300})",
        "is not of the form field=DISTRIBUTION(low, high)",
    ),
]


@pytest.mark.parametrize(
    ("argument", "fragment"),
    GENERATED_ROWS,
    ids=[f"{r[0][:50]}-{len(r[0])}" for r in GENERATED_ROWS],
)
def test_generated_bad_input_exits_2_with_one_line_and_changes_nothing(
    argument, fragment, tmp_path, data_dir
):
    workdir = tmp_path / "run"
    workdir.mkdir()
    before = _snapshot(tmp_path)
    arguments = [DEFAULT_CONFIG, f"--workdir={workdir}", argument]
    result = forked_launch([*arguments, f"--config.dataset.data_dir={data_dir}", "--noprogress"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and len(lines[0]) < 1000, result.stderr[-2000:]
    assert lines[0].startswith("jaxnn: error: ") and fragment in lines[0], lines[0]
    assert _snapshot(tmp_path) == before


# --- Damaged workdirs and data ------------------------------------------------------------------

SMOKE = ["--config=experiments/mnist1d_mlp.py:smoke", "--noprogress"]
PREPARED = Path("mnist1d") / "default" / "1.0.0"  # the prepared files a `data/` path names


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data_dir) -> Path:
    """A finished smoke run, launched once per session (rows damage copies of it)."""

    def build(directory: Path) -> None:
        directory.mkdir(parents=True)
        result = subprocess.run(
            [
                sys.executable,
                "launch.py",
                *SMOKE,
                f"--workdir={directory / 'run'}",
                f"--config.dataset.data_dir={data_dir}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        assert result.returncode == 0, result.stderr[-3000:]

    return shared_dir(tmp_path_factory, "bad_input_finished_run", build) / "run"


def _target(step: str, workdir: Path, data: Path) -> Path:
    name = step.split(" ", 2)[1]
    if name.startswith("data/"):
        return data / PREPARED / name.removeprefix("data/")
    return workdir / name


def damage(steps: str, workdir: Path, data: Path) -> None:
    """Applies the damage steps of a row (separated by ` ; `) to the copies.

    `unfinished`: the run was killed before its end (summary.json and report.md removed);
    `empty`: no run at all; `write F TEXT`, `append F TEXT` (`\\n` a newline); `cut F N`: the
    last N bytes removed; `zero F`: zero-filled; `delete F`; `file D`: the directory D replaced
    by a plain file; `dir F`: the file F replaced by an empty directory; `mkdir D`: a new
    directory. F under `data/` is one of the prepared MNIST-1D files.
    """
    for step in steps.split(" ; "):
        op, _, rest = step.partition(" ")
        if op == "unfinished":
            (workdir / "summary.json").unlink()
            (workdir / "report.md").unlink()
            continue
        if op == "empty":
            for path in workdir.iterdir():
                if path.name != "notes.txt":
                    shutil.rmtree(path) if path.is_dir() else path.unlink()
            continue
        path = _target(step, workdir, data)
        text = rest.partition(" ")[2].replace("\\n", "\n")
        if op == "write":
            path.write_text(text)
        elif op == "append":
            with open(path, "a") as handle:
                handle.write(text)
        elif op == "cut":
            os.truncate(path, path.stat().st_size - int(text))
        elif op == "zero":
            path.write_bytes(bytes(path.stat().st_size))
        elif op == "delete":
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        elif op == "file":
            shutil.rmtree(path)
            path.write_text("not a directory\n")
        elif op == "dir":
            path.unlink()
            path.mkdir()
        elif op == "mkdir":
            path.mkdir()
        else:
            raise ValueError(f"unknown damage step {step!r}")


def damaged_launch(
    steps: str, arguments: str, finished_run: Path, tmp_path: Path, data_dir
) -> list:
    """Damages copies of the finished run (and of the prepared data) by a row's steps; returns
    the launcher's arguments of the row, into a workdir that holds a researcher's file."""
    workdir, data = tmp_path / "run", tmp_path / "data"
    shutil.copytree(finished_run, workdir)
    (workdir / "notes.txt").write_text("a researcher's file that must survive\n")
    if "data/" in steps:
        shutil.copytree(Path(data_dir) / "mnist1d", data / "mnist1d")
    damage(steps, workdir, data)
    # A row whose arguments name SOURCE launches a new run that reads the damaged one
    # (`init_from.workdir=SOURCE`), into a workdir of its own.
    target = workdir
    if "SOURCE" in arguments:
        target = tmp_path / "target"
        target.mkdir()
        (target / "notes.txt").write_text("a researcher's file that must survive\n")
    return [
        *SMOKE,
        f"--workdir={target}",
        f"--config.dataset.data_dir={data if 'data/' in steps else data_dir}",
        *shlex.split(arguments.replace("SOURCE", str(workdir))),
    ]


@pytest.mark.parametrize(
    ("steps", "arguments", "fragment"), DAMAGE_ROWS, ids=[f"{r[0]} {r[1]}" for r in DAMAGE_ROWS]
)
def test_a_damaged_workdir_or_data_set_is_one_line_and_changes_nothing(
    steps, arguments, fragment, finished_run, tmp_path, data_dir
):
    launch = damaged_launch(steps, arguments, finished_run, tmp_path, data_dir)
    before = _snapshot(tmp_path)
    result = forked_launch(launch)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert lines[0].startswith("jaxnn: error: ")
    assert fragment in lines[0], lines[0]
    assert _snapshot(tmp_path) == before


def test_a_forked_launch_is_the_launch_a_user_starts(tmp_path, data_dir):
    """The tables run through tests/forked_launch.py; one row of each kind, launched as a real
    `python launch.py` process, prints exactly what the forked launch prints."""
    rows = [
        ROWS[0][0],
        "--config.training.steps=0 --config.training.epochs=900000000",
        # issue 29's families: a file whose column fails to parse, an unknown experiment word
        "--config.dataset.name=csv:tests/files/target_na.csv",
        "--config=experiments/mnist1d_mlp.py:nonsense",
    ]
    assert all(any(row == arguments for arguments, _ in ROWS) for row in rows[2:])
    for arguments in rows:
        launch = launch_arguments(arguments, tmp_path / "run", data_dir)
        real = _real_launch(launch)
        forked = forked_launch(launch)
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            real.returncode,
            real.stdout,
            real.stderr,
        )
        assert real.returncode == 2
    assert not (tmp_path / "run").exists()


def _real_launch(arguments: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "launch.py", *arguments],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


# One row of each kind of damage: a run's own file, a directory, a transfer's source, the data.
REAL_DAMAGE_ROWS = [
    ("cut summary.json 30", ""),
    ("file checkpoints", "--config.training.steps=60"),
    ("dir config.json", "--config.init_from.workdir=SOURCE"),
    ("empty ; zero data/mnist1d-train.array_record-00000-of-00001", ""),
]


@pytest.mark.slow
@pytest.mark.parametrize(("steps", "arguments"), REAL_DAMAGE_ROWS)
def test_a_damaged_row_launched_as_a_real_process_prints_what_the_forked_launch_prints(
    steps, arguments, finished_run, tmp_path, data_dir
):
    assert any(row[:2] == (steps, arguments) for row in DAMAGE_ROWS)
    launch = damaged_launch(steps, arguments, finished_run, tmp_path, data_dir)
    before = _snapshot(tmp_path)
    real = _real_launch(launch)
    forked = forked_launch(launch)
    assert real.returncode == 2, real.stderr[-2000:]
    assert (forked.returncode, forked.stdout, forked.stderr) == (
        real.returncode,
        real.stdout,
        real.stderr,
    )
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize(
    ("steps", "fragment"),
    [
        ("write config.json garbage", "config.json is damaged: not valid JSON"),
        ('write config.json {"model": 3}', "its field 'model' holds a int, not a config section"),
        ("write summary.json garbage", "summary.json is damaged: not valid JSON"),
        ('write summary.json {"steps": 40}', "summary.json is damaged: it lacks the field"),
        ("dir summary.json", "summary.json is damaged: it should be a file"),
    ],
)
def test_load_predictor_reads_a_run_through_the_validating_readers(
    steps, fragment, finished_run, tmp_path
):
    """`jaxnn.load_predictor` reads config.json and summary.json as a launch does: a damaged
    file is one line naming it (never a JSONDecodeError), and nothing is changed."""
    import jaxnn
    from jaxnn.errors import JaxnnError

    workdir = tmp_path / "run"
    shutil.copytree(finished_run, workdir)
    damage(steps, workdir, tmp_path / "data")
    before = _snapshot(tmp_path)
    with pytest.raises(JaxnnError) as raised:
        jaxnn.load_predictor(workdir)
    assert fragment in str(raised.value) and "\n" not in str(raised.value), str(raised.value)
    assert "name another run" in str(raised.value)
    assert _snapshot(tmp_path) == before
