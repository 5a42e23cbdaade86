"""`pip install` of the built wheel gives a `jaxnn` command that runs the shipped experiments by
name and a user's config by path from any directory, and the README's Python snippet runs
against the installed package (not the checkout)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from helpers import markdown_blocks, user_home

REPO = Path(__file__).resolve().parent.parent
# What the wheel is built from: the files pyproject.toml packages (a copy, so the build's
# scratch directories never land in the checkout while other tests read it).
SOURCES = ("pyproject.toml", "README.md", "jaxnn", "experiments")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed; its dependencies are this venv's (a .pth file),
    so nothing is downloaded."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        kwargs = (
            {"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}
        )
        copy(REPO / name, source / name, **kwargs)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "dist"), str(source)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("jaxnn-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    done = subprocess.run(
        [*pip, "--python", str(python), "install", "--no-deps", str(wheel)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    site_packages = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (Path(site_packages) / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def _run(venv: Path, cwd: Path, *command: str) -> subprocess.CompletedProcess:
    """Runs a command of the venv in `cwd`, as a user outside the checkout would."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env |= {
        "HOME": str(user_home(cwd)),
        "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "JAX_PLATFORMS": "cpu",
        "JAX_COMPILATION_CACHE_DIR": str(REPO / ".data" / "jax_cache"),
    }
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed, tmp_path):
    done = _run(
        installed, tmp_path, "python", "-c", "import jaxnn, experiments; print(jaxnn.__file__)"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith(str(installed)), done.stdout


def test_the_jaxnn_command_runs_a_shipped_experiment_by_name(installed, tmp_path):
    done = _run(
        installed, tmp_path, "jaxnn", "--config=mnist1d_mlp:smoke", "--workdir=run", "--noprogress"
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "run" / "summary.json").is_file()


def test_the_jaxnn_command_runs_a_users_config_by_path(installed, tmp_path):
    # A user's own config file, built on a shipped one (the wheel's `experiments` package).
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.py").write_text(
        "from experiments import digits_mlp\n\n\n"
        "def get_config(arg=None):\n"
        "    config = digits_mlp.get_config(arg)\n"
        "    config.model.hidden = (8,)\n"
        "    return config\n"
    )
    done = _run(
        installed,
        tmp_path,
        "jaxnn",
        "--config=configs/mine.py:smoke",
        "--workdir=run",
        "--noprogress",
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((tmp_path / "run" / "config.json").read_text())["model"]["hidden"] == [8]


def test_an_unknown_experiment_name_is_one_line_and_exit_2(installed, tmp_path):
    done = _run(installed, tmp_path, "jaxnn", "--config=mnist1d_mpl:smoke", "--workdir=run")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "mnist1d_mpl" in done.stderr and "mnist1d_mlp" in done.stderr
    assert not (tmp_path / "run").exists()


def test_the_readme_python_snippet_runs_against_the_installed_package(installed, tmp_path):
    (code,) = [
        code
        for info, code, _ in markdown_blocks((REPO / "README.md").read_text())
        if info == "python"
    ][:1]
    (tmp_path / "snippet.py").write_text(code)
    done = _run(installed, tmp_path, "python", "snippet.py")
    assert done.returncode == 0, done.stderr[-3000:]
