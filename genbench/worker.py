"""What runs inside a worker process (``--workers N`` or ``--executor ray``): rebuild the runner from a plain
payload and run one fit group. A module-level function, so an executor receives it pickled by reference,
never a Runner; the rebuilt runner is kept for the next group of the same run in this process (the data are
loaded once per worker, not once per group).

Threads: a local worker process sets ``torch.set_num_threads(threads)`` once (:func:`init_worker`), so that
workers x threads <= cores.
"""

from __future__ import annotations

from typing import Any

_RUNNERS: dict[tuple[str, str], Any] = {}  # (run_dir, run_id) -> the Runner rebuilt in this process


def init_worker(threads: int) -> None:
    """A local worker process's start: its torch thread count."""
    import torch

    torch.set_num_threads(max(1, int(threads)))


def run_group_in_worker(payload: dict[str, Any], cells: list) -> list:
    """Rebuild (or reuse) the payload's runner in this process and run ``cells`` (one fit group) there."""
    from genbench.config import build_run_config
    from genbench.registry import load_plugins
    from genbench.rundir import RunFolder
    from genbench.runner import Runner

    key = (payload["run_dir"], payload["run_id"])
    if key not in _RUNNERS:
        load_plugins(payload.get("plugins", ()))
        runner = Runner(build_run_config(payload["config"]), run_id=payload["run_id"], log=lambda _: None,
                        meta=payload["meta"], folder=RunFolder(payload["run_dir"]))
        runner.prepare()
        _RUNNERS.clear()  # one run per worker at a time: drop another run's data
        _RUNNERS[key] = runner
    return list(_RUNNERS[key].run_cells(cells))
