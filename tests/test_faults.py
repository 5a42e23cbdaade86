"""Faults injected for real: launches killed with SIGKILL, read-only and full disks, NaN.

A killed launch is relaunched with the same workdir until it finishes; its final weights, best
member, metrics.jsonl and summary.json (timing aside) must equal those of a run that was never
interrupted, bit for bit, and every checkpoint the kill left behind must be loadable or named
by the relaunch. `make test` kills a few moments of a short run; the slow tier (`make test-slow`,
or `make faults` for these alone) kills a longer run at 27 seeded moments from start-up to the
final writes, during checkpoint saves included, some of them twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import importlib.util
import io
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import jax
import numpy as np
import pytest
from helpers import shared_dir, tiered

from jaxnn import data, runner
from jaxnn.core import ensemble
from jaxnn.errors import DataError, JaxnnError, WorkdirError
from jaxnn.io import checkpoint, export
from tests.helpers import blobs, small_config
from tests.test_resume import _config as resume_config

REPO = Path(__file__).resolve().parent.parent

# The run the kills interrupt (tests/test_resume.py's config), or a longer one (`long`) with ten
# checkpoint saves. Every launch that trains goes through launch.py in a child process, the
# uninterrupted reference too: the launcher splits the host into one CPU device per core and
# shards the members over them, which may differ from a run inside pytest (one device) in the
# last bit of a few float32 values.
CONFIG_TEXT = """
from jaxnn.config import default_config


def get_config(arg=None):
    config = default_config()
    config.model.hidden = (16, 16)
    config.model.dropout = 0.1
    config.training.batch_size = 100
    config.training.steps = 200 if arg == "long" else 60
    config.training.eval_every = 10
    config.restarts.num = 3
    config.checkpoint.every_steps = 20
    config.checkpoint.keep = 2
    return config
