"""The run folder: ``config.json``, ``results.csv`` (through :mod:`genbench.results`), checkpoints and
kept images, each written atomically (:mod:`genbench.fsutil`).

::

    results/<run_id>/
      config.json          the resolved config, run id, command, plug-ins, effective data, device, versions
      results.csv          the tidy table (one writer appends whole cells)
      checkpoints/         one file per fit (LatentModel.save), loaded again by --resume
      images/              small tensors for the grids, listed in images/manifest.jsonl

:class:`RunFolder` opens or creates one; :meth:`RunFolder.finished_cells` is how ``--resume`` learns
what is done: it reads ``results.csv`` with the results module's tolerant reader, keeps the rows of
complete, non-failed cells (and of cells the config does not run) and drops the rest, so they run
again. Nothing in a run folder is executed or imported by this module.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genbench.config import ConfigError, RunConfig, build_run_config
from genbench.errors import error_text
from genbench.fsutil import write_text
from genbench.planning import Cell
from genbench.results import (CONFIG_HASH, LATENT_DIM, MODEL, PROTOCOL, SEED, STATUS, STATUS_FAILED, TASK,
                              VARIANT, read_raw_rows, rewrite_rows)

if TYPE_CHECKING:
    import torch

    from genbench.model import LatentModel
    from genbench.registry import ModelSpec

Log = Callable[[str], None]


def check_out_dir(out: str | Path) -> None:
    """Fail early (a :class:`ConfigError`, nothing created) when run folders cannot go under ``out``."""
    out = Path(out)
    existing = next(p for p in (out, *out.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise ConfigError(f"cannot create the run folder under {out}: {existing} is a file, not a folder; "
                          f"pass --out DIR")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"cannot create the run folder under {out}: {existing} is not writable; pass --out DIR")


def read_run_config(run_dir: str | Path, option: str = "--resume") -> dict[str, Any]:
    """The ``config.json`` of a run folder; a folder that is not a run is a :class:`ConfigError` (its
    message starts with ``option``, the command-line option that named the folder)."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise ConfigError(f"{option} {run_dir}: no such folder")
    if not path.is_file():
        raise ConfigError(f"{option} {run_dir}: not a genbench run folder (no config.json in it)")
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{option} {run_dir}: cannot read config.json ({err})") from None
    if not isinstance(blob, dict) or not isinstance(blob.get("config"), dict) or "run_id" not in blob:
        raise ConfigError(f"{option} {run_dir}: config.json is not a genbench run config")
    blob["config"].setdefault("conv_path", "native")  # saved before the setting existed: the native path ran
    return blob


def build_saved_config(blob: dict[str, Any], run_dir: str | Path, option: str = "--resume") -> RunConfig:
    """The :class:`RunConfig` saved in a run's ``config.json`` (checked like any other config)."""
    try:
        return build_run_config(blob["config"])
    except ConfigError as err:
        raise ConfigError(f"{option} {run_dir}: its config.json no longer resolves: {err}") from None


def saved_run(run_dir: str | Path, config: RunConfig | None = None) -> tuple[RunConfig, str, dict[str, Any]]:
    """The saved config, run id and meta data of the run in ``run_dir``, for :meth:`Runner.resume`.

    ``config``, when given, must equal the run's saved config (``out`` aside): resuming with other
    settings would mix two experiments in one table, so it is a :class:`ConfigError`."""
    blob = read_run_config(run_dir)
    saved = build_saved_config(blob, run_dir)
    if config is not None:  # the device may change (e.g. a GPU run resumed on the CPU): no hash uses it
        saved = dataclasses.replace(saved, device=config.device, stack=config.stack)  # rounding only: may change
        differ = config_differences(saved, config)
        if differ:
            raise ConfigError(f"--resume {run_dir}: the config given differs from the run's config.json at "
                              f"{', '.join(differ)}; resume without config options to continue the run "
                              f"as it was started, or start a new run")
    meta = {k: v for k, v in blob.items()
            if k not in ("run_id", "config", "data_effective", "data_used", "device", "versions")}
    return saved, blob["run_id"], meta


def config_differences(a: RunConfig, b: RunConfig, ignore: tuple[str, ...] = ("out",)) -> list[str]:
    """Dotted keys where two configs differ (``ignore``d top-level keys aside)."""
    from genbench.replicates import flatten

    fa, fb = flatten(a.to_dict()), flatten(b.to_dict())
    keys = sorted(set(fa) | set(fb))
    return [k for k in keys if k.split(".")[0] not in ignore and fa.get(k) != fb.get(k)]


