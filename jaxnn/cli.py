"""The `jaxnn` command (and `python launch.py`): the only module that defines absl flags.

    jaxnn --config=mnist1d_mlp[:ARG] --workdir=DIR [--config.FIELD=VALUE ...]
    jaxnn --config=path/to/config.py[:ARG] --workdir=DIR
    python launch.py --config=experiments/mnist1d_mlp.py[:ARG] --workdir=DIR

`--config` names a config file or a shipped experiment (`mnist1d_mlp`, ...). Exit 0 on
success (a run already complete, or whose every member diverged, included); exit 2 with one
line `jaxnn: error: ...` for any user mistake or unusable workdir. See docs/cli.md (flags,
compilation cache, exit codes) and docs/scale.md (multi-host runs).
"""

from __future__ import annotations

import logging as std_logging
import os
import re
import sys
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from jaxnn.parallel.cpu_devices import split_host_into_devices

_CONFIG = config_flags.DEFINE_config_file(
    "config",
    None,
    "Experiment config file, e.g. experiments/mnist1d_mlp.py:smoke.",
    lock_config=True,
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory that receives the run's files.")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a finished run in --workdir.")
_PROGRESS = flags.DEFINE_bool("progress", True, "Show a progress bar.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address",
    "",
    "Multi-host runs: HOST:PORT of process 0, which runs the coordinator; 'auto' lets JAX "
    "detect the cluster (Cloud TPU, Slurm, Open MPI). Empty: a single-process run.",
)
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", 1, "Multi-host runs: how many processes (one per host) take part."
)
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", 0, "Multi-host runs: this process's id, 0..num_processes-1 (0 writes files)."
)
_DISTRIBUTED_TIMEOUT = flags.DEFINE_integer(
    "distributed_timeout_s",
    300,
    "Multi-host runs: seconds to wait for the coordinator and the other processes.",
)


CACHE_VARIABLE = "JAXNN_COMPILATION_CACHE"
_CACHE_OFF = ("off", "0", "false", "no")
_CACHE_ON = ("on", "1", "true", "yes")


def apply_cache_environment(config: ml_collections.ConfigDict, environ: Mapping[str, str]) -> None:
    """Writes the environment's say on the compilation cache into `config.compilation_cache`.

    JAXNN_COMPILATION_CACHE=off (or 0, false, no) turns it off, =on keeps the config's choice,
    =DIR moves it. Else a config without a directory follows $XDG_CACHE_HOME, unless JAX's own
    JAX_COMPILATION_CACHE_DIR is set (`jaxnn.core.compile_cache.enable` keeps that).
    """
    from jaxnn.core import compile_cache

    value = environ.get(CACHE_VARIABLE, "").strip()
    follows_xdg = bool(environ.get("XDG_CACHE_HOME")) and not environ.get(
        "JAX_COMPILATION_CACHE_DIR"
    )
    cache = config.compilation_cache
    if value.lower() in _CACHE_OFF:
        cache.enabled = False
    elif value and value.lower() not in _CACHE_ON:
        cache.dir = value
    elif follows_xdg and not cache.dir:
        cache.dir = str(compile_cache.default_directory(environ))


def show_cache_warnings_in_one_line() -> None:
    """Says JAX's warnings about cache entries it cannot read or write once, in one line."""
    original = warnings.showwarning
    shown = False

    def show(message: Warning | str, *args: Any, **kwargs: Any) -> None:
        nonlocal shown
        if "persistent compilation cache" not in str(message):
            original(message, *args, **kwargs)
        elif not shown:
            import jax

            shown = True
            text = " ".join(str(message).split())
            # jax.config sets its options as attributes at runtime; its class declares none.
            directory = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
            print(
                f"jaxnn: warning: {text}; compiled afresh (if this repeats, delete "
                f"{directory} or set JAXNN_COMPILATION_CACHE=off)",
                file=sys.stderr,
            )

    warnings.showwarning = show


# Libraries whose routine warnings a run keeps off the terminal (jaxnn reports what matters in
# its own lines); `--verbosity=0` (absl's flag) lets their absl logs through.
QUIET_LIBRARIES = ("absl", "orbax", "tensorflow_datasets", "etils")


def keep_library_warnings_quiet() -> None:
    """Holds back the absl logs, Python warnings and unraisable-exception reports (Orbax's
    asynchronous saves at exit) of QUIET_LIBRARIES; JAX's own warnings still show."""
    logging.set_verbosity(logging.WARNING)
    if not flags.FLAGS["verbosity"].present:
        std_logging.getLogger("absl").addFilter(_not_from_quiet_libraries)
    for library in QUIET_LIBRARIES:
        warnings.filterwarnings("ignore", module=rf"{re.escape(library)}(\.|$)")
    sys.unraisablehook = _unraisable_hook(sys.unraisablehook)
    std_logging.getLogger("asyncio").addFilter(_not_about_quiet_futures)
    std_logging.getLogger("matplotlib").addFilter(_not_about_matplotlib_config_dir)