"""


def write_config(directory: Path) -> Path:
    path = directory / "faults_config.py"
    path.write_text(CONFIG_TEXT)
    return path


def load_config(path: Path, data_dir: str, arg: str | None = None):
    """The config the launcher builds from `path` (for relaunching in this process)."""
    spec = importlib.util.spec_from_file_location("faults_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config(arg)
    config.dataset.data_dir = data_dir
    return config


def child_env() -> dict[str, str]:
    """A child on CPU with a compilation cache of its own (a killed child may tear an entry)."""
    return {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(REPO / ".data" / "jax_cache_faults"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def command(config_path: Path, workdir: Path, data_dir: str, arg: str | None = None) -> list[str]:
    suffix = f":{arg}" if arg else ""
    return [
        sys.executable,
        "launch.py",
        f"--config={config_path}{suffix}",
        f"--workdir={workdir}",
        f"--config.dataset.data_dir={data_dir}",
        "--noprogress",
    ]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@dataclasses.dataclass
class Launch:
    """A launch in a child process, its output in files (a killed child leaves no pipe to drain)."""

    process: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, args: list[str], log: Path, env: dict[str, str] | None = None) -> Launch:
        with (
            open(log.with_suffix(".out"), "w") as stdout,
            open(log.with_suffix(".err"), "w") as err,
        ):
            process = subprocess.Popen(
                args,
                cwd=REPO,
                env=env or child_env(),
                stdout=stdout,
                stderr=err,
                # As from a terminal: a suite started in the background (`make test &`) hands
                # its children SIGINT ignored, and Python then leaves it ignored.
                preexec_fn=_default_sigint,
            )
        return cls(process, log)

    def stdout(self) -> str:
        return self.log.with_suffix(".out").read_text()

    def stderr(self) -> str:
        return self.log.with_suffix(".err").read_text()

    def kill_when(
        self,
        ready: Callable[[], bool],
        *,
        delay_s: float = 0.0,
        signal_number: int = signal.SIGKILL,
        timeout_s: float = 300,
    ) -> bool:
        """Sends SIGKILL (or `signal_number`) `delay_s` after `ready()` first holds.

        Returns:
          Whether the signal reached the child before it ended (for SIGKILL: it died of it).
        """
        deadline = time.monotonic() + timeout_s
        while self.process.poll() is None and time.monotonic() < deadline:
            if ready():
                if delay_s:
                    time.sleep(delay_s)
                self.process.send_signal(signal_number)
                if signal_number != signal.SIGKILL:
                    return self.process.poll() is None
                return self.process.wait() == -signal.SIGKILL
            time.sleep(0.0005)
        self.wait(timeout_s=1)
        return False

    def wait(self, timeout_s: float = 300) -> int:
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


# --- Moments of a launch, as seen from outside it ---------------------------------------------


def _names(directory: Path) -> list[str]:
    try:
        return os.listdir(directory)
    except FileNotFoundError:
        return []


def started() -> Callable[[Path], bool]:
    return lambda workdir: True


def exists(name: str) -> Callable[[Path], bool]:
    return lambda workdir: (workdir / name).exists()


def evaluated(step: int, num_members: int = 3) -> Callable[[Path], bool]:
    """metrics.jsonl holds the rows of the evaluation at `step`."""

    def ready(workdir: Path) -> bool:
        try:
            text = (workdir / "metrics.jsonl").read_text()
        except FileNotFoundError:
            return False
        return text.count("\n") >= 2 * num_members * (step // 10)

    return ready


def saving(step: int) -> Callable[[Path], bool]:
    """Orbax is writing checkpoint `step` (its temporary directory exists)."""
    prefix = f"{step}{checkpoint.UNFINISHED_MARKER}"
    return lambda workdir: any(n.startswith(prefix) for n in _names(workdir / "checkpoints"))


def saved(step: int) -> Callable[[Path], bool]:
    return lambda workdir: str(step) in _names(workdir / "checkpoints")


def exporting() -> Callable[[Path], bool]:
    prefix = f"{export.BEST}{checkpoint.UNFINISHED_MARKER}"
    return lambda workdir: any(n.startswith(prefix) for n in _names(workdir))


def plotted() -> Callable[[Path], bool]:
    return lambda workdir: any(n.endswith(".png") for n in _names(workdir / "plots"))


# --- What a kill leaves, and the comparison with the uninterrupted run --------------------------


@dataclasses.dataclass
class Leftovers:
    steps: list[int]  # finished checkpoints
    unreadable: list[Path]  # finished checkpoints that cannot be restored
    unfinished: list[Path]  # saves Orbax began but never finished


def leftovers(workdir: Path) -> Leftovers:
    directory = workdir / "checkpoints"
    if not directory.is_dir():
        return Leftovers([], [], [])
    reader = checkpoint.RunCheckpoints(directory, read_only=True)
    unreadable = []
    try:
        steps = reader.steps()
        for step in steps:
            try:
                fields = {name: reader.shapes(step, name) for name in checkpoint.state_fields()}
                reader.restore_fields(step, fields)
            except Exception:
                unreadable.append(reader.step_dir(step))
    finally:
        reader.close()
    return Leftovers(steps, unreadable, checkpoint.unfinished_saves(directory))


def final_state(workdir: Path) -> dict:
    return checkpoint.last_state_fields(workdir / "checkpoints")


def assert_trees_equal(a, b) -> None:
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def summary_without_timing(workdir: Path) -> dict:
    summary = json.loads((workdir / "summary.json").read_text())
    summary.pop("timing")
    return summary


def assert_same_run(workdir: Path, reference_dir: Path) -> None:
    """Bit for bit the uninterrupted run: weights, best member, metrics.jsonl, summary.json."""
    assert summary_without_timing(workdir) == summary_without_timing(reference_dir)
    assert (workdir / "metrics.jsonl").read_text() == (reference_dir / "metrics.jsonl").read_text()
    assert_trees_equal(final_state(workdir), final_state(reference_dir))
    for item in export.BEST_TREES:
        assert_trees_equal(export.read_best(workdir, item), export.read_best(reference_dir, item))
    assert export.best_metadata(workdir) == export.best_metadata(reference_dir)
    assert not (workdir / ".lock").exists()
    assert not checkpoint.unfinished_saves(workdir / "checkpoints")


def assert_named(left: Leftovers, said: str) -> None:
    """Every checkpoint the kill left unreadable or unfinished is named by the relaunch."""
    for path in [*left.unreadable, *left.unfinished]:
        assert str(path) in said, f"{path} was not named by the relaunch:\n{said}"


@pytest.fixture(scope="module")
def cli_reference(tmp_path_factory, data_dir) -> Path:
    """The short run, launched once and never interrupted."""
    return launched_reference(tmp_path_factory, data_dir, None)


def launched_reference(tmp_path_factory, data_dir: str, arg: str | None) -> Path:
    def build(directory: Path) -> None:
        directory.mkdir(parents=True)
        config_path = write_config(directory)
        child = Launch.start(
            command(config_path, directory / "run", data_dir, arg), directory / "launch"
        )
        assert child.wait() == 0, child.stderr()[-3000:]

    return shared_dir(tmp_path_factory, f"faults_reference_{arg or 'short'}", build) / "run"


def relaunch_to_the_end(args: list[str], workdir: Path, log: Path, reference_dir: Path) -> str:
    """Relaunches until the run is finished; checks it against the reference; returns its stdout."""
    child = Launch.start(args, log)
    assert child.wait() == 0, child.stderr()[-3000:]
    assert "Traceback" not in child.stderr()
    assert_same_run(workdir, reference_dir)
    return child.stdout()


# --- The slow tier: a kill during a checkpoint save (a fast one in test_lock.py) ---------------


@pytest.mark.slow
def test_a_launch_killed_while_saving_a_checkpoint_resumes_bit_identical(
    cli_reference, tmp_path, data_dir
):
    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir)
    child = Launch.start(args, tmp_path / "killed")
    assert child.kill_when(lambda: saving(40)(workdir)), child.stderr()[-3000:]
    left = leftovers(workdir)
    assert left.unfinished, "the kill missed the save"
    assert left.steps == [20] and not left.unreadable
    # The rows of steps 30 and 40 are past checkpoint 20: the relaunch drops, then repeats them.
    assert evaluated(40)(workdir)
    said = relaunch_to_the_end(args, workdir, tmp_path / "relaunch", cli_reference)
    assert_named(left, said)
    assert "(step 20)" in said


# --- make faults: 27 moments of a longer run, relaunched by the launcher ----------------------


def long_moments(seed: int = 0) -> list[tuple[str, list[tuple[Callable[[Path], bool], float]]]]:
    """(name, [(moment, delay) per kill]) of every trial: start-up to the final writes."""
    rng = random.Random(seed)
    checkpoints = list(range(20, 201, 20))
    trials = []
    for _ in range(4):
        delay = round(rng.uniform(0.3, 3.5), 2)
        trials.append((f"{delay} s after the start", [(started(), delay)]))
    trials.append(("once the lock is taken", [(exists(".lock"), 0.0)]))
    trials.append(("once config.json is written", [(exists("config.json"), 0.0)]))
    for step in sorted(rng.sample(range(10, 201, 10), 5)):
        trials.append((f"after the metrics of step {step}", [(evaluated(step), 0.0)]))
    for step in sorted(rng.sample(checkpoints, 6)):
        trials.append((f"while saving checkpoint {step}", [(saving(step), 0.0)]))
    for step in sorted(rng.sample(checkpoints[:-1], 2)):
        trials.append((f"just after checkpoint {step}", [(saved(step), 0.0)]))
    trials.append(("while exporting the best member", [(exporting(), 0.0)]))
    trials.append(("once the best member is exported", [(exists("best"), 0.0)]))
    trials.append(("while writing the plots", [(plotted(), 0.0)]))
    trials.append(("once report.md is written", [(exists("report.md"), 0.0)]))
    trials.append(("once summary.json is written", [(exists("summary.json"), 0.0)]))
    for _ in range(3):
        first = rng.choice(range(10, 101, 10))
        second = rng.choice([s for s in checkpoints if s > first + 20])
        trials.append(
            (
                f"after the metrics of step {first}, then while saving checkpoint {second}",
                [(evaluated(first), 0.0), (saving(second), 0.0)],
            )
        )
    return trials


LONG_TRIALS = long_moments()


@pytest.fixture(scope="module")
def long_reference(tmp_path_factory, data_dir) -> Path:
    """The longer run, launched once and never interrupted."""
    return launched_reference(tmp_path_factory, data_dir, "long")


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.parametrize("trial", range(len(LONG_TRIALS)), ids=[t[0] for t in LONG_TRIALS])
def test_kill_and_resume_at_many_moments(trial, long_reference, tmp_path, data_dir):
    name, kills = LONG_TRIALS[trial]
    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir, "long")
    said = []
    for number, (ready, delay) in enumerate(kills):
        child = Launch.start(args, tmp_path / f"killed{number}")
        killed = child.kill_when(lambda ready=ready: ready(workdir), delay_s=delay)
        assert killed, f"{name}: the launch ended before the moment\n{child.stderr()[-3000:]}"
        said.append(child.stdout())
        left = leftovers(workdir)
        if "while saving" in name and number == len(kills) - 1:
            assert left.unfinished, "the kill missed the save"
    said = relaunch_to_the_end(args, workdir, tmp_path / "relaunch", long_reference)
    assert_named(left, said)


# --- Disk errors: a real read-only directory, a real full file system -------------------------


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[str]:
    """Makes the directory `path` read-only for real: chmod, or (as root) chattr +i or a mount."""
    if os.geteuid() != 0:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield "chmod a-w"
        finally:
            path.chmod(mode)
        return
    # Root ignores permission bits; an immutable directory or a read-only mount stops it.
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0:
        try:
            yield "chattr +i"
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        return
    mount = subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True)
    if mount.returncode == 0:
        try:
            subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
            yield "a read-only bind mount"
        finally:
            subprocess.run(["umount", str(path)], check=True)
        return
    pytest.skip("root without chattr or mount: no real way to make a directory read-only here")


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[None]:
    """A tmpfs of `size` mounted at `path` (root only)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "jaxnn-faults", str(path)],
        capture_output=True,
    )
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mount.stderr.decode().strip()}")
    try:
        yield
    finally:
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], check=True)


