"""`python launch.py ...` (or any `python SCRIPT` / `python -m MODULE`) without paying for its
imports each time: a fork per run.

The bad-input tables and the docs launch the command line a few hundred times, and each launch
spends most of its time importing JAX, Flax, Orbax and TFDS before it reads its first flag. A
server process (one per xdist worker and environment) imports those once, with the run's
environment, never touches a JAX backend, and forks a child per run: the child changes into
the run's directory, points fds 0, 1 and 2 at /dev/null and two files, and runs the script or
module as `__main__` with the run's argv. From its first line on it is the process a user
starts: absl flags unparsed, no backend, one thread, the environment it was imported with.
tests/test_bad_input.py checks one row of each table against a real subprocess; tests about
the interpreter itself (signals, the wheel, a terminal) keep using real subprocesses.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Runs in the server process: imports what every launch imports, then serves one request per
# line on stdin ({"argv", "module", "cwd", "timeout", "out", "err"}), answering {"returncode"}.
_SERVER = r"""
import json, os, runpy, signal, sys, time
if sys.argv[1] == "launch":  # as jaxnn.cli.main does first: one CPU device per core
    from jaxnn.parallel.cpu_devices import split_host_into_devices
    split_host_into_devices(os.environ)
# Not jaxnn.cli itself: `python -m jaxnn.cli` runs it once, as __main__.
import absl.app, ml_collections.config_flags
import jaxnn.runner, jaxnn.errors, jaxnn.parallel.hosts
import tensorflow_datasets, orbax.checkpoint
requests, answers = sys.stdin, os.fdopen(os.dup(1), "w")
print(json.dumps({"ready": True}), file=answers, flush=True)
for line in requests:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(request["cwd"])
            for fd, path, mode in ((0, os.devnull, os.O_RDONLY),
                                   (1, request["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                                   (2, request["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
                os.dup2(os.open(path, mode, 0o644), fd)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            sys.argv = list(request["argv"])
            if request["module"]:
                sys.path[0] = os.getcwd()
                runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
            else:
                sys.path[0] = os.path.dirname(os.path.abspath(sys.argv[0]))
                runpy.run_path(sys.argv[0], run_name="__main__")
            code = 0
        except SystemExit as exit:
            code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
            if not isinstance(exit.code, (int, type(None))):
                print(exit.code, file=sys.stderr)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    deadline = time.monotonic() + request["timeout"]
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            status = None
            break
        time.sleep(0.01)
    code = None if status is None else os.waitstatus_to_exitcode(status)
    print(json.dumps({"returncode": code}), file=answers, flush=True)
"""


class _Server:
    """One server process, imported with `env`: for `kind` "launch" (the launcher, which splits
    the host into one CPU device per core before JAX starts) or "script" (any other script)."""

    def __init__(self, env: dict[str, str], kind: str) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", _SERVER, kind],
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._lock = threading.Lock()
        if json.loads(self._process.stdout.readline()) != {"ready": True}:
            raise RuntimeError("the launch server did not start")
        self._scratch = Path(tempfile.mkdtemp(prefix="jaxnn-launch-server-"))
        atexit.register(self._process.kill)
        atexit.register(shutil.rmtree, self._scratch, True)

    def alive(self) -> bool:
        return self._process.poll() is None

    def stop(self) -> None:
        self._process.kill()
        self._process.wait()
        shutil.rmtree(self._scratch, ignore_errors=True)

    def run(
        self, argv: list[str], module: str, cwd: Path, timeout: float
    ) -> subprocess.CompletedProcess:
        out, err = self._scratch / "run.stdout", self._scratch / "run.stderr"
        request = {
            "argv": argv,
            "module": module,
            "cwd": os.fspath(cwd),
            "timeout": timeout,
            "out": os.fspath(out),
            "err": os.fspath(err),
        }
        with self._lock:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            answer = json.loads(self._process.stdout.readline())
        if answer["returncode"] is None:
            raise subprocess.TimeoutExpired(argv, timeout)
        result = subprocess.CompletedProcess(
            argv, answer["returncode"], out.read_text(), err.read_text()
        )
        out.unlink()
        err.unlink()
        return result


_servers: dict[tuple, _Server] = {}
# Per worker: launches with the tests' environment, and launches and scripts with the docs'.
MAX_SERVERS = 3
# What pytest sets per test: not part of the environment a launch is started with.
_PER_TEST = ("PYTEST_CURRENT_TEST",)


def _server_for(env: dict[str, str], kind: str) -> _Server:
    """This worker's server for `env` and `kind`, started (and the oldest other one stopped)
    when none is."""
    key = (kind, tuple(sorted(env.items())))
    server = _servers.get(key)
    if server is not None and server.alive():
        return server
    while len(_servers) >= MAX_SERVERS:
        _servers.pop(next(iter(_servers))).stop()
    server = _servers[key] = _Server(env, kind)
    return server


def forked_python(
    argv: list[str],
    *,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess:
    """What `subprocess.run([sys.executable, *argv], cwd=cwd, env=env, capture_output=True,
    text=True, timeout=timeout)` returns, for argv `[SCRIPT, ...]` or `["-m", MODULE, ...]`,
    from a forked child of this worker's server for `env` (default: this process's environment
    with JAX_PLATFORMS=cpu). Its stdout and stderr go through files in a scratch directory of
    the server's own, outside anything a test snapshots."""
    environment = env if env is not None else {**os.environ, "JAX_PLATFORMS": "cpu"}
    module = argv[1] if argv[0] == "-m" else ""
    kind = "launch" if module == "jaxnn.cli" or Path(argv[0]).name == "launch.py" else "script"
    server = _server_for({k: v for k, v in environment.items() if k not in _PER_TEST}, kind)
    if module:
        return server.run([argv[1], *argv[2:]], argv[1], cwd, timeout)
    return server.run(list(argv), "", cwd, timeout)


# The tests' compilation cache (tests/conftest.py's): the suite launches the same smoke programs
# again and again, and a launch then reads a program an earlier one compiled.
TESTS_CACHE = REPO / ".data" / "jax_cache"


def forked_launch(arguments: list[str], *, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python launch.py *arguments` from the repository root, as `forked_python` runs it, with
    the tests' compilation cache."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAXNN_COMPILATION_CACHE": str(TESTS_CACHE)}
    return forked_python(["launch.py", *arguments], env=env, timeout=timeout)
