"""A wall-time limit for one cell (``cell_timeout`` in the config, ``--cell-timeout`` on the command line).

:func:`time_limit` arms ``SIGALRM`` (``signal.setitimer``) for ``seconds`` and raises :class:`CellTimeout`
where the cell's Python code is when it runs out; the runner's failure isolation turns it into ``failed``
rows with the message, and the sweep goes on. Limits: POSIX and the main thread only (elsewhere, e.g.
inside a Ray worker thread, no limit is set); code stuck inside one long C call (a huge matrix product)
is stopped when it returns to Python. A fit shared by several cells counts against the first cell that
needs it; if it times out, every cell of that fit fails with the same message.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class CellTimeout(Exception):
    """The cell ran past its wall-time limit."""


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Raise :class:`CellTimeout` in this block after ``seconds`` of wall time (None: no limit)."""
    usable = hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not seconds or not usable:
        yield
        return

    def alarm(signum: int, frame: object) -> None:
        raise CellTimeout(f"the cell ran past its time limit of {seconds:g} s (cell_timeout)")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
