"""Where a sweep's time goes: a run of the real runner with timers around each phase.

    python benchmarks/profile_cell.py [--preset default] [--set KEY=VALUE ...] [other run flags] [--out DIR]

Runs ``run_benchmarks.py``'s sweep in this process (the flags are the command's own) with wall-clock timers
wrapped around: the fits (``LatentModel.fit`` of every model class; BatchNorm recalibration inside them on
its own line), inference at evaluation (``reconstruct`` / ``infer`` called by a task), the rest of each
task's evaluation (scoring, likelihood or sample statistics), observing the splits (``Operator.observe``),
writing rows, keeping images, saving checkpoints and the final report (tables, plots, grids). It prints one
line per phase (seconds, share of the sweep's wall time, calls) and what was computed more than once:
operators built and splits observed per (task, variant, seed), fits per fit key. Shares of inclusive
timers overlap where phases nest (recalibration inside fit, inference inside evaluation).

Example (the default preset's ABP cells at d=10, seed 0, shortened)::

    python benchmarks/profile_cell.py --preset default --models abp --latent-dims 10 --seeds 0 \\
        --tasks reconstruction,inpainting,projection --set 'task.inpainting.fractions=[0.7]' \\
        --set 'task.inpainting.blocks=[14]' --set 'task.projection.ks=[100]' --set model.abp.n_epochs=10

Measured (2026-12-02, 1 thread, 688 s): inference at evaluation 56 %, fits 42 % (10 epochs; ~4x at the
default 40), BN recalibration 0.4 %, report 0.4 %, images, observing, rows and checkpoints < 0.1 % each.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TIMES: dict[str, float] = collections.defaultdict(float)
CALLS: dict[str, int] = collections.Counter()
OBSERVED: dict[tuple, int] = collections.Counter()
_ACTIVE: collections.Counter = collections.Counter()  # timers running now (an inner call of one is not counted)


def _timed(name: str, fn: Any, when: Any = None) -> Any:
    """``fn`` timed under ``name`` when it is the outermost such call (and ``when()`` holds, if given)."""
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if _ACTIVE[name] or (when is not None and not when()):
            return fn(*args, **kwargs)
        _ACTIVE[name] += 1
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _ACTIVE[name] -= 1
            TIMES[name] += time.perf_counter() - t0
            CALLS[name] += 1
    wrapper.__wrapped__ = fn
    return wrapper


def install() -> None:
    """Wrap the phases (module docstring) in timers, on the classes and modules the runner calls."""
    import genbench.generator_model as gm
    from genbench import plots, report, rundir
    from genbench.operators import Operator
    from genbench.registry import MODELS, TASKS
    from genbench.results import ResultsWriter

    evaluating = lambda: _ACTIVE["evaluation (incl. inference)"] > 0  # noqa: E731 -- a fit's own inference is the fit's
    classes = {klass for spec in MODELS.as_dict().values() for klass in spec.cls.__mro__}
    for klass in classes:
        if "fit" in vars(klass) and not getattr(vars(klass)["fit"], "__isabstractmethod__", False):
            klass.fit = _timed("fit", vars(klass)["fit"])
        for name in ("reconstruct", "infer"):
            if name in vars(klass) and not getattr(vars(klass)[name], "__isabstractmethod__", False):
                setattr(klass, name, _timed("  inference at evaluation", vars(klass)[name], evaluating))
    gm.recalibrate_batchnorm = _timed("  BN recalibration (in fit)", gm.recalibrate_batchnorm)
    for task_cls in {k for t in TASKS.as_dict().values() for k in t.__mro__ if "evaluate" in vars(k)}:
        if not getattr(vars(task_cls)["evaluate"], "__isabstractmethod__", False):
            task_cls.evaluate = _timed("evaluation (incl. inference)", vars(task_cls)["evaluate"])
    observe = Operator.observe

    def counted_observe(self: Any, x: Any) -> Any:
        OBSERVED[(type(self).__name__, repr(self.describe()))] += 1
        return observe(self, x)
    Operator.observe = _timed("observing splits", counted_observe)
    ResultsWriter.append = _timed("writing rows", ResultsWriter.append)
    plots.keep_recoveries = _timed("keeping images", plots.keep_recoveries)
    plots.keep_samples = _timed("keeping images", plots.keep_samples)
    rundir.RunFolder.save_checkpoint = _timed("saving checkpoints", rundir.RunFolder.save_checkpoint)
    report.write_report = _timed("report (tables, plots, grids)", report.write_report)


def main(argv: list[str]) -> int:
    from genbench.cli import main as cli_main

    install()
    t0 = time.perf_counter()
    code = cli_main(argv)
    wall = time.perf_counter() - t0
    print(f"\nprofile of the sweep: {wall:.1f} s wall, exit code {code}")
    print(f"{'phase':<34} {'seconds':>9} {'share':>7} {'calls':>6}")
    for name, seconds in sorted(TIMES.items(), key=lambda kv: -kv[1]):
        print(f"{name:<34} {seconds:9.1f} {seconds / wall:7.1%} {CALLS[name]:6d}")
    twice = {k: n for k, n in OBSERVED.items() if n > 3}  # 3 splits per operator is one observation each
    print(f"operators observed: {len(OBSERVED)}; observed more than once per split: {len(twice)}")
    for (kind, desc), n in twice.items():
        print(f"  {kind} {desc}: {n} observe calls")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
