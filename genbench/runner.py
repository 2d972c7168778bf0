"""The runner: turns a :class:`~genbench.config.RunConfig` into rows of the tidy results table.

It is the only place that seeds and picks the device (STYLE.md 11), and it does the same for every
model and task (what runs is planned in :mod:`genbench.planning`, where files go is
:mod:`genbench.rundir`, where cells run is :mod:`genbench.executors`):

1. load the data once (per seed when the split varies with it: :mod:`genbench.rundata`) onto the device;
2. per (task, variant, seed) build one operator (its seed derived from the run seed, so every
   model sees the same masks / projection matrix) and observe each split once, on its own
   random stream (train, test, negative);
3. per fit group fit **once** (or load its checkpoint) and share the fit with every cell of the group;
4. per cell and split, seed, hand the task an :class:`~genbench.task.EvalContext` (the fitted model,
   the operator, the observed and clean splits, a seeded generator) and turn its scores into rows,
   appended to ``results.csv`` in one write per cell (crash-safe: what finished is on disk);
5. isolate failures: an exception or NaN in a cell gives ``status=failed`` rows with the message, an
   operator the model does not support ``status=unsupported``; the sweep goes on.

:meth:`Runner.resume` reopens a run folder: finished cells are skipped, fits are loaded from
their checkpoints, failed, torn and unfinished cells run again, so the final table equals an
uninterrupted run's. Every random draw is seeded from (run seed, cell identity), so a cell's numbers
do not depend on which other cells ran before it. Times are wall-clock seconds (CUDA is synchronised).

Example: ``Runner(resolve_config("quick", overrides=["dry_run=true"])).run().run_dir``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genbench import capacity, plots
from genbench.backbone import set_conv_path
from genbench.config import ConfigError, RunConfig, resolve_device
from genbench.errors import error_text
from genbench.model import LatentModel, hashed_config
from genbench.operators import Identity, Observations, Operator
from genbench.planning import (DRY_RUN_EVAL, SPLIT_STREAMS, Cell, CellResult, FitKey, Job, cell_model_config,
                               derive_seed, fit_groups, fit_key, fit_keys, plan_cells, stack_plan)
from genbench.progress import Progress, SweepBar, describe_cell
from genbench.registry import EXECUTORS, ModelSpec, RegistryError, get_model, get_task, loaded_plugins
from genbench.results import (STATUS_FAILED, STATUS_OK, STATUS_UNSUPPORTED, ResultRow, ResultsWriter, config_hash,
                              versions_string)
from genbench.dataconfig import data_settings
from genbench.rundata import RunData
from genbench.rundir import RunFolder, check_out_dir, checkpoint_saved, fits_source, load_fit, saved_run
from genbench.runlock import RunLock
from genbench.task import LEARN_FROM_CORRUPTED, EvalContext, Task
from genbench.timelimit import CellTimeout, time_limit
from genbench.worker import run_group_in_worker

Log = Callable[[str], None]
__all__ = ["Runner", "RunSummary", "Cell", "derive_seed", "SPLIT_STREAMS", "resolve_device", "error_text"]


_stderr: Log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731 -- sys.stderr at call time


def _write_report(run_dirs: list[Path], log: Log) -> None:
    from genbench.report import write_report  # matplotlib: only once there is a table

    write_report(run_dirs, log=log)


@dataclass
class RunSummary:
    """What a run did: its folder, the cells and which of them failed."""

    run_dir: Path
    n_cells: int = 0
    n_ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (cell label, message)
    n_skipped: int = 0  # cells a resumed run found finished
    seconds: float = 0.0


class Runner:
    """Runs every cell of a config; see the module docstring for the order and the guarantees."""

    def __init__(self, config: RunConfig, *, run_id: str | None = None, log: Log = _stderr,
                 meta: dict[str, Any] | None = None, executor: Any = "local",
                 folder: RunFolder | None = None) -> None:
        self.config = config
        try:  # a registered name or an executor object (genbench.executors: they get a Job, never the runner)
            self.executor = EXECUTORS.get(executor)() if isinstance(executor, str) else executor
        except RegistryError as err:
            raise ConfigError(str(err)) from None
        self.device = resolve_device(config.device)
        set_conv_path(config.conv_path)  # a process setting, like the thread count (also in each worker's runner)
        self.log = log
        if config.amp and self.device.type != "cuda":
            log(f"note: --amp (bf16 autocast) works on CUDA only; on {self.device.type} it is a no-op (float32)")
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
        self.meta = dict(meta or {})
        self.folder = folder  # None until run() creates the folder (a resumed runner has it already)
        self.resuming = folder is not None
        self.tasks: dict[str, Task] = {}
        for name in config.tasks:
            try:
                self.tasks[name] = get_task(name)(config.task.get(name), dry_run=config.dry_run)
            except ValueError as err:
                raise ConfigError(str(err)) from None
        self.n_eval = DRY_RUN_EVAL if config.dry_run else config.n_eval
        self.versions = versions_string(config.conv_path)  # once: every row of the run carries it
        self.data: RunData | None = None
        self.fit_count = 0  # fits actually run (a clean fit is shared by its cells; a checkpoint is loaded)
        self._fits: dict[tuple, tuple[LatentModel | None, float, str]] = {}
        self._fit_caches: dict[tuple, dict[Any, Any]] = {}  # EvalContext.fit_cache of each fit in memory
        self._finished: set[Cell] | None = None  # resuming: see finished_cells
        self._sampled: set[tuple] = set()  # (model, d, seed) with samples kept
        self._stack_of: dict[tuple, Sequence[tuple[Cell, FitKey]]] = {}  # --stack: fit key -> its chunk, unfitted
        self.fits_source: RunFolder | None = None  # --fits-from: another run's checkpoints (set by prepare)

    @property
    def run_dir(self) -> Path:
        if self.folder is None:
            raise RuntimeError("the run folder does not exist yet: call run() first")
        return self.folder.path

    # -- set-up -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the data and check every variant, before anything is written (bad input fails here)."""
        self.data = RunData(self.config, self.tasks, self.device, self.log)
        if self.config.fits_from:  # checked before anything is written
            self.fits_source = fits_source(self.config, self.log)
        if not self.resuming:
            check_out_dir(self.config.out)

    def cells(self) -> list[Cell]:
        """Every cell, grouped so that one clean fit serves all the cells that use it."""
        return plan_cells(self.config, self._prepared().variants)

    def _prepared(self) -> RunData:
        if self.data is None:
            self.prepare()
        return self.data

    def cell_hash(self, cell: Cell, op: Operator | None = None) -> str:
        """The ``config_hash`` of a cell's rows: everything that decides its numbers (data, model config,
        task parameters, variant and operator, images scored). ``op``: the cell's operator, if built."""
        data = self._prepared()
        op = op or data.operator(cell.task, cell.variant, cell.seed)
        model_config = cell_model_config(get_model(cell.model), self.config, cell.latent_dim)
        return config_hash({
            "data": data_settings(data.data_config(cell.seed)), "model": cell.model,
            "model_config": hashed_config(model_config), "task": cell.task, "params": self.tasks[cell.task].params,
            "variant": cell.variant, "operator": op.describe(), "n_eval": self.n_eval})

    def expected_rows(self, cell: Cell) -> int:
        task = self.tasks[cell.task]
        return sum(len(task.metrics_for(s)) for s in task.splits[cell.protocol])

    # -- resume -------------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, *, config: RunConfig | None = None, log: Log = _stderr,
               executor: str = "local") -> Runner:
        """A runner that continues the run in ``run_dir``: finished cells are skipped, fits whose
        checkpoint exists are loaded, the rest runs as it would have. ``config``, when given, must equal
        the run's saved config (``out`` aside; :func:`genbench.rundir.saved_run`), else :class:`ConfigError`."""
        saved, run_id, meta = saved_run(run_dir, config)
        return cls(saved, run_id=run_id, log=log, meta=meta, executor=executor, folder=RunFolder(run_dir))

    def failed_rows(self, cell: Cell, message: str) -> list[ResultRow]:
        """The rows of a cell that failed outside :meth:`run_cell` (e.g. its Ray worker was lost)."""
        task = self.tasks[cell.task]
        return self._rows(cell, task.splits[cell.protocol], "", status=STATUS_FAILED, message=message)

    def worker_payload(self) -> dict[str, Any]:
        """What a worker process needs to rebuild this runner (plain, picklable data)."""
        return {"config": self.config.to_dict(), "run_id": self.run_id, "meta": self.meta,
                "run_dir": str(self.run_dir.resolve()), "plugins": loaded_plugins()}

    # -- the sweep ----------------------------------------------------------------------------------
    def run(self, out: str | Path | None = None) -> RunSummary:
        """Prepare, create the run folder (or reopen it: :meth:`resume`), run every cell that is not
        finished yet through the executor, write the report."""
        data, cells = self._prepared(), self.cells()
        set_conv_path(self.config.conv_path)  # this run's, whatever another runner set since this one was built
        if self.resuming:
            with RunLock(self.folder.path, "resume"):  # one writer per run folder (genbench.runlock)
                return self._run(cells, data, self.finished_cells())
        self.folder = RunFolder.create(out or self.config.out, self.run_id)
        with RunLock(self.folder.path, "write"):
            return self._run(cells, data, None)

    def finished_cells(self) -> set[Cell]:
        """Resuming: the cells already finished in the run folder (checked against this config's hashes,
        once; :meth:`RunFolder.finished_cells`). The CLI asks before it prints anything."""
        if self._finished is None:
            with RunLock(self.folder.path, "resume"):
                self._finished = self.folder.finished_cells(self.cells(), self.expected_rows, self.log,
                                                            self.cell_hash)
        return self._finished

    def _run(self, cells: list[Cell], data: RunData, finished: set[Cell] | None) -> RunSummary:
        """The sweep of :meth:`run`, holding the folder's lock; ``finished`` None: a new run folder."""
        if finished is None:
            self.folder.write_config({"run_id": self.run_id, **self.meta, "config": self.config.to_dict(),
                                      "data_effective": dataclasses.asdict(data.base_config), "data_used": data.used,
                                      "device": str(self.device), "versions": self.versions})
            finished = set()
        writer = ResultsWriter(self.folder.results_csv)
        todo = [c for c in cells if c not in finished]
        summary = RunSummary(self.run_dir, n_cells=len(cells), n_skipped=len(cells) - len(todo))
        if summary.n_skipped:
            self.log(f"resuming {self.run_dir}: {summary.n_skipped} of {len(cells)} cells already finished")
        if self.config.stack > 1:
            self._plan_stacks(todo)
        job = Job(cells=todo, groups=fit_groups(todo, self.config), run_local=self.run_cells,
                  run_remote=functools.partial(run_group_in_worker, self.worker_payload()),
                  failed=lambda cell, message: (cell, self.failed_rows(cell, message), STATUS_FAILED, message),
                  wants_gpu=self.device.type == "cuda")
        start = time.perf_counter()
        progress = Progress(len(cells), summary.n_skipped, plan=list(zip(todo, fit_keys(todo, self.config))),
                            fitted=self._fit_done, history=self.folder.read_results())  # the ETA prices the work left
        bar = SweepBar(len(cells), summary.n_skipped)
        try:
            for i, (cell, rows, status, message) in enumerate(self.executor.run(job), 1):
                writer.append(rows)
                if status == STATUS_FAILED:
                    summary.failed.append((cell.label(), message))
                elif status == STATUS_OK:
                    summary.n_ok += 1
                bar.line(f"[{summary.n_skipped + i}/{len(cells)}] {cell.label()}: "
                         f"{describe_cell(rows, status, message, self.tasks)} ({progress.finished(cell, rows)})", self.log)
        finally:
            bar.close()
            summary.seconds = time.perf_counter() - start
            if self.folder.results_csv.exists():  # summary.md, tables/, plots/, grids/
                self._keep(_write_report, [self.run_dir], log=self.log)
        return summary

    def run_cells(self, cells: Sequence[Cell]) -> Iterator[CellResult]:
        """Run ``cells`` in order in this process; a fit is dropped once no later cell needs it."""
        for i, cell in enumerate(cells):
            try:  # a timeout inside a fit or an evaluation fails its rows there; elsewhere, here
                with time_limit(self.config.cell_timeout):
                    result = self.run_cell(cell)
            except CellTimeout as err:
                result = (self.failed_rows(cell, str(err)), STATUS_FAILED, str(err))
            yield (cell, *result)
            self._forget_fits(cells[i + 1:])

    def _forget_fits(self, remaining: Sequence[Cell]) -> None:
        """Drop fitted models no remaining cell needs (memory)."""
        needed = {(get_model(c.model).fit_name, c.latent_dim, c.seed) for c in remaining}
        for key in [k for k in self._fits if (k[0], k[2], k[3]) not in needed]:
            del self._fits[key]
            self._fit_caches.pop(key, None)

    # -- one cell -----------------------------------------------------------------------------------
    def run_cell(self, cell: Cell) -> tuple[list[ResultRow], str, str]:
        """Fit (or reuse / load the fit), evaluate and score one cell: its rows, status and message."""
        spec = get_model(cell.model)
        task = self.tasks[cell.task]
        op, observed = self._prepared().observations(cell.task, cell.variant, cell.seed)
        view = self._prepared().for_seed(cell.seed).view
        model_config = cell_model_config(spec, self.config, cell.latent_dim)
        cell_hash = self.cell_hash(cell, op)
        splits = task.splits[cell.protocol]
        if not isinstance(op, spec.capabilities.operators):
            message = f"{cell.model} does not support the {type(op).__name__} operator"
            return self._rows(cell, splits, cell_hash, status=STATUS_UNSUPPORTED, message=message), \
                STATUS_UNSUPPORTED, message
        model, fit_seconds, error = self._fit(cell, spec, model_config)
        if model is None:
            return self._rows(cell, splits, cell_hash, status=STATUS_FAILED, message=error,
                              fit_seconds=fit_seconds), STATUS_FAILED, error
        clean = {s: self._eval_images(s, cell.seed) for s in splits if s in SPLIT_STREAMS}  # a task may add its own
        fk = fit_key(cell, spec, model_config)
        ctx = EvalContext(model=model, op=op, observed={s: observed[s][: len(x)] for s, x in clean.items()},
                          clean=clean, generator=torch.Generator(), device=self.device, clock=self._clock,
                          fit_cache=self._fit_caches.setdefault(fk.key, {}),
                          fit_seed=derive_seed(*fk.seed_parts, "evaluate"), seed=cell.seed, data=view)
        view.folder = self.run_dir / "checkpoints" if self.folder and self.config.checkpoints else None
        rows: list[ResultRow] = []
        nan2, flag = (math.nan, math.nan), task.degenerate(op, cell.protocol, spec.capabilities)
        # grids: the test split, and the training split a learn-from-corrupted model learned from
        grid_splits = {"test" if "test" in splits else splits[0]} | ({"train"} if cell.protocol == LEARN_FROM_CORRUPTED
                                                                     else set())
        for i, split in enumerate(splits):
            seed = derive_seed(cell.seed, cell.model, cell.latent_dim, cell.task, cell.variant, cell.protocol,
                               split)
            torch.manual_seed(seed)
            ctx.generator.manual_seed(seed)
            try:
                t0 = self._clock()
                result = task.evaluate(ctx, split)
                eval_seconds = self._clock() - t0
                task.check_scores(result, split)
            except (Exception, SystemExit) as err:  # noqa: BLE001 -- isolate the failure (a plug-in sys.exit too)
                message = error_text(err)  # this split and the ones after it fail
                return rows + self._rows(cell, splits[i:], cell_hash, status=STATUS_FAILED, message=message,
                                         fit_seconds=fit_seconds), STATUS_FAILED, message
            rows += [self._row(cell, split, cell_hash, metric=m, value=result.scores.get(m, math.nan),
                               n_images=result.n_images, fit_seconds=fit_seconds, eval_seconds=eval_seconds,
                               infer_seconds=result.infer_seconds, infer_steps=result.infer_steps,
                               ci_low=result.intervals.get(m, nan2)[0], ci_high=result.intervals.get(m, nan2)[1],
                               flag=flag if m in result.scores else "",
                               **({"message": result.notes.get(m, "")} if m in result.scores else
                                  {"status": STATUS_UNSUPPORTED, "message": result.unsupported[m]}))
                     for m in task.metrics_for(split)]
            if result.recovery is not None and split in grid_splits:
                self._keep(self._keep_recoveries, cell, split, *result.recovery)
        return rows, STATUS_OK, ""

    def _eval_images(self, split: str, seed: int) -> Tensor:
        x = self._prepared().splits(seed)[split]
        return x if self.n_eval is None else x[: self.n_eval]

    def _fit(self, cell: Cell, spec: ModelSpec, model_config: Any) -> tuple[LatentModel | None, float, str]:
        """The fitted model of this cell: from memory, from its checkpoint, or fitted now."""
        fk = fit_key(cell, spec, model_config)
        if fk.key not in self._fits:
            loaded = load_fit((self.folder, self.fits_source), spec, fk.key, self.device, self.log, model_config)
            if loaded is not None:
                self._fits[fk.key] = (*loaded, "")
            elif fk.key in self._stack_of:  # --stack: this fit and the others of its chunk, at once
                self._fit_chunk(self._stack_of[fk.key], keep=True)
            if fk.key not in self._fits:
                train = self._prepared().fit_observations(cell.task, cell.variant, cell.seed, fk.clean)
                self._fits[fk.key] = self._fit_now(spec, model_config, fk.key, fk.seed_parts, train)
        model, seconds, error = self._fits[fk.key]
        if model is not None and model.config != model_config:
            model = model.with_config(model_config)  # e.g. vae-refine on vae's weights
        if fk.clean and model is not None and (cell.model, cell.latent_dim, cell.seed) not in self._sampled:
            self._sampled.add((cell.model, cell.latent_dim, cell.seed))
            self._keep(self._keep_samples, cell, model)
        return model, seconds, error

    def _plan_stacks(self, cells: Sequence[Cell]) -> None:
        """``--stack M``: the fits of ``cells`` that stack (:func:`~genbench.planning.stack_plan`), M at a time.
        In this process (local executor) a chunk is fitted when its first fit is needed, so at most M stacked
        models wait in memory; for worker processes the driver fits every chunk first and hands the fits over as
        checkpoints (so it needs them), keeping none in memory."""
        chunks = stack_plan(cells, self.config, self.config.stack, done=self._fit_done)
        if getattr(self.executor, "name", "local") == "local":
            self._stack_of = {fk.key: chunk for chunk in chunks for _, fk in chunk}
        elif not (self.folder is not None and self.config.checkpoints):
            self.log("warning: --stack hands its fits to worker processes as checkpoints, and checkpoints are off "
                     "(checkpoints=false): every fit runs one at a time")
        else:
            for chunk in chunks:
                self._fit_chunk(chunk, keep=False)

    def _fit_done(self, key: tuple) -> bool:
        return key in self._fits or checkpoint_saved((self.folder, self.fits_source), key)

    def _fit_chunk(self, chunk: Sequence[tuple[Cell, FitKey]], keep: bool) -> None:
        """Fit a chunk's fits not done yet as one stack (``fit_stacked``, genbench/stacked.py), each member
        seeded as :meth:`_fit_now` seeds its fit; record and checkpoint each (``keep``: also as this process's
        fit). A stack that fails (one member diverging stops it) leaves its fits to the one-at-a-time path,
        which fails or succeeds per fit."""
        for _, fk in chunk:
            self._stack_of.pop(fk.key, None)
        todo = [(c, fk) for c, fk in chunk if not self._fit_done(fk.key)]
        if len(todo) < 2:
            return
        spec = get_model(todo[0][0].model)
        model_config = cell_model_config(spec, self.config, todo[0][0].latent_dim)
        train = [self._prepared().fit_observations(c.task, c.variant, c.seed, fk.clean) for c, fk in todo]
        gens = [torch.Generator(self.device).manual_seed(derive_seed(*fk.seed_parts, "fit")) for _, fk in todo]
        t0 = self._clock()
        try:
            models = spec.cls.fit_stacked(model_config, train, gens)
        except (Exception, SystemExit) as err:  # noqa: BLE001 -- the fits then run one at a time
            self.log(f"warning: stacked fit of {len(todo)} {spec.name} models failed ({error_text(err)}); "
                     f"fitting them one at a time")
            return
        seconds = (self._clock() - t0) / len(todo)  # each member's share of the stack's wall time
        self.log(f"stacked fit: {len(todo)} {spec.name} d={todo[0][0].latent_dim} fits at once, {seconds:.1f}s each")
        for (_, fk), model in zip(todo, models):
            self.fit_count += 1
            self._record_fit(fk.key, model, seconds)
            if keep:
                self._fits[fk.key] = (model, seconds, "")

    def _record_fit(self, key: tuple, model: LatentModel, seconds: float) -> None:
        """What the fit holds (genbench.capacity), and the fit itself as a checkpoint."""
        if self.folder is not None:
            self._keep(capacity.record, self.run_dir, self.config.data.name, key, model, seconds)
            if self.config.checkpoints:
                self._keep(self.folder.save_checkpoint, model, seconds, key)

    def _fit_now(self, spec: ModelSpec, model_config: Any, key: tuple, seed_parts: tuple,
                 train: Observations) -> tuple[LatentModel | None, float, str]:
        torch.manual_seed(derive_seed(*seed_parts, "fit"))
        t0 = self._clock()
        self.fit_count += 1
        try:
            model = spec.cls(model_config).fit(train)
        except (Exception, SystemExit) as err:  # noqa: BLE001 -- isolate the failure (a plug-in sys.exit too)
            return None, self._clock() - t0, error_text(err)
        seconds = self._clock() - t0
        self._record_fit(key, model, seconds)
        return model, seconds, ""

    # -- images for the grids (genbench.plots) ---------------------------------------------------
    def _keep(self, fn: Callable[..., None], *args: Any, **kwargs: Any) -> None:
        """Keep images, checkpoints, the report; a failure here is a warning, never a failed cell."""
        try:
            fn(*args, **kwargs)
        except Exception as err:  # noqa: BLE001
            self.log(f"warning: {getattr(fn, '__name__', fn)} failed (the cell is not affected): {error_text(err)}")

    def _keep_recoveries(self, cell: Cell, split: str, obs: Observations, x: Tensor, x_hat: Tensor) -> None:
        plots.keep_recoveries(self.run_dir, obs, x, x_hat, task=cell.task, variant=cell.variant,
                              protocol=cell.protocol, split=split, model=cell.model, latent_dim=cell.latent_dim,
                              seed=cell.seed)

    def _keep_samples(self, cell: Cell, model: LatentModel) -> None:
        """Prior samples and interpolations between the inferred codes of test images (seeded here)."""
        if model.capabilities.latent_code:
            torch.manual_seed(derive_seed(cell.seed, cell.model, cell.latent_dim, "samples"))
            plots.keep_samples(self.run_dir, model, self._prepared().splits(cell.seed)["test"], Identity(seed=cell.seed),
                               model=cell.model, latent_dim=cell.latent_dim, seed=cell.seed)

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    # -- rows ---------------------------------------------------------------------------------------
    def _row(self, cell: Cell, split: str, cell_hash: str, **values: Any) -> ResultRow:
        variant = self._prepared().variant(cell.task, cell.variant)
        return ResultRow(run_id=self.run_id, dataset=self.config.data.name, model=cell.model,
                         task=cell.task, variant=cell.variant, level_name=variant.level_name or "",
                         level=variant.level, level_unit=variant.level_unit if variant.level_name else "",
                         protocol=cell.protocol, split=split, latent_dim=cell.latent_dim, seed=cell.seed,
                         device=str(self.device), config_hash=cell_hash, versions=self.versions, **values)

    def _rows(self, cell: Cell, splits: Sequence[str], cell_hash: str, *,
              status: str, message: str, fit_seconds: float = float("nan")) -> list[ResultRow]:
        """Rows of a cell that produced no score: value NaN, the status and the message."""
        nan = float("nan")
        task = self.tasks[cell.task]
        return [self._row(cell, split, cell_hash, metric=m, value=nan, n_images=0, fit_seconds=fit_seconds,
                          eval_seconds=nan, infer_seconds=nan, infer_steps=0, status=status,
                          message=message)
                for split in splits for m in task.metrics_for(split)]

