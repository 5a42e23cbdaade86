"""Reading and writing jaxnn files through Orbax: format versions, restore targets, read errors.

Every jaxnn checkpoint (a run's `checkpoints/<step>` and the `best/` export) carries JSON
metadata with `format_version` and `jaxnn_version`, checked before any array is read.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import jaxnn
from jaxnn.errors import CheckpointError

FORMAT_VERSION = 1


def version_fields() -> dict[str, Any]:
    """The fields every jaxnn checkpoint's metadata starts with."""
    return {"format_version": FORMAT_VERSION, "jaxnn_version": jaxnn.__version__}


def check_version(metadata: Any, what: str) -> None:
    """Rejects metadata that is not a jaxnn checkpoint's, or of a format this jaxnn cannot read.

    Raises:
      CheckpointError: naming `what`, the format found and the jaxnn version that wrote it.
    """
    if not isinstance(metadata, dict) or "format_version" not in metadata:
        raise CheckpointError(
            f"{what} is not a jaxnn checkpoint (its metadata has no format_version)"
        )
    if metadata["format_version"] != FORMAT_VERSION:
        writer = metadata.get("jaxnn_version", "an unknown version")
        raise CheckpointError(
            f"{what} has format version {metadata['format_version']!r} (written by jaxnn "
            f"{writer}); this jaxnn ({jaxnn.__version__}) reads format {FORMAT_VERSION} only: "
            "read it with the jaxnn version that wrote it"
        )


# How tensorstore reports a failed file operation (it raises ValueError, not OSError).
_OS_ERROR_CODE = re.compile(r"\[os_error_code='(\d+)'\]")
_STORAGE_STATUS = re.compile(r"\b(RESOURCE_EXHAUSTED|PERMISSION_DENIED|UNAVAILABLE|DATA_LOSS):")


def is_storage_error(error: BaseException) -> bool:
    """Whether `error` is the file system's (full, read-only, unreachable), not a bug's."""
    if isinstance(error, OSError):
        return True
    text = str(error)
    return isinstance(error, ValueError) and bool(
        _OS_ERROR_CODE.search(text) or _STORAGE_STATUS.search(text)
    )


def one_line(error: BaseException) -> str:
    """The error's message on one line (a file-system error's reason alone), <= 160 characters."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    if code := _OS_ERROR_CODE.search(str(error)):
        return os.strerror(int(code.group(1)))
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


@contextlib.contextmanager
def reading(what: str) -> Iterator[None]:
    """Turns any failure to read `what` (Orbax, tensorstore and json raise many kinds) into one line."""
    _drop_closed_loop_callbacks()
    try:
        yield
    except CheckpointError:
        raise
    except Exception as error:
        raise CheckpointError(f"{what} is corrupt or incomplete ({one_line(error)})") from error


def _not_from_orbax(record: logging.LogRecord) -> bool:
    return f"{os.sep}orbax{os.sep}" not in record.pathname


@contextlib.contextmanager
def saving() -> Iterator[None]:
    """Keeps a failed save to the one line its caller reports (Orbax logs its traceback from a
    worker thread before the save raises)."""
    logger = logging.getLogger("absl")
    logger.addFilter(_not_from_orbax)
    _drop_closed_loop_callbacks()
    try:
        yield
    finally:
        logger.removeFilter(_not_from_orbax)


def _drop_closed_loop_callbacks() -> None:
    """Silences the reports of array reads or writes still in flight when one of them failed.

    Orbax (0.12.8) closes a restore's or save's event loop at the first failed array; tensorstore
    finishes the others in other threads, and their callbacks would print tracebacks after the
    one-line message. Nothing is lost: that restore or save has failed and is reported.
    """
    if not isinstance(sys.unraisablehook, _ClosedLoopFilter):
        sys.unraisablehook = _ClosedLoopFilter(sys.unraisablehook)
    # The same reads, when their task is collected before the loop closes: asyncio logs each
    # failed one ('Task exception was never retrieved') with its traceback.
    logging.getLogger("asyncio").addFilter(_not_an_unretrieved_read)  # added once


class _ClosedLoopFilter:
    """An unraisable hook that drops 'Event loop is closed' and passes the rest to `previous`."""

    def __init__(self, previous: Callable[[sys.UnraisableHookArgs], object]) -> None:
        self.previous = previous

    def __call__(self, unraisable: sys.UnraisableHookArgs) -> None:
        error = unraisable.exc_value
        if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
            return
        self.previous(unraisable)


def _not_an_unretrieved_read(record: logging.LogRecord) -> bool:
    """Drops asyncio's report of an unawaited task whose tensorstore read failed (a ValueError)."""
    error = record.exc_info[1] if record.exc_info else None
    unretrieved = record.getMessage().startswith("Task exception was never retrieved")
    return not (unretrieved and isinstance(error, ValueError))


def _sharding() -> jax.sharding.Sharding:
    """Where restored arrays go: this process's first device, or replicated over every process."""
    if jax.process_count() == 1:
        return jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    return NamedSharding(Mesh(np.array(jax.devices()), ("d",)), P())


def abstract_tree(tree: Any) -> Any:
    """ShapeDtypeStructs (placed for restoring) for every array or array metadata of `tree`."""
    sharding = _sharding()
    return jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(tuple(leaf.shape), leaf.dtype, sharding=sharding), tree
    )


def partial_restore_args(abstract: Any) -> ocp.args.PyTreeRestore:
    """Orbax arguments that read exactly the arrays `abstract` names, with its shapes."""
    return ocp.args.PyTreeRestore(
        item=abstract,
        restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
        partial_restore=True,
    )


def leaf_shapes(tree: Any) -> dict[str, tuple[int, ...]]:
    """'field/layer/kernel' -> shape for every array of a tree (containers of any kind)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        jax.tree_util.keystr(path, simple=True, separator="/"): tuple(leaf.shape)
        for path, leaf in leaves
        if hasattr(leaf, "shape")
    }


def shape_text(shape: tuple[int, ...] | None) -> str:
    return "absent" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"
