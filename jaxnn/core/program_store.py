"""Compiled programs kept on disk and found again without tracing, lowering or compiling.

JAX's persistent cache (`compile_cache`) still traces and lowers a program to find its key. A
`StoredProgram` keeps each compiled program in that cache's directory (when it is on) under a
key made without tracing (`_key`). The `name` must say everything the traced function depends on
besides its arguments and jaxnn's code, so programs that trace a user's code (which can change
between processes under the same name) are never stored (`storable`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import pickle
import tempfile
import threading
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
from jax.experimental import serialize_executable

from jaxnn.core import compile_cache

SUBDIRECTORY = "jaxnn-programs"
_VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy")


class StoredProgram:
    """A jitted function whose compiled programs are kept in memory and on disk (`stored_jit`);
    called, and `lower(*args).compile()`, as `jax.jit`'s are."""

    def __init__(self, fn: Callable[..., Any], name: str, jit_kwargs: dict[str, Any]) -> None:
        self.fn, self.name, self.jit_kwargs = fn, name, jit_kwargs
        self.jitted = jax.jit(fn, **jit_kwargs)
        self._compiled: dict[str, jax.stages.Compiled] = {}

    def __call__(self, *args: Any) -> Any:
        return self.compiled(*args)(*args)

    def lower(self, *args: Any) -> _Found:
        return _Found(self, args)

    def eval_shape(self, *args: Any) -> Any:
        """The outputs' shapes and dtypes, as `jax.jit`'s `eval_shape` (tracing only)."""
        return self.jitted.eval_shape(*args)

    def compiled(self, *args: Any) -> jax.stages.Compiled:
        """The program compiled for arguments of these shapes (arrays or ShapeDtypeStructs):
        from memory, else from the store, else compiled (and stored)."""
        key = _key(self.name, args)
        found = self._compiled.get(key)
        if found is None:
            found = self._compiled[key] = self._load_or_compile(key, args)
        return found

    def _load_or_compile(self, key: str, args: tuple[Any, ...]) -> jax.stages.Compiled:
        directory = compile_cache.configured_directory()
        if directory is None:
            return self.jitted.lower(*args).compile()
        path = directory / SUBDIRECTORY / f"{key}.bin"
        loaded = _load(path)
        if loaded is not None:
            return loaded
        # An executable that JAX read from its own cache is not stored: serialised again, it
        # can lack the code of some of its kernels. Named after the key, the program is in
        # JAX's cache (keyed by the program's name and code) only when the store held it too,
        # and was since lost: then it compiles once more under a name JAX has not seen.
        for name in (key[:16], f"{key[:16]}_{uuid.uuid4().hex}"):
            named = jax.jit(_named(self.fn, f"jaxnn_program_{name}"), **self.jit_kwargs)
            hits = _JAX_CACHE_HITS.count
            compiled = named.lower(*args).compile()
            if _JAX_CACHE_HITS.count == hits:
                _store(path, compiled)
                break
        return compiled


@dataclasses.dataclass(frozen=True)
class _Found:
    """`StoredProgram.lower`'s answer: `compile()` gives the compiled program."""

    program: StoredProgram
    args: tuple[Any, ...]

    def compile(self) -> jax.stages.Compiled:
        return self.program.compiled(*self.args)


class _ThreadCacheHits(threading.local):
    """The hits of JAX's persistent cache in this thread (a compile runs in its caller's)."""

    count = 0


_JAX_CACHE_HITS = _ThreadCacheHits()


def _count_cache_hit(event: str, **kwargs: Any) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _JAX_CACHE_HITS.count += 1


jax.monitoring.register_event_listener(_count_cache_hit)


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """`fn` under the name `name`, which names the program in JAX's cache."""

    def program(*args: Any) -> Any:
        return fn(*args)

    program.__name__ = program.__qualname__ = name
    return program


