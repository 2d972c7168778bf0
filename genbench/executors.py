"""Executors: who runs the cells of a sweep. The runner decides *what* runs; an executor decides *where*.

- :class:`LocalExecutor` (``--executor local``, the default): every cell in this process, in the
  runner's order, one fitted model shared by all the cells that can use it.
- :class:`ProcessExecutor` (``--workers N``): each fit group in one of N local worker processes, cores // N
  torch threads each; rows appended by the driver as groups finish.
- :class:`RayExecutor` (``--executor ray``, optional extra ``pip install 'genbench[distributed]'``):
  each *fit group* (the cells that share one fitted model: every clean-train cell of a
  (model, latent dim, seed), or the cells of one learn-from-corrupted variant) becomes one Ray task,
  asking for one GPU when the cluster has GPUs. A group, not a single cell, is the unit so that a
  model is never trained twice; on a sweep this still gives hundreds of independent tasks.
  A task whose worker dies (killed, out of memory, node lost) is retried by Ray
  (``max_retries``); an exception inside a cell is not a lost worker: the runner already turns it
  into ``status=failed`` rows. Rows come back to the driver, which appends them to the one
  ``results.csv`` as groups finish. Workers write checkpoints and kept images into the run folder
  themselves, so on a multi-machine cluster the run folder must be on a shared file system.

Both receive a :class:`Job` of plain functions (never the runner: executors and runner do not import
each other) and yield ``(cell, rows, status, message)`` as cells finish; the runner writes and logs them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from genbench.config import ConfigError
from genbench.errors import error_text
from genbench.registry import EXECUTORS, register_executor

from genbench.planning import CellResult, Job

if TYPE_CHECKING:
    pass

#: times Ray re-runs a fit group whose worker died before it returned
RAY_MAX_RETRIES = 3
RAY_INSTALL_HINT = "pip install 'genbench[distributed]' (or: pip install ray)"


@register_executor("local")
class LocalExecutor:
    """Runs cells one after the other in this process."""

    name = "local"

    def run(self, job: Job) -> Iterator[CellResult]:
        yield from job.run_local(job.cells)


@register_executor("processes")
class ProcessExecutor:
    """Runs each fit group in one of ``workers`` local worker processes (``--workers N``), ``threads`` torch
    threads each (default: cores // workers, at least 1), so independent fits run side by side; the driver
    appends the rows as groups finish (one writer), resume and failure isolation are the local executor's.
    Every number is seeded from the cell's identity, so the table equals a serial run's at the same thread
    count (tests/test_workers.py). A worker that dies fails the groups it was running (``status=failed``; a
    ``--resume`` runs them again)."""

    name = "processes"

    def __init__(self, workers: int | None = None, threads: int | None = None) -> None:
        cores = os.cpu_count() or 1
        self.workers = max(1, int(workers or cores))
        self.threads = max(1, int(threads or cores // self.workers))

    def run(self, job: Job) -> Iterator[CellResult]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        from genbench.worker import init_worker

        context = multiprocessing.get_context("spawn")  # no forked torch state (threads, CUDA) in the workers
        pool = ProcessPoolExecutor(max_workers=min(self.workers, max(1, len(job.groups))), mp_context=context,
                                   initializer=init_worker, initargs=(self.threads,))
        pending = {pool.submit(job.run_remote, list(group)): group for group in job.groups}
        stopped = True
        try:
            for future in as_completed(pending):
                group = pending[future]
                try:
                    results = future.result()
                except Exception as err:  # noqa: BLE001 -- a lost worker fails its group, the sweep goes on
                    message = f"worker process failed: {error_text(err)}"
                    results = [job.failed(cell, message) for cell in group]
                yield from results
            stopped = False
        finally:
            if stopped:  # Ctrl-C, SIGTERM or an error in the driver: stop now, as a serial run stops
                _stop(pool)
            else:
                pool.shutdown(wait=True)


def _stop(pool: Any) -> None:
    """Cancel every group not started and end the worker processes now: the groups they run would come back
    to a driver that no longer writes rows (their finished fits are already checkpoints)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # CPython's pool keeps them here
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(timeout=10)


@register_executor("ray")
class RayExecutor:
    """Runs each fit group as a Ray task (see the module docstring).

    Connects to the cluster in ``RAY_ADDRESS`` when set, reuses a Ray instance this process already
    started (``ray.init`` before the run, as the tests do), or starts a local one, which it shuts
    down again at the end.
    """

    name = "ray"

    def __init__(self) -> None:
        try:
            import ray  # noqa: F401  -- optional dependency
        except ImportError:
            raise ConfigError(f"--executor ray needs Ray, which is not installed: {RAY_INSTALL_HINT}") from None

    def run(self, job: Job) -> Iterator[CellResult]:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        try:
            gpus = 1 if job.wants_gpu and ray.cluster_resources().get("GPU", 0) >= 1 else 0
            task = ray.remote(_call).options(num_cpus=1, num_gpus=gpus, max_retries=RAY_MAX_RETRIES,
                                             retry_exceptions=False)
            pending = {task.remote(job.run_remote, list(group)): group for group in job.groups}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    group = pending.pop(done[0])
                    try:
                        results = ray.get(done[0])
                    except Exception as err:  # noqa: BLE001 -- the group fails, the sweep goes on
                        message = _ray_error_text(err)
                        results = [job.failed(cell, message) for cell in group]
                    yield from results
            finally:
                for ref in pending:  # Ctrl-C or an error in the driver: stop what is still running
                    ray.cancel(ref, force=True)
        finally:
            if started:
                ray.shutdown()


def _call(fn: Callable[[Any], Any], arg: Any) -> Any:
    """Inside a Ray worker: ``fn(arg)`` (``fn`` arrives pickled by reference)."""
    return fn(arg)


def _ray_error_text(err: Exception) -> str:
    """One line for a Ray task that returned no rows: its worker was lost too often, or the
    group raised outside a cell (e.g. loading the data in the worker)."""
    import ray.exceptions

    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if isinstance(err.cause, BaseException) else err
        return f"Ray worker raised {error_text(cause)}"
    kind = type(err).__name__
    return f"Ray task lost ({kind}) and retried {RAY_MAX_RETRIES} times: {' '.join(str(err).split())[:300]}"


def get_executor(name: str) -> LocalExecutor | RayExecutor:
    """The executor called ``name``; unknown names and a missing Ray are a :class:`ConfigError`."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; choose from: {', '.join(EXECUTORS)}")
    return EXECUTORS.get(name)()
