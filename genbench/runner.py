"""The runner: turns a :class:`~genbench.config.RunConfig` into rows of the tidy results table.

A *cell* is one (model, latent dim, seed, task, variant, protocol); it is scored on the splits its
task names for that protocol, one row per (split, metric). The runner is the only place that
seeds and picks the device (STYLE.md 11), and it does the same for every model and task:

1. load the data once and move it to the device;
2. per (task, variant, seed) build one operator (its seed derived from the run seed, so every
   model sees the same masks / projection matrix) and observe each split once, on its own
   random stream (train, test, negative);
3. per (model, latent dim, seed) fit **once** on clean training images and share that fit with
   every ``clean-train`` cell; a ``learn-from-corrupted`` cell fits on that variant's observed
   training images;
4. recover, score (``task.score``) and append the cell's rows to ``results.csv`` in one write
   (crash-safe: what finished is on disk); every fit is saved under ``checkpoints/``;
5. isolate failures: an exception or NaN in a cell becomes rows with ``status=failed`` and the
   message, an operator the model does not support becomes ``status=unsupported``; the sweep
   goes on. ``KeyboardInterrupt`` stops after the rows already written.

:meth:`Runner.resume` reopens a run folder: finished cells are skipped, fits are loaded from
their checkpoints, failed, torn and unfinished cells run again, so the final table equals an
uninterrupted run's. Where the cells run is the executor's business
(:mod:`genbench.executors`: this process, or Ray tasks of one fit group each).

Every random draw is seeded from (run seed, cell identity), so a cell's numbers do not depend
on which other cells ran before it. Times are wall-clock seconds (CUDA is synchronised).

Example::

    >>> cfg = resolve_config("quick", overrides=["dry_run=true"])
    >>> summary = Runner(cfg).run()
    >>> summary.run_dir / "results.csv"
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import sys
import time
import traceback
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from genbench import plots
from genbench.config import ConfigError, RunConfig, build_run_config
from genbench.data import DataConfig, load_data
from genbench.executors import get_executor
from genbench.report import write_report
from genbench.model import EXECUTION_FIELDS, DivergenceError, LatentModel, hashed_config
from genbench.operators import Identity, Observations, Operator
from genbench.registry import ModelSpec, get_model, get_task, loaded_plugins
from genbench.results import (COLUMNS, LATENT_DIM, MODEL, PROTOCOL, SEED, STATUS, STATUS_FAILED, STATUS_OK,
                              STATUS_UNSUPPORTED, TASK, VARIANT, ResultRow, ResultsWriter,
                              config_hash, versions_string)
from genbench.task import CLEAN_TRAIN, Task, Variant

#: random stream of each split's observations (see Operator.reset)
SPLIT_STREAMS = {"train": 1, "test": 2, "negative": 3}
#: data sizes of a dry run: every cell, a few images, one step
DRY_RUN_DATA = {"n_train": 64, "n_test": 16, "n_negative": 16}
DRY_RUN_EVAL = 16

Log = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Cell:
    """One (model, latent dim, seed, task, variant, protocol) of a sweep."""

    model: str
    latent_dim: int
    seed: int
    task: str
    variant: str
    protocol: str

    def label(self) -> str:
        return (f"{self.model} d={self.latent_dim} seed={self.seed} "
                f"{self.task}/{self.variant} {self.protocol}")


@dataclass
class RunSummary:
    """What a run did: its folder, the cells and which of them failed."""

    run_dir: Path
    n_cells: int = 0
    n_ok: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)  # (cell label, message)
    n_skipped: int = 0  # cells a resumed run found finished
    seconds: float = 0.0


def derive_seed(*parts: Any) -> int:
    """A stable 31-bit seed from any parts (crc32 of their text): independent of call order."""
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8")) & 0x7FFFFFFF


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when torch sees a GPU, else CPU. ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA GPU on this machine; "
                          "use --device cpu or --device auto")
    return torch.device(name)


def effective_data_config(cfg: RunConfig) -> DataConfig:
    """The data config of a run: a dry run caps the sizes to a few images."""
    if not cfg.dry_run:
        return cfg.data
    caps = {k: min(v, getattr(cfg.data, k) or v) for k, v in DRY_RUN_DATA.items()}
    return dataclasses.replace(cfg.data, **caps)


def check_out_dir(out: str | Path) -> None:
    """Fail early (a :class:`ConfigError`, nothing created) when run folders cannot go under ``out``."""
    out = Path(out)
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ConfigError(f"cannot create the run folder under {out}: {existing} is a file, not a folder; "
                          f"pass --out DIR")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the run folder under {out}: {existing} is not writable; pass --out DIR")


def make_run_dir(out: str | Path, run_id: str) -> Path:
    """Create ``out/run_id`` (``-2``, ``-3`` ... if taken); a non-writable ``out`` is a ConfigError."""
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        for i in range(1, 1000):
            path = out / (run_id if i == 1 else f"{run_id}-{i}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    except OSError as err:
        raise ConfigError(f"cannot create the run folder under {out}: {err.strerror or err}") from None
    raise ConfigError(f"too many runs named {run_id!r} under {out}")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a run folder; a folder that is not a run is a :class:`ConfigError`."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise ConfigError(f"--resume {run_dir}: no such folder")
    if not path.is_file():
        raise ConfigError(f"--resume {run_dir}: not a genbench run folder (no config.json in it)")
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"--resume {run_dir}: cannot read config.json ({err})") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("config"), dict) or "run_id" not in blob:
        raise ConfigError(f"--resume {run_dir}: config.json is not a genbench run config")
    return blob


def build_saved_config(blob: dict[str, Any], run_dir: str | Path) -> RunConfig:
    """The :class:`RunConfig` saved in a run's ``config.json`` (checked like any other config)."""
    try:
        return build_run_config(blob["config"])
    except ConfigError as err:
        raise ConfigError(f"--resume {run_dir}: its config.json no longer resolves: {err}") from None