def stored_jit(fn: Callable[..., Any], name: str, **jit_kwargs: Any) -> StoredProgram:
    """`jax.jit(fn, **jit_kwargs)`, its compiled programs stored under `name` (module
    docstring: `name` with `jit_kwargs` must determine the traced function)."""
    return StoredProgram(fn, f"{name}|{sorted(jit_kwargs.items())!r}", jit_kwargs)


def storable(module: Any) -> bool:
    """Whether a Flax module's programs may be stored: its class is jaxnn's own (its code is in
    the key's fingerprint) and its repr names plain values only (no object's address)."""
    own = type(module).__module__.split(".")[0] == "jaxnn"
    return own and " at 0x" not in repr(module)


def _device_ids(sharding: jax.sharding.Sharding) -> list[int]:
    """The devices of a sharding, in its mesh's order (the program's device assignment)."""
    mesh = getattr(sharding, "mesh", None)
    devices: list[Any] = list(mesh.devices.flat) if mesh is not None else list(sharding.device_set)
    ids = [int(device.id) for device in devices]
    return ids if mesh is not None else sorted(ids)


def _where(leaf: Any) -> tuple[list[int], str] | None:
    """Where an argument lives (None: on the host, on the default device, or not said)."""
    sharding = getattr(leaf, "sharding", None)
    if sharding is None or sharding.device_set == {jax.devices()[0]}:
        return None
    return _device_ids(sharding), str(getattr(sharding, "spec", ""))


def _key(name: str, args: tuple[Any, ...]) -> str:
    """The program's key: its name, its arguments' tree, shapes, dtypes and placements, and
    what every program depends on (`_process`, JAX's configuration as this thread sees it, the
    x64 switch included, and XLA_FLAGS)."""
    leaves, tree = jax.tree_util.tree_flatten(args)
    shapes = [
        (jax.api_util.shaped_abstractify(leaf).str_short(short_dtypes=False), _where(leaf))
        for leaf in leaves
    ]
    config = {k: v for k, v in jax.config.values.items() if "cache" not in k and "log" not in k}
    parts = (
        name,
        str(tree),
        shapes,
        _process(),
        sorted(config.items(), key=str),
        os.environ.get("XLA_FLAGS"),
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def _process() -> str:
    """What every program depends on that a process cannot change: the packages' versions,
    jaxnn's source and the devices."""
    versions = [metadata.version(package) for package in _VERSIONED]
    devices = [(d.platform, d.device_kind) for d in jax.devices()]
    return repr((versions, _source_fingerprint(), devices))


def _source_fingerprint() -> str:
    package = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + path.read_bytes())
    return digest.hexdigest()


def _load(path: Path) -> jax.stages.Compiled | None:
    """The program stored at `path`, or None (missing, or written by another version)."""
    try:
        serialized, in_tree, out_tree, device_ids = pickle.loads(path.read_bytes())
        by_id = {device.id: device for device in jax.devices()}
        devices = [by_id[i] for i in device_ids]
        return serialize_executable.deserialize_and_load(
            serialized, in_tree, out_tree, execution_devices=devices
        )
    except Exception:  # an unreadable entry is a miss: the program compiles
        return None


def _store(path: Path, compiled: jax.stages.Compiled) -> None:
    """Writes the program at `path` whole (a reader never sees a partial file); a program that
    cannot be serialised or a directory that cannot be written is skipped."""
    orders = [_device_ids(s) for s in jax.tree_util.tree_leaves(compiled.output_shardings)]
    device_ids = max(orders, key=len)
    if any(order != device_ids[: len(order)] for order in orders if len(order) > 1):
        return  # devices in more than one order: which is the program's is not known
    try:
        blob = pickle.dumps((*serialize_executable.serialize(compiled), device_ids))
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".")
    except Exception:  # storing is an optimisation: a failure costs the next process a compile
        return
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(blob)
        os.replace(temporary, path)
    except OSError:
        Path(temporary).unlink(missing_ok=True)
