"""The persistent compilation cache: on by default for a launch, moved or turned off from the
environment, an unusable directory one warning line; a cache set through JAX is kept."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest
from jax.experimental.compilation_cache import compilation_cache

from jaxnn import front_end, runner
from jaxnn.config import default_config
from jaxnn.core import compile_cache
from jaxnn.data import builders
from jaxnn.errors import ConfigError
from jaxnn.io import workdir as workdir_lib

REPO = Path(__file__).resolve().parent.parent
SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)
HIT = "Persistent compilation cache hit for 'jit_placed_chunk'"


@pytest.fixture
def restore_jax_cache():
    """Puts back the session's cache settings (tests/conftest.py) after a test changes them."""
    before = {name: getattr(jax.config, name) for name in SETTINGS}
    yield
    changed = jax.config.jax_compilation_cache_dir != before["jax_compilation_cache_dir"]
    for name, value in before.items():
        jax.config.update(name, value)
    if changed:
        compilation_cache.reset_cache()


@pytest.fixture(autouse=True)
def prepared_data(data_dir: str) -> None:
    """MNIST-1D prepared before any launch, so that no launch's stderr holds TFDS's lines."""
    builders.prepare("mnist1d", data_dir)


def _launch(
    workdir: Path, data_dir: str, **environ: str | None
) -> subprocess.CompletedProcess[str]:
    """A smoke launch in a fresh process; `environ` sets (a string) or removes (None) variables."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env.pop("JAX_COMPILATION_CACHE_DIR", None)
    for name, value in environ.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [
            sys.executable,
            "launch.py",
            "--config=experiments/random_restarts.py:smoke",
            f"--workdir={workdir}",
            f"--config.dataset.data_dir={data_dir}",
            "--noprogress",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def _entries(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir()} if directory.is_dir() else set()


@pytest.mark.slow  # launches with a cold compilation cache
def test_a_launch_caches_by_default_and_a_relaunch_reads_the_chunk_program(tmp_path, data_dir):
    """The default location, the variable that moves it, reads, and a torn entry's warning."""
    cache = tmp_path / "xdg" / "jaxnn" / "jax"
    # No JAXNN_COMPILATION_CACHE: the default location, under XDG_CACHE_HOME.
    first = _launch(
        tmp_path / "first",
        data_dir,
        JAXNN_COMPILATION_CACHE=None,
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        HOME=str(tmp_path / "home"),
        JAX_LOG_COMPILES="1",  # JAX logs each cache hit
    )
    assert first.returncode == 0, first.stderr[-3000:]
    written = _entries(cache)
    assert any(name.startswith("jit_placed_chunk-") for name in written), sorted(written)
    assert HIT not in first.stderr
    assert not (tmp_path / "home" / ".cache" / "jaxnn").exists()

    # The same cache named by the environment variable: the chunk program is read, nothing is
    # written, and an entry a killed launch left torn is one warning line.
    torn = sorted(name for name in written if not name.startswith("jit_placed_chunk-"))[0]
    (cache / torn).write_bytes(b"torn")
    second = _launch(
        tmp_path / "second",
        data_dir,
        JAXNN_COMPILATION_CACHE=str(cache),
        XDG_CACHE_HOME=str(tmp_path / "elsewhere"),
        JAX_LOG_COMPILES="1",
    )
    assert second.returncode == 0, second.stderr[-3000:]
    assert HIT in second.stderr
    assert _entries(cache) == written
    warned = [line for line in second.stderr.splitlines() if line.startswith("jaxnn: warning:")]
    assert len(warned) == 1 and "Error reading persistent compilation cache" in warned[0], warned
    assert "UserWarning" not in second.stderr and "Traceback" not in second.stderr
    assert not (tmp_path / "elsewhere" / "jaxnn").exists()


@pytest.mark.slow  # launches with a cold compilation cache
def test_off_writes_no_cache_anywhere(tmp_path, data_dir):
    result = _launch(
        tmp_path / "run",
        data_dir,
        JAXNN_COMPILATION_CACHE="off",
        XDG_CACHE_HOME=str(tmp_path / "xdg"),
        HOME=str(tmp_path / "home"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "xdg" / "jaxnn").exists()
    assert not (tmp_path / "home" / ".cache" / "jaxnn").exists()
    assert (tmp_path / "run" / "summary.json").exists()


@pytest.mark.slow  # a launch with a cold compilation cache (enable's warning: tested below)
def test_an_unusable_cache_directory_is_one_warning_line_and_the_run_succeeds(tmp_path, data_dir):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where the cache directory would be\n")
    result = _launch(tmp_path / "run", data_dir, JAXNN_COMPILATION_CACHE=str(blocker / "cache"))
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"jaxnn: warning: compilation cache {blocker / 'cache'} ")
    assert "compiling without it" in lines[0]
    assert (tmp_path / "run" / "summary.json").exists()


