"""The measuring kit of ``benchmarks/run.py``: the run state and its rows, clocks (median of
repeats after a warm-up, CUDA synchronised), paired timings of ours against a reference, a
least-squares line, peak-memory probes, and the CSV / markdown output with the machine it ran on.

Example::

    >>> p = paired(ctx, lambda: ABP(cfg).fit(obs), lambda: bare.abp_fit(x, **kw))
    >>> p.efficiency   # median reference time / median our time
"""

from __future__ import annotations

import csv
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

COLUMNS = ("benchmark", "what", "ours", "reference", "ratio", "unit", "device", "notes")


@dataclass
class Bench:
    """The state every section reads: device, sizes, repeats, seed, data on the device; rows."""

    device: torch.device
    sizes: Any                                  # run.Sizes: what each section runs
    repeats: int
    seed: int
    x_train: torch.Tensor = field(repr=False)   # (N, C, H, W) on the device
    x_test: torch.Tensor = field(repr=False)
    rows: list[dict[str, Any]] = field(default_factory=list)
    memory_rows: list[dict[str, Any]] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    def add(self, benchmark: str, what: str, ours: float | None, reference: float | None = None,
            ratio: float | None = None, unit: str = "", notes: str = "") -> None:
        self.rows.append(dict(benchmark=benchmark, what=what, ours=ours, reference=reference, ratio=ratio,
                              unit=unit, device=self.device.type, notes=notes))

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(fn: Callable[[], Any], device: torch.device, seed: int) -> tuple[float, Any]:
    """Seconds of one call of ``fn`` (seeded, CUDA synchronised on both sides) and its result."""
    torch.manual_seed(seed)
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


@dataclass
class Paired:
    """Seconds of each repeat of our code and of the reference, and their last results."""

    ours: list[float]
    ref: list[float]
    out_ours: Any = None
    out_ref: Any = None

    @property
    def t_ours(self) -> float:
        return statistics.median(self.ours)

    @property
    def t_ref(self) -> float:
        return statistics.median(self.ref)

    @property
    def efficiency(self) -> float:
        return self.t_ref / self.t_ours

    def describe(self) -> str:
        """'bare / ours' medians with the range of the repeats (a sign of the noise)."""
        return (f"bare {self.t_ref:.3f} s [{min(self.ref):.3f}-{max(self.ref):.3f}] / ours {self.t_ours:.3f} s "
                f"[{min(self.ours):.3f}-{max(self.ours):.3f}], median [range] of {len(self.ours)}")


def paired(ctx: Bench, ours: Callable[[], Any], ref: Callable[[], Any]) -> Paired:
    """Times of ``ours`` and ``ref`` (one warm-up each, then ``repeats`` runs alternating which
    goes first, both under the same seed) and their last results."""
    clock(ours, ctx.device, ctx.seed)
    clock(ref, ctx.device, ctx.seed)
    result = Paired([], [])
    for r in range(ctx.repeats):
        for is_ours in ((True, False) if r % 2 == 0 else (False, True)):
            t, out = clock(ours if is_ours else ref, ctx.device, ctx.seed)
            if is_ours:
                result.ours.append(t)
                result.out_ours = out
            else:
                result.ref.append(t)
                result.out_ref = out
    return result


def repeated(ctx: Bench, fn: Callable[[], Any], warmup: Callable[[], Any] | None = None) -> float:
    """Median seconds of ``fn`` over ``repeats`` runs after one call of ``warmup`` (default ``fn``)."""
    clock(warmup or fn, ctx.device, ctx.seed)
    return statistics.median(clock(fn, ctx.device, ctx.seed)[0] for _ in range(ctx.repeats))


def fit_line(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line y = a x + b: (a, b, R^2)."""
    x_, y_ = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    a, b = np.polyfit(x_, y_, 1)
    ss_tot = float(((y_ - y_.mean()) ** 2).sum())
    r2 = 1.0 - float(((y_ - (a * x_ + b)) ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    return float(a), float(b), r2


# ------------------------------------------------------------------------------------------------ memory
def _reset_rss_peak() -> bool:
    """Reset this process's peak RSS (Linux >= 4.0: ``5`` into /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    """Peak RSS in MiB from getrusage (KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(who).ru_maxrss
    return peak / 2 ** 20 if sys.platform == "darwin" else peak / 1024


@contextmanager
def peak_memory(ctx: Bench, section: str) -> Iterator[None]:
    """Record the peak RSS (and peak CUDA memory) of the block as ``memory`` rows."""
    reset = _reset_rss_peak()
    if ctx.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(ctx.device)
    try:
        yield
    finally:
        how = "peak since the section began" if reset else "process peak so far (could not reset it)"
        ctx.memory_rows.append(dict(benchmark="memory", what=f"{section}: peak RSS", ours=rss_mb(),
                                    reference=None, ratio=None, unit="MiB", device=ctx.device.type,
                                    notes=f"getrusage ru_maxrss, {how}; both sides of the section"))
        if ctx.device.type == "cuda":
            ctx.memory_rows.append(dict(benchmark="memory", what=f"{section}: peak CUDA memory",
                                        ours=torch.cuda.max_memory_allocated(ctx.device) / 2 ** 20,
                                        reference=None, ratio=None, unit="MiB", device=ctx.device.type,
                                        notes="torch.cuda.max_memory_allocated after reset_peak_memory_stats"))


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to n inside the block, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------- output
def system_load() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"


def machine(device: torch.device, load_start: str) -> list[str]:
    """Lines describing where the benchmarks ran (and how busy the machine was)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none used"
    return [f"- CPU: {cpu}; {os.cpu_count()} logical cores ({usable} usable)",
            f"- torch {torch.__version__}, {torch.get_num_threads()} intra-op threads "
            f"(OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}); Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}",
            f"- device: {device.type}; GPU: {gpu}",
            f"- load average (1 / 5 / 15 min): {load_start} at the start, {system_load()} at the end"
            + (" (above the core count: other processes shared the CPU, timings are noisy)"
               if hasattr(os, "getloadavg") and os.getloadavg()[0] > (usable or 1) else "")]


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown(rows: list[dict[str, Any]], header: list[str]) -> str:
    lines = ["# genbench performance benchmarks", "", *header, "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_fmt(row[c]) for c in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({c: ("" if row[c] is None else row[c]) for c in COLUMNS} for row in rows)