# What matplotlib logs when HOME is not writable: the temporary directory it uses instead is
# all a run's plots need.
MATPLOTLIB_CONFIG_DIR_LINES = ("mkdir -p failed for path", "created a temporary cache directory")


def _not_about_matplotlib_config_dir(record: std_logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(line in message for line in MATPLOTLIB_CONFIG_DIR_LINES)


def _not_about_quiet_futures(record: std_logging.LogRecord) -> bool:
    """Drops asyncio's reports of unretrieved exceptions raised inside QUIET_LIBRARIES (Orbax's
    reads of a checkpoint that jaxnn has already reported unreadable)."""
    exc_info = record.exc_info
    traceback = exc_info[2] if exc_info else None
    while traceback is not None:
        if _in_quiet_library(traceback.tb_frame.f_code.co_filename):
            return False
        traceback = traceback.tb_next
    return True


def _in_quiet_library(location: str) -> bool:
    """Whether a file path or a module name is inside one of QUIET_LIBRARIES."""
    dotted = "." + str(location).replace("/", ".").replace("\\", ".")
    return any(f".{library}." in dotted for library in QUIET_LIBRARIES)


def _not_from_quiet_libraries(record: std_logging.LogRecord) -> bool:
    return not _in_quiet_library(record.pathname)


def _unraisable_hook(default: Callable[[Any], None]) -> Callable[[Any], None]:
    """`sys.unraisablehook` that drops reports about QUIET_LIBRARIES' objects, passes the rest."""

    def hook(unraisable: Any) -> None:
        thing = unraisable.object
        code = getattr(thing, "cr_code", None) or getattr(thing, "gi_code", None)
        location = code.co_filename if code else getattr(thing, "__module__", "")
        if not _in_quiet_library(location or ""):
            default(unraisable)

    return hook


def fail(message: str) -> NoReturn:
    """Prints one line `jaxnn: error: ...` and exits with code 2."""
    print(f"jaxnn: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def _exit_from_thread(message: str) -> None:
    """`fail` for a watchdog thread: the main thread is blocked inside JAX's runtime."""
    print(f"jaxnn: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    os._exit(2)


def _flag_error_text(error: flags.Error) -> str:
    lines = [line.strip() for line in str(error).removeprefix("flag ").splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    if text.endswith("Error whilst parsing config file:") and len(lines) > 1:
        text = f"{text} {lines[-1]}"  # the file's own error is the last line
    if "Non-boolean argument to boolean flag" in text:
        given = text.split(":", 1)[0]
        name = given.split("=", 1)[0]
        return f"{given}: a boolean flag is set with {name} or {name.replace('--', '--no', 1)}"
    return text


def resolve_config(value: str) -> str:
    """`--config`'s value with a shipped experiment's name (`NAME[:ARG]`, or
    `experiments/NAME.py[:ARG]` where the current directory has no such file) made its path.

    A file that exists as written is kept; anything else is left for the config loader to
    refuse, except a bare name that is no shipped experiment, which is refused here.
    """
    path, colon, arg = value.partition(":")
    if not path:
        return value
    try:
        found = Path(path).expanduser()
    except RuntimeError:  # ~user of no such user, or no home directory
        fail(
            f"--config={value}: cannot expand {path.split('/', 1)[0]} (no such user or no home "
            "directory); write the path out in full"
        )
    if found.exists() and not found.is_file():
        what = "not a regular file (a device, pipe or socket)"
        if found.is_dir():
            what = "a directory, not a config file"
        fail(
            f"--config={value}: {path!r} is {what}; name a Python file that defines "
            "get_config, e.g. experiments/mnist1d_mlp.py"
        )
    if found.exists():
        return value
    # Beside the jaxnn package: a checkout's own, or the wheel's copy.
    shipped = Path(__file__).resolve().parent.parent / "experiments"
    name = path.removeprefix("experiments/").removesuffix(".py")
    if "/" not in name and (shipped / f"{name}.py").is_file():
        return f"{shipped / name}.py{colon}{arg}"
    if "/" not in path and not path.endswith(".py"):
        known = ", ".join(sorted(p.stem for p in shipped.glob("*.py") if p.stem != "__init__"))
        fail(
            f"--config={value}: no config file {path!r} and no shipped experiment of that name (shipped: {known})"
        )
    return value


def _with_resolved_config(argv: list[str]) -> list[str]:
    """argv with the value of `--config=VALUE` (or `--config VALUE`) passed through
    `resolve_config`; every other argument as given."""
    resolved = list(argv)
    for i, argument in enumerate(resolved):
        if argument.startswith("--config="):
            resolved[i] = "--config=" + resolve_config(argument.removeprefix("--config="))
        elif argument == "--config" and i + 1 < len(resolved):
            resolved[i + 1] = resolve_config(resolved[i + 1])
    return resolved


def parse_flags(argv: list[str]) -> list[str]:
    """Parses flags, turning every flag or config-override mistake into a one-line error.

    A `--config.FIELD` override makes the parser load the config file here; whatever that
    file raises (it is the user's code: a NameError, an import that fails) is one line.
    """
    # ml_collections warns through absl (a get_config that returned None) before flags are
    # parsed: the one line below says it.
    logging.get_absl_logger().addFilter(_not_from_config_flags)
    try:
        return flags.FLAGS(_with_resolved_config(argv))
    except flags.Error as error:
        fail(_flag_error_text(error))
    except Exception as error:
        fail(config_error_text(error, argv))
    finally:
        logging.get_absl_logger().removeFilter(_not_from_config_flags)


def _not_from_config_flags(record: std_logging.LogRecord) -> bool:
    return not record.pathname.endswith("config_flags.py")


def _config_argument(argv: list[str]) -> str:
    for i, argument in enumerate(argv):
        if argument.startswith("--config="):
            return argument.removeprefix("--config=")
        if argument == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return ""


def config_error_text(error: BaseException, argv: list[str] | None = None) -> str:
    """The one line for a config file that cannot be loaded, or an override it refuses: the
    first cause that is the user's (the exception the file raised), not ml_collections'."""
    cause = error
    while (parent := cause.__cause__ or cause.__context__) is not None:
        cause = parent
    given = _config_argument(argv if argv is not None else sys.argv[1:])
    path = resolve_config(given).partition(":")[0]  # a shipped experiment's name: its file
    if isinstance(cause, FileNotFoundError) or (path and not Path(path).expanduser().is_file()):
        return f"--config={given}: no such config file {path!r}"
    text = " ".join(str(cause).split()) or type(cause).__name__
    if isinstance(cause, SyntaxError | NameError | ImportError | AttributeError | RuntimeError):
        text = f"{type(cause).__name__}: {text}"
    return f"--config={given}: the config file or an override of it fails: {text[:300]}"


def load_config() -> ml_collections.ConfigDict:
    """The `--config` file's config (loaded here when no override loaded it while parsing):
    whatever the file raises, or a `get_config` that returns no ConfigDict, is one line."""
    try:
        config = _CONFIG.value
    except Exception as error:
        fail(config_error_text(error))
    stand_in = getattr(config, "__dict__", {}).get("_error")
    if isinstance(stand_in, BaseException):  # ml_collections' stand-in for a file that failed
        fail(config_error_text(stand_in))
    if config is None:
        fail(
            "--config is required, e.g. --config=experiments/mnist1d_mlp.py or --config=mnist1d_mlp"
        )
    if not isinstance(config, ml_collections.ConfigDict):
        fail(
            f"--config={_config_argument(sys.argv[1:])}: get_config returned a "
            f"{type(config).__name__}; it must return an ml_collections.ConfigDict (start from "
            "jaxnn.config.default_config())"
        )
    return config


def _launch(argv: list[str]) -> None:
    """What a parsed command line does: one `jaxnn.run` (or one line and exit 2)."""
    keep_library_warnings_quiet()
    show_cache_warnings_in_one_line()
    if len(argv) > 1:
        fail(f"unexpected arguments {' '.join(argv[1:])}; options are written --name=value")
    from jaxnn.errors import Interrupted, JaxnnError
    from jaxnn.interrupt import abort_on_signals
    from jaxnn.parallel import hosts
    from jaxnn.runner import run

    try:
        join = (_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
        # Every flag is checked before the (possibly long) wait for the coordinator.
        hosts.check_distributed_args(*join, _DISTRIBUTED_TIMEOUT.value)
        config = load_config()
        # Joining a multi-host run must come before anything touches JAX.
        hosts.initialize_distributed(
            *join, timeout_s=_DISTRIBUTED_TIMEOUT.value, on_timeout=_exit_from_thread
        )
        apply_cache_environment(config, os.environ)
        run(config, _WORKDIR.value or "", overwrite=_OVERWRITE.value, progress=_PROGRESS.value)
    except JaxnnError as error:
        fail(str(error))
    except Interrupted as interrupted:  # SIGTERM/SIGINT: stopped at a chunk boundary, saved
        abort_on_signals()  # a second signal while the process exits still ends it at once
        print(f"jaxnn: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_code)


def main() -> None:
    """The `jaxnn` command and `python launch.py`: parses sys.argv, runs, exits."""
    # Before anything imports JAX: one CPU device per core, so the members train on every core.
    split_host_into_devices(os.environ)
    try:
        app.run(_launch, flags_parser=parse_flags)
    except KeyboardInterrupt:  # Ctrl-C while starting up, before `jaxnn.run` watches signals
        print(
            "jaxnn: interrupted by SIGINT while starting up; nothing was written", file=sys.stderr
        )
        sys.exit(130)


if __name__ == "__main__":
    main()
