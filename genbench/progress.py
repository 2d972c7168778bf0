"""Where a sweep is: cells done of all, the wall time of the last cell, time elapsed and an ETA that learns
from the finished cells, for the runner's per-cell lines.

The ETA prices the work left, not the cells left: cells differ by orders of magnitude (a learn-from-corrupted
cell is a fit; a clean-train cell shares its model's one fit; a floor costs nothing; a likelihood cell is
minutes of AIS). Given the plan (each cell left with the key of the fit it uses; ``fitted(key)``: whether that
fit is done, e.g. its checkpoint exists), :class:`Progress` learns from the finished cells' rows what a fit
costs (per model and protocol, then per model) and what an evaluation costs (per model, task and protocol;
then the same task and protocol of the other models; then the model's mean), prices the work done in this
process and the work left with the same prices, and gives ``elapsed x left / done``: worker processes side by
side, a stack of fits made at once and the overheads between cells are in both. A model none of whose cells
has finished has no price: its cells are left out of the estimate, which says so ("+ 3 models not timed yet").
Without a plan (or before anything is priced) it is the mean wall time per cell times the cells left.

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
    import pandas as pd

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
    (see the module docstring). With a plan, pass each finished cell and its rows to :meth:`finished`."""

    def __init__(self, total: int, skipped: int = 0, clock: Callable[[], float] = time.monotonic,
                 plan: Sequence[tuple[Any, tuple]] = (), fitted: Callable[[tuple], bool] = lambda key: False,
                 history: pd.DataFrame | None = None) -> None:
        self.total, self.skipped, self.clock = total, skipped, clock
        self.done = 0  # cells finished by this process
        self.start = self.last = clock()
        self._pending = dict(plan)                                 # cell -> its fit key, until it finishes
        self._finished: list[Any] = []                             # cells finished here
        self._fit_of = {key: (cell.model, cell.protocol) for cell, key in reversed(plan)}  # its first cell's
        self._fitted = fitted
        self._to_fit = {key for key in self._fit_of if not fitted(key)}  # the fits this process makes
        self._made: set[tuple] = set()                             # ... of which done
        self._timed: set[tuple] = set()                            # fits whose seconds were learned
        self._fits: dict[tuple, list[float]] = {}                  # (model, protocol) -> fit seconds
        self._evals: dict[tuple, list[float]] = {}                 # (model, task, protocol) -> eval seconds
        if history is not None:
            self._learn_history(history)

    def _learn_history(self, table: pd.DataFrame) -> None:
        """Prices from the rows of cells finished before (a resumed run's ``results.csv``): each ``ok`` cell's
        evaluation, and each fit once (the cells of one fit carry its seconds; a fit loaded from a checkpoint
        carries the seconds it took when it was made)."""
        ok = table[table["status"] == "ok"]
        cells = ok.groupby(["model", "latent_dim", "seed", "task", "variant", "protocol"], dropna=False, sort=False)
        fits: set[tuple] = set()
        for (model, d, seed, task, _, protocol), rows in cells:
            fit, evaluate = _seconds(list(rows.itertuples(index=False)))  # as a finished cell's rows are read
            self._evals.setdefault((model, task, protocol), []).append(evaluate)
            recorded = math.isfinite(rows["fit_seconds"].iloc[0])
            if recorded and (model, d, seed, protocol, fit) not in fits:  # a shared fit: counted once
                fits.add((model, d, seed, protocol, fit))
                self._fits.setdefault((model, protocol), []).append(float(fit))

    def finished(self, cell: Any = None, rows: Sequence[ResultRow] = ()) -> str:
        """Record one finished cell (with a plan: the cell and its rows); the line's progress text."""
        now = self.clock()
        last, self.last = now - self.last, now
        self.done += 1
        elapsed = now - self.start
        left = self.total - self.skipped - self.done
        text = ""
        if left > 0:
            priced = self._priced(cell, rows, elapsed) if self._pending or self._finished else None
            text = priced or f", about {duration(elapsed / self.done * left)} left"
        return f"cell {duration(last)}; {self.skipped + self.done}/{self.total} done in {duration(elapsed)}{text}"

    def _priced(self, cell: Any, rows: Sequence[ResultRow], elapsed: float) -> str | None:
        key = self._pending.pop(cell, None)
        if key is None:
            return None
        self._finished.append(cell)
        from genbench.results import STATUS_FAILED

        if rows and all(r.status != STATUS_FAILED for r in rows):  # a failed cell's seconds say nothing of its cost
            fit, evaluate = _seconds(rows)
            self._evals.setdefault((cell.model, cell.task, cell.protocol), []).append(evaluate)
            if key not in self._timed:  # a checkpoint's fit too: what that fit cost when it was made
                self._timed.add(key)
                self._fits.setdefault((cell.model, cell.protocol), []).append(fit)
        if key in self._to_fit:
            self._made.add(key)
        self._made |= {k for k in self._to_fit - self._made if self._fitted(k)}  # a stack, another worker
        unknown: set[str] = set()
        done = sum(self._price_eval(c, unknown) for c in self._finished)
        done += sum(self._price_fit(k, unknown) for k in self._made)
        work = sum(self._price_eval(c, unknown) for c in self._pending)
        work += sum(self._price_fit(k, unknown) for k in self._to_fit - self._made)
        if not done > 0:
            return None
        untimed = f" + {len(unknown)} model{'s' if len(unknown) > 1 else ''} not timed yet" if unknown else ""
        return f", about {duration(elapsed * work / done)} left{untimed}"

    def _price_eval(self, cell: Any, unknown: set[str]) -> float:
        own = [v for (m, _, _), vs in self._evals.items() if m == cell.model for v in vs]
        if not own:
            unknown.add(cell.model)
            return 0.0
        same = self._evals.get((cell.model, cell.task, cell.protocol))
        others = [v for (_, t, p), vs in self._evals.items() if (t, p) == (cell.task, cell.protocol) for v in vs]
        return _mean(same or others or own)

    def _price_fit(self, key: tuple, unknown: set[str]) -> float:
        model, protocol = self._fit_of[key]
        own = [v for (m, _), vs in self._fits.items() if m == model for v in vs]
        if not own:
            unknown.add(model)
            return 0.0
        return _mean(self._fits.get((model, protocol)) or own)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


def _seconds(rows: Sequence[ResultRow]) -> tuple[float, float]:
    """(fit seconds, evaluation seconds: the sum over its splits) recorded in a cell's rows; NaN counts 0."""
    fit = rows[0].fit_seconds if math.isfinite(rows[0].fit_seconds) else 0.0
    return fit, sum({r.split: r.eval_seconds for r in rows if math.isfinite(r.eval_seconds)}.values())


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