def fill(directory: Path) -> Path:
    """Writes a file until the file system is full; returns it (it may be empty, or absent when
    the file system was already too full to create it)."""
    filler = directory / "filler"
    try:
        with open(filler, "wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
    except OSError as error:
        assert error.errno == errno.ENOSPC
    return filler


def snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def assert_one_line_error(child: Launch, fragment: str) -> str:
    lines = [line for line in child.stderr().splitlines() if line.strip()]
    assert child.process.returncode == 2, child.stderr()[-3000:]
    assert len(lines) == 1 and lines[0].startswith("jaxnn: error: "), child.stderr()[-3000:]
    assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.slow
def test_a_read_only_checkpoint_directory_ends_with_one_line_and_keeps_checkpoints(
    cli_reference, tmp_path, data_dir
):
    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir)
    child = Launch.start(args, tmp_path / "killed")
    assert child.kill_when(lambda: saved(40)(workdir)), child.stderr()[-3000:]
    before = snapshot(workdir / "checkpoints")
    with read_only(workdir / "checkpoints"):
        child = Launch.start(args, tmp_path / "readonly")
        child.wait()
    line = assert_one_line_error(child, f"cannot write checkpoint {workdir / 'checkpoints'}")
    assert "checkpoints saved before it" in line
    assert snapshot(workdir / "checkpoints") == before
    assert not (workdir / "summary.json").exists()
    # Once the directory is writable again, the run finishes as if nothing had happened.
    relaunch_to_the_end(args, workdir, tmp_path / "relaunch", cli_reference)


