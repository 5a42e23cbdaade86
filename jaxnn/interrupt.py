"""SIGTERM and SIGINT end a run at the next chunk boundary, with a checkpoint.

`jaxnn.run` (and so the launcher) installs the handlers for the length of a run; the library's
loop only reads the request between chunks (`jaxnn.core.loop.drive`'s `should_stop`), so a
signal never lands inside a checkpoint save or a metrics write. A second signal while the
first is being honoured aborts at once (exit 128 + its number): the lock goes with the
process and a save cut short is ignored by the next launch.
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

    def set(self, signal_number: int) -> None:
        self.signal_number = signal_number

    def interrupted(self, step: int) -> Interrupted:
        """The exception that ends the run at `step` (only once a signal arrived)."""
        assert self.signal_number is not None
        name = signal.Signals(self.signal_number).name
        return Interrupted(step, name, 128 + self.signal_number)


def _abort(signal_number: int, frame: object) -> None:
    del frame
    name = signal.Signals(signal_number).name
    print(
        f"jaxnn: aborted by a second {name}; launch again to resume from the last checkpoint",
        file=sys.stderr,
        flush=True,
    )
    os._exit(128 + signal_number)


@contextlib.contextmanager
def stop_at_chunk_boundaries() -> Iterator[StopRequest]:
    """Installs SIGTERM/SIGINT handlers that set the returned request, for the `with` block.

    Outside the main thread (where Python cannot install handlers) the request is never set
    and signals keep their usual effect.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def first(signal_number: int, frame: object) -> None:
        del frame
        request.set(signal_number)
        for number in STOP_SIGNALS:
            signal.signal(number, _abort)

    previous = {number: signal.signal(number, first) for number in STOP_SIGNALS}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
