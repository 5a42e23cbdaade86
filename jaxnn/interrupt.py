"""SIGTERM and SIGINT end a run at the next chunk boundary, with a checkpoint.

`jaxnn.run` watches them for the length of a run; the loop reads the request only between
chunks (`jaxnn.core.loop.drive`'s `should_stop`), so a signal never lands inside a checkpoint
save or a metrics write. A second signal aborts at once (exit 128 + its number): the lock goes
with the process, and the next launch ignores a save cut short.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator

from jaxnn.errors import Interrupted

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Whether, and by which signal, the run was asked to stop."""

    def __init__(self) -> None:
        self.signal_number: int | None = None

    def __call__(self) -> bool:
        """True once a stop signal arrived (the loop's `should_stop`)."""
        return self.signal_number is not None

    def interrupted(self, step: int) -> Interrupted:
        """The exception that ends the run at `step` (only once a signal arrived)."""
        assert self.signal_number is not None
        name = signal.Signals(self.signal_number).name
        return Interrupted(step, name, 128 + self.signal_number)


def _abort(signal_number: int) -> None:
    name = signal.Signals(signal_number).name
    print(
        f"jaxnn: aborted by a second {name}; launch again to resume from the last checkpoint",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signal_number)


def abort_on_signals() -> None:
    """From now on SIGTERM/SIGINT abort the process at once (exit 128 + its number).

    For a launch that stopped on a first signal and is exiting: JAX's teardown takes seconds,
    and Python's SIGINT handler would raise KeyboardInterrupt inside its exit hooks. A signal
    started ignored stays ignored; outside the main thread nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    for number in STOP_SIGNALS:
        if signal.getsignal(number) is not signal.SIG_IGN:
            signal.signal(number, lambda received, _frame: _abort(received))


@contextlib.contextmanager
def stop_at_chunk_boundaries() -> Iterator[StopRequest]:
    """Sees SIGTERM/SIGINT for the `with` block: the first sets the request, a second aborts.

    A thread reads Python's signal wake-up pipe (`signal.set_wakeup_fd`), written as the signal
    arrives even while the main thread is inside a long compile or device computation, where a
    Python handler would wait (and two signals would merge). Outside the main thread (where
    Python cannot install handlers) the request is never set and signals keep their effect.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def watch() -> None:
        while data := os.read(read_fd, 1):
            number = data[0]
            if number not in watched:
                continue
            if request():
                _abort(number)
            request.signal_number = number

    # The work is the watcher's; a handler must be installed for the wake-up byte to be sent.
    # A signal the launch was started ignoring (`nohup`, a background job) stays ignored.
    watched = [n for n in STOP_SIGNALS if signal.getsignal(n) is not signal.SIG_IGN]
    previous = {number: signal.signal(number, lambda *_: None) for number in watched}
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    watcher = threading.Thread(target=watch, name="jaxnn-stop-signals", daemon=True)
    watcher.start()
    try:
        yield request
    finally:
        signal.set_wakeup_fd(previous_fd)
        for number, handler in previous.items():
            signal.signal(number, handler)
        os.close(write_fd)  # the watcher reads the end of the pipe and returns
        watcher.join()
        os.close(read_fd)