@pytest.mark.slow
def test_a_full_disk_during_the_final_writes_ends_with_one_line_and_keeps_checkpoints(
    cli_reference, tmp_path, data_dir
):
    config_path = write_config(tmp_path)
    workdir = tmp_path / "disk"
    args = command(config_path, workdir, data_dir)
    with small_filesystem(workdir, "8m"):
        child = Launch.start(args, tmp_path / "full")
        final = saved(60)
        deadline = time.monotonic() + 300
        while not final(workdir) and child.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
        filler = fill(workdir)
        child.wait()
        assert_one_line_error(child, "No space left on device")
        left = leftovers(workdir)
        assert left.steps[-1] == 60 and not left.unreadable
        assert not (workdir / "summary.json").exists()
        filler.unlink(missing_ok=True)
        relaunch_to_the_end(args, workdir, tmp_path / "relaunch", cli_reference)


@pytest.mark.slow
def test_a_disk_that_fills_during_a_checkpoint_save_keeps_the_previous_checkpoint(tmp_path, capfd):
    state = ensemble.fit_ensemble(
        small_config(**{"restarts.num": 3, "model.hidden": (256, 256)}),
        blobs(),
        jax.random.PRNGKey(0),
    ).state
    directory = tmp_path / "disk"
    with small_filesystem(directory, "16m"):
        checkpoints = checkpoint.RunCheckpoints(directory / "checkpoints")
        checkpoints.save(10, state, val_loss=1.0)
        before = snapshot(directory / "checkpoints")
        filler = fill(directory)
        # Leave room to begin the save, not to finish it: tensorstore fails mid-write.
        os.truncate(filler, filler.stat().st_size - 200_000)
        with pytest.raises(WorkdirError, match=r"checkpoints/20 \(No space left on device\)"):
            checkpoints.save(20, state, val_loss=0.5)
        assert checkpoints.steps() == [10]
        assert snapshot(directory / "checkpoints") == before  # the failed save is cleared
        restored = checkpoints.restore_fields(10, {"params": checkpoints.shapes(10, "params")})
        assert_trees_equal(restored["params"], state.params)
        checkpoints.close()
    assert "Traceback" not in capfd.readouterr().err