def config_differences(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ("out",)) -> list[str]:
    """Dotted keys where two configs differ (``ignore``d top-level keys aside)."""
    def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(tree, dict):
            out: dict[str, Any] = {}
            for k, v in tree.items():
                out.update(flat(v, f"{prefix}{k}."))
            return out
        return {prefix.rstrip("."): tree}
    fa, fb = flat(a.to_dict()), flat(b.to_dict())
    keys = sorted(set(fa) | set(fb))
    return [k for k in keys if k.split(".")[0] not in ignore and fa.get(k) != fb.get(k)]


class Runner:
    """Runs every cell of a config; see the module docstring for the order and the guarantees."""

    def __init__(self, config: RunConfig, *, run_id: str | None = None, log: Log = _stderr,
                 meta: dict[str, Any] | None = None, executor: str = "local") -> None:
        self.config = config
        self.executor = get_executor(executor)
        self.resume_dir: Path | None = None
        self.device = resolve_device(config.device)
        self.log = log
        if config.amp and self.device.type != "cuda":
            log(f"note: --amp (bf16 autocast) works on CUDA only; on {self.device.type} it is a no-op (float32)")
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S")
        self.meta = dict(meta or {})
        self.tasks: dict[str, Task] = {}
        for name in config.tasks:
            try:
                self.tasks[name] = get_task(name)(config.task.get(name))
            except ValueError as err:
                raise ConfigError(str(err)) from None
        self.n_eval = DRY_RUN_EVAL if config.dry_run else config.n_eval
        self.versions = versions_string()  # once: every row of the run carries it

    # -- set-up -------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Load the data and check every variant, before anything is written (bad input fails here)."""
        self.data_config = effective_data_config(self.config)
        data = load_data(self.data_config)
        self.image_shape = data.image_shape
        self.splits: dict[str, Tensor] = {s: getattr(data, s).to(self.device) for s in SPLIT_STREAMS}
        self.variants: dict[str, list[Variant]] = {}
        for name, task in self.tasks.items():
            try:
                self.variants[name] = task.variants(self.image_shape)
            except ValueError as err:
                raise ConfigError(f"task {name!r}: {err}") from None
        if self.resume_dir is None:
            check_out_dir(self.config.out)

    def cells(self) -> list[Cell]:
        """Every cell, grouped so that one clean fit serves all the cells that use it."""
        out = []
        for model in self.config.models:
            dims = self.config.latent_dims if get_model(model).cls.uses_latent_dim else (0,)
            for d in dims:
                for seed in self.config.seeds:
                    for task, variants in self.variants.items():
                        for v in variants:
                            out += [Cell(model, d, seed, task, v.name, p) for p in v.protocols]
        return out

    # -- resume -------------------------------------------------------------------------------------
    @classmethod
    def resume(cls, run_dir: str | Path, *, config: RunConfig | None = None, log: Log = _stderr,
               executor: str = "local") -> Runner:
        """A runner that continues the run in ``run_dir``: finished cells are skipped, fits whose
        checkpoint exists are loaded, the rest runs as it would have.

        ``config``, when given, must equal the run's saved config (``out`` aside): resuming with
        other settings would mix two experiments in one table, so it is a :class:`ConfigError`.
        """
        blob = read_run_config(run_dir)
        saved = build_saved_config(blob, run_dir)
        if config is not None:  # the device may change (e.g. a GPU run resumed on the CPU): no hash uses it
            saved = dataclasses.replace(saved, device=config.device)
            differ = config_differences(saved, config)
            if differ:
                raise ConfigError(f"--resume {run_dir}: the config given differs from the run's config.json at "
                                  f"{', '.join(differ)}; resume without config options to continue the run "
                                  f"as it was started, or start a new run")
        meta = {k: v for k, v in blob.items() if k not in ("run_id", "config", "data_effective", "device",
                                                          "versions")}
        runner = cls(saved, run_id=blob["run_id"], log=log, meta=meta, executor=executor)
        runner.resume_dir = Path(run_dir)
        return runner

    def _finished_cells(self, run_dir: Path, cells: Sequence[Cell]) -> set[Cell]:
        """Cells of ``results.csv`` that are complete and not failed; rewrites the file without the
        others (a torn last line, a partial cell, failed cells: they run again)."""
        path = run_dir / "results.csv"
        if not path.exists():
            return set()
        original = path.read_text(encoding="utf-8")
        text = original
        if text and not text.endswith("\n"):
            text = text[: text.rfind("\n") + 1]  # a torn last line (killed mid-write)
        records = list(csv.reader(io.StringIO(text)))
        if not records:  # killed while writing the header: start the table again
            path.unlink()
            return set()
        header, rows = records[0], records[1:]
        if tuple(header) != COLUMNS:
            raise ConfigError(f"--resume {run_dir}: results.csv has columns {header}, expected {list(COLUMNS)}")
        col = {name: i for i, name in enumerate(header)}
        wanted = set(cells)
        cell_of: list[Cell | None] = []
        for row in rows:
            try:
                cell = Cell(row[col[MODEL]], int(row[col[LATENT_DIM]]), int(row[col[SEED]]), row[col[TASK]],
                            row[col[VARIANT]], row[col[PROTOCOL]])
            except (ValueError, IndexError):
                cell = None  # a torn line
            cell_of.append(cell if len(row) == len(header) else None)
        foreign = {c for c in cell_of if c is not None and c not in wanted}
        if foreign:
            self.log(f"warning: results.csv holds {len(foreign)} cell(s) this config does not run "
                     f"(e.g. {next(iter(foreign)).label()}); their rows are kept as they are")
        by_cell: dict[Cell, list[list[str]]] = {}
        for row, cell in zip(rows, cell_of):
            if cell in wanted:
                by_cell.setdefault(cell, []).append(row)
        finished = set()
        for cell, cell_rows in by_cell.items():
            task = self.tasks[cell.task]
            expected = len(task.splits[cell.protocol]) * len(task.metrics)
            if len(cell_rows) == expected and all(r[col[STATUS]] != STATUS_FAILED for r in cell_rows):
                finished.add(cell)
        kept = [row for row, cell in zip(rows, cell_of) if cell in finished or cell in foreign]
        if len(kept) != len(rows) or text != original:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows([header, *kept])
            tmp = path.with_name("results.csv.tmp")
            tmp.write_text(buf.getvalue(), encoding="utf-8")
            os.replace(tmp, path)
        return finished

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
        if not hasattr(self, "splits"):
            self.prepare()
        cells = self.cells()
        if self.resume_dir is not None:
            run_dir = self.resume_dir
            finished = self._finished_cells(run_dir, cells)
        else:
            run_dir = make_run_dir(out or self.config.out, self.run_id)
            self._write_config(run_dir)
            finished = set()
        self.attach(run_dir)
        writer = ResultsWriter(run_dir / "results.csv")
        todo = [c for c in cells if c not in finished]
        summary = RunSummary(run_dir, n_cells=len(cells), n_skipped=len(cells) - len(todo))
        if summary.n_skipped:
            self.log(f"resuming {run_dir}: {summary.n_skipped} of {len(cells)} cells already finished")
        start = time.perf_counter()
        try:
            for i, (cell, rows, status, message) in enumerate(self.executor.run(self, todo), 1):
                writer.append(rows)
                if status == STATUS_FAILED:
                    summary.failed.append((cell.label(), message))
                elif status == STATUS_OK:
                    summary.n_ok += 1
                self.log(f"[{summary.n_skipped + i}/{len(cells)}] {cell.label()}: "
                         f"{self._describe(rows, status, message)}")
        finally:
            summary.seconds = time.perf_counter() - start
            if (run_dir / "results.csv").exists():
                self._keep(write_report, [run_dir])  # summary.md, tables/, plots/, grids/
        return summary

    def attach(self, run_dir: str | Path) -> None:
        """Use ``run_dir`` for checkpoints and kept images; start with no fitted models in memory."""
        self.run_dir = Path(run_dir)
        self._fits: dict[tuple, tuple[LatentModel | None, float, str]] = {}
        self._obs: dict[tuple, tuple[Operator, dict[str, Observations]]] = {}
        self.fit_count = 0  # fits actually run (a clean fit is shared by its cells; a checkpoint is loaded)
        self._sampled: set[tuple[str, int, int]] = set()  # (model, d, seed) with samples kept

    def _write_config(self, run_dir: Path) -> None:
        blob = {"run_id": self.run_id, **self.meta, "config": self.config.to_dict(),
                "data_effective": dataclasses.asdict(self.data_config), "device": str(self.device),
                "versions": self.versions}
        path = run_dir / "config.json"
        tmp = path.with_name("config.json.tmp")
        tmp.write_text(json.dumps(blob, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)

    def forget_fits(self, remaining: Sequence[Cell]) -> None:
        """Drop fitted models no remaining cell needs (memory)."""
        needed = {(get_model(c.model).fit_name, c.latent_dim, c.seed) for c in remaining}
        for key in [k for k in self._fits if (k[0], k[2], k[3]) not in needed]:
            del self._fits[key]

    @staticmethod
    def _describe(rows: list[ResultRow], status: str, message: str) -> str:
        if status != STATUS_OK:
            return f"{status}: {message.splitlines()[0] if message else ''}"
        scores = [f"{r.split} mae {r.value:.4f}" for r in rows if r.metric == "mae"]
        return f"fit {rows[0].fit_seconds:.1f}s, " + ", ".join(scores)

    # -- one cell -----------------------------------------------------------------------------------
    def run_cell(self, cell: Cell) -> tuple[list[ResultRow], str, str]:
        """Fit (or reuse / load the fit), recover and score one cell: its rows, status and message."""
        spec = get_model(cell.model)
        task = self.tasks[cell.task]
        variant = next(v for v in self.variants[cell.task] if v.name == cell.variant)
        op, observed = self._observations(cell, variant)
        model_config = self._model_config(spec, cell.latent_dim)
        cell_hash = config_hash({
            "data": dataclasses.asdict(self.data_config), "model": cell.model,
            "model_config": hashed_config(model_config), "task": cell.task, "params": task.params,
            "variant": cell.variant, "operator": op.describe(), "n_eval": self.n_eval})
        splits = task.splits[cell.protocol]
        if not isinstance(op, spec.cls.supported_operators):
            message = f"{cell.model} does not support the {type(op).__name__} operator"
            return self._rows(cell, splits, cell_hash, status=STATUS_UNSUPPORTED, message=message), \
                STATUS_UNSUPPORTED, message
        model, fit_seconds, error = self._fit(cell, spec, model_config, observed)
        if model is None:
            return self._rows(cell, splits, cell_hash, status=STATUS_FAILED, message=error,
                              fit_seconds=fit_seconds), STATUS_FAILED, error
        rows: list[ResultRow] = []
        for i, split in enumerate(splits):
            x = self._eval_images(split)
            obs = observed[split][: len(x)]
            torch.manual_seed(derive_seed(cell.seed, cell.model, cell.latent_dim, cell.task,
                                          cell.variant, cell.protocol, split))
            try:
                t0 = self._clock()
                x_hat = model.reconstruct(obs)
                infer_seconds = self._clock() - t0
                if not bool(torch.isfinite(x_hat).all()):
                    raise DivergenceError(f"{cell.model}.reconstruct returned non-finite values (NaN or inf) "
                                          f"on the {split} split")
                scores = task.score(obs, x, x_hat)
                eval_seconds = self._clock() - t0
                bad = [m for m in task.metrics if not math.isfinite(scores[m])]
                if bad:
                    raise DivergenceError(f"non-finite {', '.join(bad)} on the {split} split")
            except Exception as err:  # noqa: BLE001 -- isolate the failure in this cell
                message = error_text(err)  # this split and the ones after it fail
                return rows + self._rows(cell, splits[i:], cell_hash, status=STATUS_FAILED, message=message,
                                         fit_seconds=fit_seconds), STATUS_FAILED, message
            rows += [self._row(cell, split, cell_hash, metric=m, value=scores[m], n_images=len(x),
                               fit_seconds=fit_seconds, eval_seconds=eval_seconds,
                               infer_seconds=infer_seconds / len(x), infer_steps=model.infer_steps)
                     for m in task.metrics]
            if split == ("test" if "test" in splits else splits[0]):
                self._keep(self._keep_recoveries, cell, split, obs, x, x_hat)
        return rows, STATUS_OK, ""

    def _model_config(self, spec: ModelSpec, latent_dim: int):
        overrides = dict(self.config.model.get(spec.name, {}))
        if self.config.dry_run:
            overrides.update(spec.cls.dry_run_overrides)
        if spec.cls.uses_latent_dim:
            overrides["latent_dim"] = latent_dim
        for switch in EXECUTION_FIELDS:  # --amp / --compile, for the models that have them
            if switch in {f.name for f in dataclasses.fields(spec.cls.Config)}:
                overrides.setdefault(switch, getattr(self.config, switch))
        return spec.make_config(**overrides)

    def _eval_images(self, split: str) -> Tensor:
        x = self.splits[split]
        return x if self.n_eval is None else x[: self.n_eval]

    def _observations(self, cell: Cell, variant: Variant) -> tuple[Operator, dict[str, Observations]]:
        """The operator of (task, variant, seed) and each split observed once through it."""
        key = (cell.task, cell.variant, cell.seed)
        if key not in self._obs:
            op = variant.make_operator(self.image_shape, derive_seed(cell.seed, cell.task, cell.variant))
            observed = {}
            for split, stream in SPLIT_STREAMS.items():
                op.reset(stream)
                observed[split] = op.observe(self.splits[split])
            self._obs = {k: v for k, v in self._obs.items() if k[2] == cell.seed}  # memory: one seed
            self._obs[key] = (op, observed)
        return self._obs[key]

    def _fit_key(self, cell: Cell, spec: ModelSpec, model_config: Any) -> tuple[tuple, tuple, bool]:
        """(cache key, seed key, clean?) of the fit a cell uses.

        A clean-train cell of a model with a latent code shares the one clean fit of its
        (model, latent dim, seed); any other cell fits on its variant's observations (a reference
        method learns nothing: its "fit" just sees them). Models that share a fit (vae,
        vae-refine) are keyed by the shared name and the config fields that change the fit, and
        the fit is seeded by the shared name.
        """
        clean = cell.protocol == CLEAN_TRAIN and spec.cls.uses_latent_dim
        where = (cell.latent_dim, cell.seed) + (() if clean else (cell.task, cell.variant))
        fit_config = {k: v for k, v in hashed_config(model_config).items()
                      if k not in spec.cls.inference_fields}
        return (spec.fit_name, config_hash(fit_config)) + where, (spec.fit_name,) + where, clean

    def fit_groups(self, cells: Sequence[Cell]) -> list[list[Cell]]:
        """The cells grouped by the fitted model they use, in first-seen order."""
        groups: dict[tuple, list[Cell]] = {}
        for cell in cells:
            spec = get_model(cell.model)
            key, _, _ = self._fit_key(cell, spec, self._model_config(spec, cell.latent_dim))
            groups.setdefault(key, []).append(cell)
        return list(groups.values())

    def _fit(self, cell: Cell, spec: ModelSpec, model_config: Any,
             observed: dict[str, Observations]) -> tuple[LatentModel | None, float, str]:
        """The fitted model of this cell: from memory, from its checkpoint, or fitted now."""
        key, seed_key, clean = self._fit_key(cell, spec, model_config)
        if key not in self._fits:
            self._fits[key] = self._load_checkpoint(spec, key) or self._fit_now(
                spec, model_config, key, seed_key, Identity(seed=cell.seed).observe(self.splits["train"])
                if clean else observed["train"])
        model, seconds, error = self._fits[key]
        if model is not None and model.config != model_config:
            model = model.with_config(model_config)  # e.g. vae-refine on vae's weights
        if clean and model is not None and (cell.model, cell.latent_dim, cell.seed) not in self._sampled:
            self._sampled.add((cell.model, cell.latent_dim, cell.seed))
            self._keep(self._keep_samples, cell, model)
        return model, seconds, error

    def _fit_now(self, spec: ModelSpec, model_config: Any, key: tuple, seed_key: tuple,
                 train: Observations) -> tuple[LatentModel | None, float, str]:
        torch.manual_seed(derive_seed(*seed_key, "fit"))
        t0 = self._clock()
        self.fit_count += 1
        try:
            model = spec.cls(model_config).fit(train)
        except Exception as err:  # noqa: BLE001 -- isolate the failure in this cell
            return None, self._clock() - t0, error_text(err)
        seconds = self._clock() - t0
        if self.config.checkpoints:
            self._keep(self._save_checkpoint, model, seconds, key)
        return model, seconds, ""

    def checkpoint_path(self, key: tuple) -> Path:
        """``checkpoints/<fit name>__<fit config hash>__d<d>__s<seed>[__<task>__<variant>].pt``."""
        name, hash_, d, seed, *variant = key
        return self.run_dir / "checkpoints" / ("__".join([name, hash_, f"d{d}", f"s{seed}", *variant]) + ".pt")

    def _save_checkpoint(self, model: LatentModel, seconds: float, key: tuple) -> None:
        """``torch.save`` of the config and state dicts (temporary name, then rename)."""
        path = self.checkpoint_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save({"config": dataclasses.asdict(model.config), "state": model.state_dict(),
                    "fit_seconds": seconds}, tmp)
        os.replace(tmp, path)

    def _load_checkpoint(self, spec: ModelSpec, key: tuple) -> tuple[LatentModel, float, str] | None:
        """The fit saved by an earlier (killed) process of this run, if there is a readable one."""
        path = self.checkpoint_path(key)
        if not path.exists():
            return None
        try:
            blob = torch.load(path, map_location=self.device, weights_only=True)
            model = spec.cls(spec.cls.Config(**blob["config"]))
            model.load_state_dict(blob["state"])
            seconds = float(blob["fit_seconds"])
        except Exception as err:  # noqa: BLE001 -- a torn or foreign file: fit again
            self.log(f"warning: cannot load checkpoint {path.name} ({error_text(err)}); fitting again")
            return None
        return model, seconds, ""

    # -- images for the grids (genbench.plots) ---------------------------------------------------
    def _keep(self, fn: Callable[..., None], *args: Any) -> None:
        """Keep images for the grids; a failure here is a warning, never a failed cell."""
        try:
            fn(*args)
        except Exception as err:  # noqa: BLE001
            self.log(f"warning: {fn.__name__} failed (the cell is not affected): {error_text(err)}")

    def _keep_recoveries(self, cell: Cell, split: str, obs: Observations, x: Tensor, x_hat: Tensor) -> None:
        n = min(plots.N_KEEP, len(x))
        path = plots.recovery_path(self.run_dir, cell.task, cell.variant, cell.protocol, split, cell.model,
                                   cell.latent_dim, cell.seed)
        plots.save_tensors(path, {"x": x[:n], "observed": obs[:n].naive_inverse(), "x_hat": x_hat[:n]})

    def _keep_samples(self, cell: Cell, model: LatentModel) -> None:
        """Prior samples and interpolations between the inferred codes of test images."""
        torch.manual_seed(derive_seed(cell.seed, cell.model, cell.latent_dim, "samples"))
        kept: dict[str, Tensor] = {}
        try:
            kept["samples"] = model.sample(plots.N_SAMPLES)
        except NotImplementedError:
            pass
        x = self.splits["test"][: 2 * plots.N_PAIRS]
        if len(x) >= 2:
            z = model.infer(Identity(seed=cell.seed).observe(x))
            for kind in ("linear", "spherical"):
                path = plots.interpolate(z[0::2][: len(z) // 2], z[1::2], kind=kind)
                kept[kind] = model.decode(path).clamp(-1, 1)
        plots.save_tensors(plots.samples_path(self.run_dir, cell.model, cell.latent_dim, cell.seed), kept)

    def _clock(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()

    # -- rows ---------------------------------------------------------------------------------------
    def _row(self, cell: Cell, split: str, cell_hash: str, **values: Any) -> ResultRow:
        return ResultRow(run_id=self.run_id, dataset=self.config.data.name, model=cell.model,
                         task=cell.task, variant=cell.variant, protocol=cell.protocol, split=split,
                         latent_dim=cell.latent_dim, seed=cell.seed, device=str(self.device),
                         config_hash=cell_hash, versions=self.versions, **values)

    def _rows(self, cell: Cell, splits: list[str] | tuple[str, ...], cell_hash: str, *,
              status: str, message: str, fit_seconds: float = float("nan")) -> list[ResultRow]:
        """Rows of a cell that produced no score: value NaN, the status and the message."""
        nan = float("nan")
        metrics = self.tasks[cell.task].metrics
        return [self._row(cell, split, cell_hash, metric=m, value=nan, n_images=0, fit_seconds=fit_seconds,
                          eval_seconds=nan, infer_seconds=nan, infer_steps=0, status=status,
                          message=message)
                for split in splits for m in metrics]


def error_text(err: BaseException) -> str:
    """``Type: message`` and the innermost frame, on one line, for the table."""
    frames = traceback.extract_tb(err.__traceback__)
    where = f" (at {Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
    return f"{type(err).__name__}: {' '.join(str(err).split())}{where}"
