"""Where a sweep is: cells done of all, the wall time of the last cell, time elapsed and an ETA that learns
from the finished cells (their mean wall time times the cells left), for the runner's per-cell lines.

The lines are plain text, one per finished cell, so they read the same on a terminal, in a CI log and in a
file (``2> sweep.log``). The clock is injectable (tests use a fake one).

Example::

    >>> p = Progress(total=36)
    >>> p.finished()                 # after each cell
    'cell 6m40s; 1/36 done in 6m40s, about 3h53m left'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genbench.results import ResultRow


def duration(seconds: float) -> str:
    """``42s``, ``6m40s``, ``3h53m``."""
    seconds = round(max(0.0, float(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """Counts finished cells of ``total`` (``skipped`` of them finished before: a resume) and estimates the rest."""

    def __init__(self, total: int, skipped: int = 0, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.skipped, self.clock = total, skipped, clock
        self.done = 0  # cells finished by this process
        self.start = self.last = clock()

    def finished(self) -> str:
        """Record one finished cell; the line's progress text."""
        now = self.clock()
        cell, self.last = now - self.last, now
        self.done += 1
        elapsed = now - self.start
        left = self.total - self.skipped - self.done
        eta = elapsed / self.done * left
        tail = f", about {duration(eta)} left" if left > 0 else ""
        return f"cell {duration(cell)}; {self.skipped + self.done}/{self.total} done in {duration(elapsed)}{tail}"


class SweepBar:
    """A sweep-level tqdm bar (cells done of all, tqdm's rate and ETA) on stderr when it is a terminal; in a
    CI log or a file it is off and the per-cell lines say the same in plain text. :meth:`line` prints a
    per-cell line above the bar without tearing it."""

    def __init__(self, total: int, done: int = 0) -> None:
        import sys

        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=done, desc="sweep", unit="cell", file=sys.stderr, leave=False,
                        disable=None, dynamic_ncols=True)  # disable=None: off unless stderr is a terminal

    def line(self, text: str, log: Callable[[str], None]) -> None:
        if self.bar.disable:
            log(text)
        else:
            self.bar.write(text, file=self.bar.fp)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def describe_cell(rows: Sequence[ResultRow], status: str, message: str, tasks: Mapping[str, Any]) -> str:
    """The middle of a cell's progress line: its status and message, or its fit and evaluation seconds and the
    first metric of its task (``tasks``: the run's tasks by name) on each split."""
    import math

    from genbench.results import STATUS_OK

    if status != STATUS_OK:
        return f"{status}: {(message.splitlines() or [''])[0]}"
    first = tasks[rows[0].task].metric_names()[0]
    scores = [f"{r.split} {first} {r.value:.4f}" for r in rows if r.metric == first and r.status == STATUS_OK]
    evaluate = sum({r.split: r.eval_seconds for r in rows if math.isfinite(r.eval_seconds)}.values())
    return f"fit {rows[0].fit_seconds:.1f}s, evaluate {evaluate:.1f}s, " + ", ".join(scores)
