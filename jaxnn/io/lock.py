"""One launch per workdir: `DIR/.lock`, held with flock(2) from the first check to the last write.

The kernel releases an flock when its process ends, however it ends (kill -9 included), so the
next launch takes over a killed launch's lock and says whose it was. The file records its holder
(pid, host, start time) for the message that refuses a second launch while the first is alive,
and is removed on release. A launch into a new workdir takes the lock when it creates it (`hold`).
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
from pathlib import Path
from typing import Any

from jaxnn.errors import WorkdirError

LOCK = ".lock"


class _CannotLock(WorkdirError):
    """The lock file cannot be created or locked (a read-only workdir, a file system without locks)."""


def _describe(owner: dict[str, Any] | None) -> str:
    if not owner:
        return "a launch that is starting"
    return (
        f"pid {owner.get('pid', '?')} on host {owner.get('host', '?')}, started "
        f"{owner.get('started', '?')}"
    )


def _read(fd: int) -> bytes:
    os.lseek(fd, 0, os.SEEK_SET)
    with open(fd, "rb", closefd=False) as file:
        return file.read()


def _parse(content: bytes) -> dict[str, Any] | None:
    try:
        owner = json.loads(content.decode())
    except (UnicodeDecodeError, ValueError):
        return None
    return owner if isinstance(owner, dict) else None


class WorkdirLock:
    """The lock of one workdir, for one launch (a context manager that releases it).

    Attributes:
      stale_owner: the holder recorded in a lock file that nobody held any more (a killed
        launch), once this launch has taken it over; else None.
    """

    def __init__(self, root: str | Path, *, enabled: bool = True):
        self.path = Path(root) / LOCK
        self._enabled = enabled
        self._fd: int | None = None
        self._created = False
        self._committed = False  # this launch has recorded itself and begun to write
        self._unlockable: WorkdirError | None = None
        self.stale_owner: dict[str, Any] | None = None

    def __enter__(self) -> WorkdirLock:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

    def acquire_if_exists(self) -> None:
        """Takes the lock of an existing workdir; a new one is locked by `hold`.

        Raises:
          WorkdirError: another live launch holds it (the message names it).
        """
        if self._enabled and self._fd is None and self.path.parent.is_dir():
            try:
                self._acquire()
            except _CannotLock as error:
                # A read-only workdir may still hold a finished run to report: the error
                # waits until the launch has to write.
                self._unlockable = error

    def hold(self) -> None:
        """Holds the lock (creating the workdir) and records this launch: from here on it writes."""
        if not self._enabled:
            return
        if self._unlockable is not None:
            raise self._unlockable
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WorkdirError(
                f"workdir {self.path.parent} cannot be created: {error.strerror}"
            ) from None
        if self._fd is None:
            self._acquire()
        if not self._committed and not self._created:
            self._record()
        self._committed = True

    def release(self) -> None:
        """Removes the lock file (a stale one taken over too) and releases the lock."""
        if self._fd is None:
            return
        try:
            # Removed while still held: a launch that opened it meanwhile sees it is gone.
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # A read-only workdir keeps the file; the next launch takes it over.
        finally:
            os.close(self._fd)
            self._fd = None

    def _acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                created = False
                try:
                    fd = os.open(self.path, os.O_RDWR)
                except FileNotFoundError:
                    continue  # Its holder removed it in between: try again.
                except OSError as error:
                    raise self._cannot_lock(error) from None
            except OSError as error:
                raise self._cannot_lock(error) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _parse(_read(fd))
                os.close(fd)
                raise WorkdirError(
                    f"workdir {self.path.parent} is in use by another launch ({_describe(owner)}); "
                    "wait for it to finish or stop it, or choose another --workdir"
                ) from None
            except OSError as error:
                os.close(fd)
                raise self._cannot_lock(error) from None
            if self._is_current(fd):
                break
            os.close(fd)  # The file was removed (or replaced) before we locked it.
        self._fd, self._created = fd, created
        if created:
            self._record()
        else:
            previous = _read(fd)
            self.stale_owner = _parse(previous) or ({} if previous else None)

    def _is_current(self, fd: int) -> bool:
        try:
            return os.fstat(fd).st_ino == os.stat(self.path).st_ino
        except FileNotFoundError:
            return False

    def _record(self) -> None:
        owner = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
        }
        assert self._fd is not None
        os.ftruncate(self._fd, 0)
        os.lseek(self._fd, 0, os.SEEK_SET)
        os.write(self._fd, (json.dumps(owner) + "\n").encode())

    def _cannot_lock(self, error: OSError) -> WorkdirError:
        return _CannotLock(
            f"cannot lock workdir {self.path.parent} ({error.strerror or error}); check that it "
            "is writable"
        )

    def describe_stale(self) -> str:
        """A line about the stale lock this launch took over ('' if none)."""
        if self.stale_owner is None:
            return ""
        if not self.stale_owner:
            return "took over a lock file that no running launch holds"
        return f"took over the lock of a launch that is no longer running ({_describe(self.stale_owner)})"