def test_enable_keeps_a_directory_jax_is_already_set_to():
    session = compile_cache.configured_directory()
    assert session == REPO / ".data" / "jax_cache"  # tests/conftest.py
    assert compile_cache.enable() == session
    assert compile_cache.enable("") == session
    assert jax.config.jax_compilation_cache_dir == str(session)


def test_enable_with_a_directory_replaces_the_configured_one(tmp_path, restore_jax_cache):
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    assert compile_cache.enable(tmp_path / "mine") == tmp_path / "mine"
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "mine")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0
    assert (tmp_path / "mine").is_dir()


def test_enable_warns_once_and_changes_nothing_for_an_unusable_directory(
    tmp_path, capsys, restore_jax_cache
):
    (tmp_path / "a_file").write_text("")
    assert compile_cache.enable(tmp_path / "a_file" / "cache") is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("jaxnn: warning: compilation cache ")
    assert jax.config.jax_compilation_cache_dir == str(REPO / ".data" / "jax_cache")


def test_default_directory_follows_xdg_cache_home(tmp_path):
    assert compile_cache.default_directory({"XDG_CACHE_HOME": str(tmp_path)}) == (
        tmp_path / "jaxnn" / "jax"
    )
    assert compile_cache.default_directory() == Path.home() / ".cache" / "jaxnn" / "jax"


class _DataLoaded(Exception):
    """Raised where a run loads its data, the first thing it does after the cache is set."""


@pytest.fixture
def planned_runs(monkeypatch):
    """Stops `runner.run` where it loads the data, recording the cache directory then."""
    seen: list[str | None] = []

    def record(*args, **kwargs):
        seen.append(jax.config.jax_compilation_cache_dir)
        raise _DataLoaded

    monkeypatch.setattr(runner.data_lib, "load", record)
    return seen


def test_a_run_keeps_the_cache_its_caller_set_unless_the_config_names_one(
    tmp_path, planned_runs, restore_jax_cache
):
    config = default_config()
    config.training.steps = 10
    with pytest.raises(_DataLoaded):
        runner.run(config, tmp_path / "kept", out=io.StringIO())
    assert planned_runs[-1] == str(REPO / ".data" / "jax_cache")

    config.compilation_cache.enabled = False
    config.compilation_cache.dir = str(tmp_path / "unused")
    with pytest.raises(_DataLoaded):
        runner.run(config, tmp_path / "off", out=io.StringIO())
    assert planned_runs[-1] == str(REPO / ".data" / "jax_cache")
    assert not (tmp_path / "unused").exists()

    config.compilation_cache.enabled = True
    with pytest.raises(_DataLoaded):
        runner.run(config, tmp_path / "named", out=io.StringIO())
    assert planned_runs[-1] == str(tmp_path / "unused")


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("enabled", "yes", "compilation_cache.enabled must be True or False"),
        ("dir", 3, "compilation_cache.dir must be a directory path"),
    ],
)
def test_a_bad_cache_section_is_one_config_error(field, value, fragment):
    config = default_config()
    config.training.steps = 10
    with config.unlocked(), config.compilation_cache.ignore_type():
        config.compilation_cache[field] = value
    with pytest.raises(ConfigError, match=fragment):
        front_end.resolve(config)


def test_a_run_resumes_whatever_its_cache_settings_were(tmp_path):
    stored = json.loads(default_config().to_json())
    older = {k: v for k, v in stored.items() if k != "compilation_cache"}  # before the section
    for index, before in enumerate((stored, older)):
        workdir = tmp_path / f"run_{index}"
        workdir.mkdir()
        (workdir / "config.json").write_text(json.dumps(before))
        config = default_config()
        config.compilation_cache.enabled = False
        config.compilation_cache.dir = str(tmp_path / "elsewhere")
        assert workdir_lib.plan_workdir(workdir, config, overwrite=False).action == "resume"