def test_a_workdir_that_cannot_be_written_is_one_error_before_any_training(tmp_path, data_dir):
    workdir = tmp_path / "run"
    workdir.mkdir()
    with read_only(workdir), pytest.raises(JaxnnError, match=f"workdir {workdir} cannot be"):
        runner.run(resume_config(data_dir), workdir, progress=False, out=io.StringIO())
    assert list(workdir.iterdir()) == []


# --- Non-finite values --------------------------------------------------------------------------


def test_nan_features_are_refused_at_load():
    x = np.ones((20, 3), np.float32)
    x[4, 1] = np.nan
    y = np.arange(20) % 2
    with pytest.raises(DataError, match="x_train has 1 NaN or infinite values"):
        data.from_arrays(x, y, x[:5] * 0, y[:5], task="classification")


def test_a_member_that_diverges_mid_run_is_isolated(tmp_path, data_dir):
    config = resume_config(data_dir, **{"restarts.num": 1})
    config.restarts.sweep = "optimizer.learning_rate=[0.05, 1e7]"
    summary = runner.run(config, tmp_path / "run", progress=False, out=io.StringIO())
    calm, wild = summary["members"]
    assert not calm["diverged"] and wild["diverged"]
    assert calm["final_step"] == 60 and 0 < wild["final_step"] < 60
    assert summary["best_member"] == 0 and summary["num_diverged"] == 1
    assert summary["ensemble"]["test_accuracy"] == pytest.approx(calm["test_accuracy"])
    # The diverged member keeps its last finite weights: its metrics stop moving.
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert len({row["loss"] for row in rows if row["member"] == 1 and row["split"] == "val"}) == 1
    assert len({row["loss"] for row in rows if row["member"] == 0 and row["split"] == "val"}) == 6


def test_a_run_where_every_member_diverges_ends_with_a_clear_message(tmp_path, data_dir):
    config = resume_config(data_dir, **{"restarts.num": 2})
    config.optimizer.learning_rate = 1e4
    workdir = tmp_path / "run"
    out = io.StringIO()
    summary = runner.run(config, workdir, progress=False, out=out)
    assert "every member diverged" in out.getvalue()
    on_disk = json.loads((workdir / "summary.json").read_text())
    assert on_disk["best_member"] is None and on_disk["num_diverged"] == 2
    assert summary["best"] == {} and summary["ensemble"] == {}
    assert "Every member diverged" in (workdir / "report.md").read_text()
    assert not (workdir / "best").exists()


# --- Signals: SIGTERM and SIGINT stop at a chunk boundary with a checkpoint --------------------

INTERRUPTED = r"^jaxnn: interrupted at step (\d+) by {name}; launch again to resume$"


def interrupt_and_resume(
    reference: Path, tmp_path: Path, data_dir: str, number: int, moment, arg: str | None = None
) -> int:
    """Sends `number` at `moment`; checks the one line, the exit code, the released lock and
    the checkpoint at the step it names; relaunches to the end. Returns that step."""
    import re

    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir, arg)
    child = Launch.start(args, tmp_path / "interrupted")
    assert child.kill_when(lambda: moment(workdir), signal_number=number)
    assert child.wait() == 128 + number, child.stderr()[-3000:]
    lines = [line for line in child.stderr().splitlines() if line.strip()]
    name = signal.Signals(number).name
    assert len(lines) == 1, child.stderr()[-3000:]
    match = re.match(INTERRUPTED.format(name=name), lines[0])
    assert match, lines[0]
    step = int(match.group(1))
    assert not (workdir / ".lock").exists()
    left = leftovers(workdir)
    # Stopped before its first step (the first variant's start is a boundary): nothing was
    # trained, so nothing is saved and the relaunch starts from the beginning.
    assert (left.steps[-1:] or [0]) == [step] and not left.unreadable and not left.unfinished
    assert not (workdir / "summary.json").exists()
    said = relaunch_to_the_end(args, workdir, tmp_path / "relaunch", reference)
    assert step == 0 or f"(step {step})" in said
    return step


