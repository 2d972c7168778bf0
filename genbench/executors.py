"""Executors: who runs the cells of a sweep. The runner decides *what* runs; an executor decides *where*.

- :class:`LocalExecutor` (``--executor local``, the default): every cell in this process, in the
  runner's order, one fitted model shared by all the cells that can use it.
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

Both yield ``(cell, rows, status, message)`` as cells finish; the runner writes and logs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from genbench.config import ConfigError, build_run_config

if TYPE_CHECKING:
    from genbench.results import ResultRow
    from genbench.runner import Cell, Runner

CellResult = tuple["Cell", list["ResultRow"], str, str]

#: times Ray re-runs a fit group whose worker died before it returned
RAY_MAX_RETRIES = 3
RAY_INSTALL_HINT = "pip install 'genbench[distributed]' (or: pip install ray)"


class LocalExecutor:
    """Runs cells one after the other in this process."""

    name = "local"

    def run(self, runner: Runner, cells: Sequence[Cell]) -> Iterator[CellResult]:
        for i, cell in enumerate(cells):
            yield (cell, *runner.run_cell(cell))
            runner.forget_fits(cells[i + 1:])


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

    def run(self, runner: Runner, cells: Sequence[Cell]) -> Iterator[CellResult]:
        import ray

        started = not ray.is_initialized()
        if started:
            ray.init(address=os.environ.get("RAY_ADDRESS"), log_to_driver=False)
        try:
            gpus = 1 if runner.device.type == "cuda" and ray.cluster_resources().get("GPU", 0) >= 1 else 0
            task = ray.remote(_run_group).options(num_cpus=1, num_gpus=gpus, max_retries=RAY_MAX_RETRIES,
                                                  retry_exceptions=False)
            payload = runner.worker_payload()
            pending = {task.remote(payload, list(group)): group for group in runner.fit_groups(cells)}
            try:
                while pending:
                    done, _ = ray.wait(list(pending), num_returns=1)
                    group = pending.pop(done[0])
                    try:
                        results = ray.get(done[0])
                    except Exception as err:  # noqa: BLE001 -- the group fails, the sweep goes on
                        message = _ray_error_text(err)
                        results = [(cell, runner.failed_rows(cell, message), "failed", message)
                                   for cell in group]
                    yield from results
            finally:
                for ref in pending:  # Ctrl-C or an error in the driver: stop what is still running
                    ray.cancel(ref, force=True)
        finally:
            if started:
                ray.shutdown()


def _ray_error_text(err: Exception) -> str:
    """One line for a Ray task that returned no rows: its worker was lost too often, or the
    group raised outside a cell (e.g. loading the data in the worker)."""
    import ray.exceptions

    from genbench.runner import error_text
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause if isinstance(err.cause, BaseException) else err
        return f"Ray worker raised {error_text(cause)}"
    kind = type(err).__name__
    return f"Ray task lost ({kind}) and retried {RAY_MAX_RETRIES} times: {' '.join(str(err).split())[:300]}"


def _run_group(payload: dict[str, Any], cells: list[Cell]) -> list[CellResult]:
    """Inside a Ray worker: rebuild the runner from the payload and run one fit group."""
    from genbench.runner import Runner  # the worker imports genbench afresh

    from genbench import registry
    registry.load_plugins(payload.get("plugins", ()))
    runner = Runner(build_run_config(payload["config"]), run_id=payload["run_id"], log=lambda _: None,
                    meta=payload["meta"])
    runner.prepare()
    runner.attach(payload["run_dir"])
    return [(cell, *runner.run_cell(cell)) for cell in cells]


EXECUTORS = {"local": LocalExecutor, "ray": RayExecutor}


def get_executor(name: str) -> LocalExecutor | RayExecutor:
    """The executor called ``name``; unknown names and a missing Ray are a :class:`ConfigError`."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; choose from: {', '.join(EXECUTORS)}")
    return EXECUTORS[name]()