def fits_source(config: RunConfig, log: Log) -> RunFolder:
    """The run folder ``config.fits_from`` names, opened for its checkpoints (read only).

    A fit depends on the data (the split, the images), on the operator a learn-from-corrupted fit learned
    through (the task's settings) and on the model's fit fields. The checkpoints are keyed by the last, so the
    source run must equal this one in ``data``, ``dry_run`` and the settings of every task this run runs, or
    its fits would be another experiment's: a :class:`ConfigError` naming the keys that differ. A fit whose fit
    fields differ from this run's model config has another key, so the source holds no checkpoint of it and it
    runs here; inference-only fields (``infer_steps``, ``infer_init`` ...) may differ: that is what it is for.
    """
    option, run_dir = "--fits-from", config.fits_from
    source = build_saved_config(read_run_config(run_dir, option), run_dir, option)
    differ = [k for k in config_differences(source, config)
              if k.split(".")[0] in ("data", "dry_run") or (k.startswith("task.") and k.split(".")[1] in config.tasks)]
    if differ:
        raise ConfigError(f"{option} {run_dir}: its fits learned from other data or task settings than this run's "
                          f"(differs at {', '.join(differ)}); they cannot serve this run")
    if not (Path(run_dir) / "checkpoints").is_dir():
        raise ConfigError(f"{option} {run_dir}: the run kept no checkpoints (checkpoints=false, or they were not "
                          f"copied with it); there is nothing to load")
    log(f"fits from {run_dir}: its checkpoints serve where they match this run's fit config")
    return RunFolder(run_dir)


def load_fit(folders: Sequence[RunFolder | None], spec: ModelSpec, key: tuple, device: torch.device, log: Log,
             config: Any = None) -> tuple[LatentModel, float] | None:
    """The fit from the first of ``folders`` (this run's own, then ``--fits-from``'s; None: absent) that holds a
    usable checkpoint of it (:meth:`RunFolder.load_checkpoint`); None: it is fitted."""
    for folder in (f for f in folders if f is not None):
        if (loaded := folder.load_checkpoint(spec, key, device, log, config)) is not None:
            return loaded
    return None


def checkpoint_saved(folders: Sequence[RunFolder | None], key: tuple) -> bool:
    """Whether one of ``folders`` holds a checkpoint of the fit ``key``."""
    return any(f is not None and f.checkpoint_path(key).exists() for f in folders)


