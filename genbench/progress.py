"""Where a sweep is: cells done of all, the wall time of the last cell, time elapsed and an ETA that learns
from the finished cells, for the runner's per-cell lines.

The ETA prices the work left, not the cells left: cells differ by orders of magnitude (a learn-from-corrupted
cell is a fit; a clean-train cell shares its model's one fit; a floor costs nothing; a likelihood cell is
minutes of AIS). Given the plan (each cell left with the key of the fit it uses, and which fits are done
already), :class:`Progress` learns from each finished cell's rows what a fit of its model costs (once per
fit) and what its evaluation costs (per model, task and protocol; an unseen one is priced by the same task and
protocol of the other models, then by everything seen), prices every fit and evaluation left, and scales
that by this process's wall seconds per recorded second so far (worker processes side by side, overheads).
Without a plan it is the mean wall time per cell times the cells left.

The lines are plain text, one per finished cell, so they read the same on a terminal, in a CI log and in a
file (``2> sweep.log``). The clock is injectable (tests use a fake one).

Example::

    >>> p = Progress(total=36)
    >>> p.finished()                 # after each cell
    'cell 6m40s; 1/36 done in 6m40s, about 3h53m left'
"""

from __future__ import annotations

import math
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
    """Counts finished cells of ``total`` (``skipped`` of them finished before: a resume) and estimates the rest.

    ``plan``: ``(cell, fit key)`` of every cell this process will run; ``fitted(key)``: whether that fit is done
    already (a checkpoint), so it costs nothing now. With a plan, pass each finished cell and its rows to
    :meth:`finished` (see the module docstring)."""

    def __init__(self, total: int, skipped: int = 0, clock: Callable[[], float] = time.monotonic,
                 plan: Sequence[tuple[Any, tuple]] = (), fitted: Callable[[tuple], bool] = lambda key: False) -> None:
        self.total, self.skipped, self.clock = total, skipped, clock
        self.done = 0  # cells finished by this process
        self.start = self.last = clock()
        self._key = dict(plan)                                     # cell -> its fit key
        self._fit_of = {key: (cell.model, cell.protocol) for cell, key in reversed(plan)}  # first cell's
        self._unfitted = {key for _, key in plan if not fitted(key)}
        self._fits: dict[tuple, list[float]] = {}                  # (model, protocol) -> fit seconds seen
        self._evals: dict[tuple, list[float]] = {}                 # (model, task, protocol) -> eval seconds seen
        self._spent = 0.0                                          # recorded seconds of the cells finished here

    def finished(self, cell: Any = None, rows: Sequence[ResultRow] = ()) -> str:
        """Record one finished cell (with a plan: the cell and its rows); the line's progress text."""
        now = self.clock()
        last, self.last = now - self.last, now
        self.done += 1
        elapsed = now - self.start
        left = self.total - self.skipped - self.done
        eta = self._priced(cell, rows, elapsed) if self._key else None
        if eta is None:
            eta = elapsed / self.done * left
        tail = f", about {duration(eta)} left" if left > 0 else ""
        return f"cell {duration(last)}; {self.skipped + self.done}/{self.total} done in {duration(elapsed)}{tail}"

    def _priced(self, cell: Any, rows: Sequence[ResultRow], elapsed: float) -> float | None:
        key = self._key.pop(cell, None)
        if key is not None and rows:
            fit, evaluate = _seconds(rows)
            if key in self._unfitted:  # the first cell of a fit run now pays for it
                self._unfitted.discard(key)
                self._fits.setdefault((cell.model, cell.protocol), []).append(fit)
                self._spent += fit
            self._evals.setdefault((cell.model, cell.task, cell.protocol), []).append(evaluate)
            self._spent += evaluate
        if self._spent <= 0 or not self._evals:
            return None
        work = sum(_price(self._evals, (c.model, c.task, c.protocol)) for c in self._key)
        work += sum(_price(self._fits, self._fit_of[k]) for k in self._unfitted if k in self._fit_of)
        return elapsed / self._spent * work


def _seconds(rows: Sequence[ResultRow]) -> tuple[float, float]:
    """(fit seconds, evaluation seconds: the sum over its splits) recorded in a cell's rows; NaN counts 0."""
    fit = rows[0].fit_seconds if math.isfinite(rows[0].fit_seconds) else 0.0
    return fit, sum({r.split: r.eval_seconds for r in rows if math.isfinite(r.eval_seconds)}.values())


def _price(seen: Mapping[tuple, list[float]], key: tuple) -> float:
    """The mean of ``seen[key]``; else of the entries that share its last fields (the task and protocol: other
    models), else of everything seen (0 when nothing is)."""
    for n in range(len(key)):
        values = [v for k, vs in seen.items() if k[n:] == key[n:] for v in vs]
        if values:
            return sum(values) / len(values)
    values = [v for vs in seen.values() for v in vs]
    return sum(values) / len(values) if values else 0.0


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
    from genbench.results import STATUS_OK

    if status != STATUS_OK:
        return f"{status}: {(message.splitlines() or [''])[0]}"
    first = tasks[rows[0].task].metric_names()[0]
    scores = [f"{r.split} {first} {r.value:.4f}" for r in rows if r.metric == first and r.status == STATUS_OK]
    return f"fit {rows[0].fit_seconds:.1f}s, evaluate {_seconds(rows)[1]:.1f}s, " + ", ".join(scores)