# The fast tier: Ctrl-C; SIGTERM (the same handler) in the slow tier.
@pytest.mark.parametrize(
    "number", tiered([signal.SIGTERM, signal.SIGINT], {signal.SIGINT}), ids=["SIGTERM", "SIGINT"]
)
def test_a_signal_stops_the_run_at_a_chunk_boundary_and_the_relaunch_is_bit_identical(
    number, cli_reference, tmp_path, data_dir
):
    step = interrupt_and_resume(cli_reference, tmp_path, data_dir, number, evaluated(20))
    assert 20 <= step < 60


@pytest.mark.slow
@pytest.mark.xfail(
    strict=False,
    reason="a race: a fresh clone's CI saw exit -2 (death by SIGINT, no traceback) with the "
    "interrupted line printed; the deterministic case below sends the second signal after "
    "that line and passes",
)
def test_a_second_sigint_aborts_at_once(cli_reference, tmp_path, data_dir):
    import re

    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir)
    child = Launch.start(args, tmp_path / "aborted")
    # Just after config.json: the first may stop the launch at once (the first variant's start
    # is a boundary) or land in the compile; the second comes while the first is honoured,
    # which lasts until the process has exited (JAX's exit hooks take seconds).
    assert child.kill_when(lambda: exists("config.json")(workdir), signal_number=signal.SIGINT)
    time.sleep(0.05)
    child.process.send_signal(signal.SIGINT)
    assert child.wait() == 130, child.stderr()[-3000:]
    lines = [line for line in child.stderr().splitlines() if line.strip()]
    assert lines[-1:] == [
        "jaxnn: aborted by a second SIGINT; launch again to resume from the last checkpoint"
    ], child.stderr()[-3000:]
    first = lines[:-1]
    assert not first or (
        len(first) == 1 and re.match(INTERRUPTED.format(name="SIGINT"), first[0])
    ), child.stderr()[-3000:]
    relaunch_to_the_end(args, workdir, tmp_path / "relaunch", cli_reference)


@pytest.mark.slow
def test_a_second_sigint_while_the_launch_exits_aborts_at_once(cli_reference, tmp_path, data_dir):
    import re

    config_path = write_config(tmp_path)
    workdir = tmp_path / "run"
    args = command(config_path, workdir, data_dir)
    child = Launch.start(args, tmp_path / "exiting")
    assert child.kill_when(lambda: exists("config.json")(workdir), signal_number=signal.SIGINT)
    # Its line is printed: the first is honoured, and the process takes seconds to exit.
    assert child.kill_when(
        lambda: "interrupted at step" in child.stderr(), signal_number=signal.SIGINT
    )
    assert child.wait() == 130, child.stderr()[-3000:]
    lines = [line for line in child.stderr().splitlines() if line.strip()]
    assert len(lines) == 2 and re.match(INTERRUPTED.format(name="SIGINT"), lines[0]), lines
    assert lines[1] == (
        "jaxnn: aborted by a second SIGINT; launch again to resume from the last checkpoint"
    )
    relaunch_to_the_end(args, workdir, tmp_path / "relaunch", cli_reference)


SIGNAL_TRIALS = [
    (name, number, moment)
    for number in (signal.SIGTERM, signal.SIGINT)
    for name, moment in (
        ("once config.json is written", exists("config.json")),
        ("after the metrics of step 30", evaluated(30)),
        ("while saving checkpoint 60", saving(60)),
        ("after the metrics of step 110", evaluated(110)),
        ("just after checkpoint 180", saved(180)),
    )
]


@pytest.mark.slow
@pytest.mark.faults
@pytest.mark.parametrize(
    "trial",
    range(len(SIGNAL_TRIALS)),
    ids=[f"{signal.Signals(t[1]).name} {t[0]}" for t in SIGNAL_TRIALS],
)
def test_signals_at_many_moments(trial, long_reference, tmp_path, data_dir):
    _, number, moment = SIGNAL_TRIALS[trial]
    interrupt_and_resume(long_reference, tmp_path, data_dir, number, moment, "long")
