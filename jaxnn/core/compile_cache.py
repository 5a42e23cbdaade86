"""JAX's persistent compilation cache, for programs of every size: a second launch of the same
program reads its compiled chunk from disk instead of compiling it again.

`jaxnn.run` turns it on (config.compilation_cache); `jaxnn.fit` and `jaxnn.fit_ensemble` leave
JAX's process-wide settings alone: call `jaxnn.enable_compilation_cache()` before compiling. The
cache is trusted (JAX runs what it finds there): keep it in a directory only you can write.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache


def default_directory(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/jaxnn/jax` when `environ` (the launcher's os.environ) names
    XDG_CACHE_HOME, else `~/.cache/jaxnn/jax`."""
    cache_home = (environ or {}).get("XDG_CACHE_HOME") or "~/.cache"
    return Path(cache_home, "jaxnn", "jax").expanduser().absolute()


def configured_directory() -> Path | None:
    """The cache directory JAX is set to (by jax.config or JAX_COMPILATION_CACHE_DIR), if any."""
    # A flag JAX's config declares at run time: its type stubs do not name it.
    configured = jax.config.jax_compilation_cache_dir  # type: ignore[attr-defined]
    return Path(configured) if configured else None


def enable(directory: str | Path | None = None) -> Path | None:
    """Points JAX's persistent compilation cache at `directory` (created if missing; `~`
    already expanded), caching programs of every size.

    A named `directory` replaces whatever was set; none (None or "") keeps a directory JAX is
    already configured with (its thresholds untouched), else uses `default_directory()`.
    Returns the directory in use, or None (with one warning line on stderr, JAX's settings
    untouched) when the one asked for cannot be created or written.
    """
    configured = configured_directory()
    if not directory and configured is not None:
        return configured
    path = Path(directory).absolute() if directory else default_directory()
    problem = _unwritable(path)
    if problem:
        print(
            f"jaxnn: warning: compilation cache {path} is not usable ({problem}); compiling "
            "without it (move it with compilation_cache.dir or JAXNN_COMPILATION_CACHE=DIR, "
            "turn it off with JAXNN_COMPILATION_CACHE=off)",
            file=sys.stderr,
        )
        return None
    if configured != path:
        jax.config.update("jax_compilation_cache_dir", str(path))
        # JAX opens its cache once, at the first compile; a new directory needs a fresh open.
        compilation_cache.reset_cache()
    # JAX's defaults skip programs that compile in under a second: a member's chunk often does.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def _unwritable(path: Path) -> str | None:
    """Why entries cannot be written to `path` (created if missing), or None if they can."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        culprit = error.filename and Path(error.filename) != path
        return f"{reason}: {error.filename}" if culprit else reason
    return None