class RunFolder:
    """One run folder (see the module docstring). :meth:`create` makes a new one, the constructor
    opens an existing one."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @classmethod
    def create(cls, out: str | Path, run_id: str) -> RunFolder:
        """Create ``out/run_id`` (``-2``, ``-3`` ... if taken); a non-writable ``out`` is a ConfigError."""
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            for i in range(1, 1000):
                path = out / (run_id if i == 1 else f"{run_id}-{i}")
                try:
                    path.mkdir()
                    return cls(path)
                except FileExistsError:
                    continue
        except OSError as err:
            raise ConfigError(f"cannot create the run folder under {out}: {err.strerror or err}") from None
        raise ConfigError(f"too many runs named {run_id!r} under {out}")

    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    def read_results(self) -> Any:
        """The rows written so far (a DataFrame), or None when there are none or they cannot be read (for the
        progress estimate only: the resume's own reading is :meth:`finished_cells`, which says why)."""
        from genbench.results import read_results

        try:
            return read_results(self.results_csv) if self.results_csv.exists() else None
        except (OSError, ValueError):
            return None

    def write_config(self, blob: dict[str, Any]) -> None:
        write_text(self.path / "config.json", json.dumps(blob, indent=2) + "\n")

    # -- resume -------------------------------------------------------------------------------------
    def finished_cells(self, cells: Sequence[Cell], expected_rows: Callable[[Cell], int], log: Log,
                       expected_hash: Callable[[Cell], str] | None = None) -> set[Cell]:
        """Cells of ``results.csv`` that are complete (``expected_rows(cell)`` rows) and not failed; the
        file is rewritten without the others (a torn last line, a partial cell, failed cells), which run
        again. Rows of cells this config does not run are kept, with a warning. A finished cell whose
        rows carry another ``config_hash`` than ``expected_hash(cell)`` (``config.json`` edited after it
        ran, or another genbench version's config fields) is a :class:`ConfigError`, before anything is
        written: its numbers are not this config's, and keeping them beside new rows would mix two."""
        try:
            raw = read_raw_rows(self.results_csv)
        except UnicodeDecodeError as err:
            raise ConfigError(f"--resume {self.path}: results.csv is not UTF-8 text (a binary file?): {err}; move "
                              f"it aside to start the table again") from None
        except ValueError as err:
            raise ConfigError(f"--resume {self.path}: {err}") from None
        if raw is None:
            return set()
        col = {name: i for i, name in enumerate(raw.header)}
        wanted = set(cells)
        cell_of = [_cell_of(row, col) if len(row) == len(raw.header) else None for row in raw.rows]
        foreign = {c for c in cell_of if c is not None and c not in wanted}
        if foreign:
            log(f"warning: results.csv holds {len(foreign)} cell(s) this config does not run "
                f"(e.g. {next(iter(foreign)).label()}); their rows are kept as they are")
        by_cell: dict[Cell, list[list[str]]] = {}
        for row, cell in zip(raw.rows, cell_of):
            if cell in wanted:
                by_cell.setdefault(cell, []).append(row)
        finished = {cell for cell, rows in by_cell.items()
                    if len(rows) == expected_rows(cell) and all(r[col[STATUS]] != STATUS_FAILED for r in rows)}
        if expected_hash is not None:
            _check_hashes(self.path, {cell: by_cell[cell] for cell in finished}, col, expected_hash)
        kept = [row for row, cell in zip(raw.rows, cell_of) if cell in finished or cell in foreign]
        if len(kept) != len(raw.rows) or raw.torn or raw.upgraded:
            rewrite_rows(self.results_csv, raw.header, kept)
        return finished

    # -- checkpoints ----------------------------------------------------------------------------------
    def checkpoint_path(self, key: tuple) -> Path:
        """``checkpoints/<fit name>__<fit config hash>__d<d>__s<seed>[__<task>__<variant>].pt`` (``d-``: no
        latent code). The name is only written, never parsed: the key is recomputed from the config."""
        name, hash_, d, seed, *variant = key
        dim = "d-" if d is None else f"d{d}"
        return self.path / "checkpoints" / ("__".join([name, hash_, dim, f"s{seed}", *variant]) + ".pt")

    def save_checkpoint(self, model: LatentModel, seconds: float, key: tuple) -> None:
        """The fit, through :meth:`LatentModel.save`, with its fit time."""
        model.save(self.checkpoint_path(key), fit_seconds=seconds, model=key[0])  # genbench.load_model reads it

    def load_checkpoint(self, spec: ModelSpec, key: tuple, device: torch.device, log: Log,
                        config: Any = None) -> tuple[LatentModel, float] | None:
        """The fit saved by an earlier (killed) process of this run, if there is a readable one that
        matches the cell's ``config`` (its fit fields; inference fields may differ); otherwise None (with a
        warning), and the cell fits again."""
        path = self.checkpoint_path(key)
        if not path.exists():
            return None
        try:
            model, extra = spec.cls.load_with_extra(path, map_location=device)
            seconds = float(extra["fit_seconds"])
            if config is not None and model.config != config:
                model.with_config(config)  # raises when a fit field differs
        except Exception as err:  # noqa: BLE001 -- a torn, foreign or other-config file: fit again
            log(f"warning: cannot use checkpoint {path.name} ({error_text(err)}); fitting again")
            return None
        return model, seconds


def _check_hashes(path: Path, rows_of: dict[Cell, list[list[str]]], col: dict[str, int],
                  expected_hash: Callable[[Cell], str]) -> None:
    stale = [(cell, hashes, expected_hash(cell)) for cell, rows in rows_of.items()
             if (hashes := {r[col[CONFIG_HASH]] for r in rows}) != {expected_hash(cell)}]
    if stale:
        cell, hashes, want = stale[0]
        raise ConfigError(f"--resume {path}: {len(stale)} finished cell(s) were computed under another config than "
                          f"config.json gives now (e.g. {cell.label()}: config hash {', '.join(sorted(hashes))}, "
                          f"expected {want}); was config.json edited? Restore it, or start a new run")


def _cell_of(row: list[str], col: dict[str, int]) -> Cell | None:
    try:
        dim = row[col[LATENT_DIM]]
        return Cell(row[col[MODEL]], int(dim) if dim != "" else None, int(row[col[SEED]]), row[col[TASK]],
                    row[col[VARIANT]], row[col[PROTOCOL]])
    except (ValueError, IndexError):
        return None  # a torn line
