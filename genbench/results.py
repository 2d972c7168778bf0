"""The tidy results table: one row per (cell, metric); every summary is a view of it.

A *cell* is one (dataset, model, task, variant, protocol, split, latent_dim, seed); it yields one row per metric.
Rows are appended to ``results.csv`` by ``ResultsWriter`` (crash-safe: a whole cell per write, then fsync),
read back with ``read_results``, and turned into pivots and summaries (:mod:`genbench.summary`: the one
aggregation over seeds, pivots and ``summary.md``); :mod:`genbench.report` adds the CSV tables and plots of one
or more runs.

Example::

    >>> writer = ResultsWriter(run_dir / "results.csv")
    >>> writer.append([ResultRow(run_id="r1", model="abp", ..., metric=MAE, value=0.05, ...)])  # one cell
    >>> df = read_results(run_dir / "results.csv")
    >>> summary_table(df, metric=MAE)  # index (model, latent_dim), columns (task, variant, protocol, split)
    >>> write_summary(df, run_dir / "summary.md")
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import importlib
import importlib.metadata
import io
import json
import math
import numbers
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from genbench.fsutil import atomic_write, write_text

RUN_ID = "run_id"
DATASET = "dataset"
MODEL = "model"
TASK = "task"
VARIANT = "variant"
LEVEL_NAME = "level_name"  # the variant's axis (e.g. "block size"), "" for none
LEVEL = "level"  # the variant's value on it (e.g. 14), empty for none
LEVEL_UNIT = "level_unit"  # e.g. "px"
PROTOCOL = "protocol"
SPLIT = "split"
LATENT_DIM = "latent_dim"
SEED = "seed"
METRIC = "metric"
VALUE = "value"
CI_LOW = "ci_low"  # the cell's 95% bootstrap interval over its images (genbench.uncertainty); empty: none
CI_HIGH = "ci_high"
N_IMAGES = "n_images"
FIT_SECONDS = "fit_seconds"
EVAL_SECONDS = "eval_seconds"
INFER_SECONDS = "infer_seconds"  # inference seconds per image
INFER_STEPS = "infer_steps"  # inference iterations used
DEVICE = "device"
STATUS = "status"
FLAG = "flag"  # why a row is degenerate by construction (Task.degenerate), "" for none
MESSAGE = "message"
CONFIG_HASH = "config_hash"
VERSIONS = "versions"

COLUMNS = (
    RUN_ID, DATASET, MODEL, TASK, VARIANT, LEVEL_NAME, LEVEL, LEVEL_UNIT, PROTOCOL, SPLIT, LATENT_DIM, SEED,
    METRIC, VALUE, CI_LOW, CI_HIGH, N_IMAGES,
    FIT_SECONDS, EVAL_SECONDS, INFER_SECONDS, INFER_STEPS, DEVICE, STATUS, FLAG, MESSAGE, CONFIG_HASH, VERSIONS,
)  # fmt: skip
#: columns added since the first tables: a table without them (an older run) is read, resumed and
#: appended to with them empty (:func:`upgrade_rows`)
ADDED_COLUMNS = (CI_LOW, CI_HIGH, FLAG)
#: the variant-axis columns, which the very first tables lacked: read_results gives them empty, and the
#: report fills them from the registered tasks' variants (genbench.report.fill_levels); such tables
#: are read for reports only, not resumed
LEVEL_COLUMNS = (LEVEL_NAME, LEVEL, LEVEL_UNIT)
LEGACY_COLUMNS = tuple(c for c in COLUMNS if c not in ADDED_COLUMNS)
INT_COLUMNS = (LATENT_DIM, SEED, N_IMAGES, INFER_STEPS)
FLOAT_COLUMNS = (LEVEL, VALUE, CI_LOW, CI_HIGH, FIT_SECONDS, EVAL_SECONDS, INFER_SECONDS)
STR_COLUMNS = tuple(c for c in COLUMNS if c not in INT_COLUMNS + FLOAT_COLUMNS)

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_UNSUPPORTED = "unsupported"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_UNSUPPORTED)

#: what identifies one cell's split in the table (the level columns follow from the variant)
CELL_KEYS = (MODEL, LATENT_DIM, TASK, VARIANT, LEVEL_NAME, LEVEL, LEVEL_UNIT, PROTOCOL, SPLIT)


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One row of the results table: one metric of one cell. Fields are ``COLUMNS``, in order (keyword-only).

    ``status`` is ``"ok"``, ``"failed"`` or ``"unsupported"``; ``message`` holds the error text, or for an
    ok row a note on how its value was obtained (usually "").
    ``infer_seconds`` is inference time per image, ``infer_steps`` the inference iterations used.
    ``latent_dim`` is None for a method with no latent code; ``level``/``level_name``/``level_unit`` are the
    variant's axis (None / "" for a variant on none). ``ci_low``/``ci_high``: the value's 95% bootstrap
    interval over the cell's images (NaN where the metric has none, e.g. FID); ``flag``: why the row is
    degenerate by construction ("" for a row that measures what it says).
    """

    run_id: str
    dataset: str
    model: str
    task: str
    variant: str
    level_name: str = ""
    level: float | None = None
    level_unit: str = ""
    protocol: str
    split: str
    latent_dim: int | None
    seed: int
    metric: str
    value: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")
    n_images: int
    fit_seconds: float
    eval_seconds: float
    infer_seconds: float
    infer_steps: int
    device: str
    status: str = STATUS_OK
    flag: str = ""
    message: str = ""
    config_hash: str
    versions: str

    def __post_init__(self) -> None:
        if not isinstance(self.value, numbers.Real):
            raise ValueError(
                f"value must be a real number, got {type(self.value).__name__}; pass a float (e.g. tensor.item())"
            )
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def as_dict(self) -> dict:
        """The row as ``{column: value}`` in ``COLUMNS`` order."""
        return {name: getattr(self, name) for name in COLUMNS}


assert tuple(f.name for f in dataclasses.fields(ResultRow)) == COLUMNS


def versions_string(conv_path: str = "native") -> str:
    """Short provenance string, e.g. ``"genbench=0.1.0 torch=2.14.1 numpy=2.4.6 python=3.11.7"``, with
    ``conv=im2col`` after it when the generator's output layer ran on the im2col path (``--conv-path``)."""
    import torch  # local: keep `results` importable cheaply where torch is already loaded anyway

    conv = "" if conv_path == "native" else f" conv={conv_path}"
    return (
        f"genbench={_genbench_version()} torch={torch.__version__} "
        f"numpy={np.__version__} python={platform.python_version()}{conv}"
    )


def _genbench_version() -> str:
    try:
        return importlib.metadata.version("genbench")
    except importlib.metadata.PackageNotFoundError:
        pass
    try:
        return str(importlib.import_module("genbench").__version__)
    except (ImportError, AttributeError):
        return "dev"


def config_hash(config: Mapping) -> str:
    """First 12 hex characters of sha256 of ``json.dumps(config, sort_keys=True, default=str)``: stable across
    runs and independent of key order."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------- CSV I/O


class ResultsWriter:
    """Appends rows to a CSV so that a killed process never leaves a torn or duplicated row:
    each append writes the header if the file is new, writes all rows of one cell in one write, then
    flush + os.fsync.

    Appending to an existing file whose header is not ``COLUMNS`` raises ``ValueError`` (an older format would
    otherwise be silently mixed with this one).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if tuple(header) == LEGACY_COLUMNS:  # an older run's table: add the new columns, empty
                raw = read_raw_rows(self.path)
                rewrite_rows(self.path, raw.header, raw.rows)
            elif tuple(header) != COLUMNS:
                raise ValueError(
                    f"{self.path} has columns {header}, expected {list(COLUMNS)}; write to a new file instead"
                )

    def append(self, rows: Sequence[ResultRow]) -> None:
        """Append the rows of one cell atomically (one write, then fsync); a write that fails (a full disk)
        is cut back to the file's previous end before the ``OSError`` goes on: nothing torn."""
        rows = list(rows)
        if not rows:
            return
        for row in rows:
            if not isinstance(row, ResultRow):
                raise ValueError(f"ResultsWriter.append takes ResultRow objects, got {type(row).__name__}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        if not self.path.exists() or self.path.stat().st_size == 0:
            # a new table appears whole (header and first cell), never as a 0-byte file a reader could see
            writer.writerow(COLUMNS)
            writer.writerows([_csv_value(v) for v in row.as_dict().values()] for row in rows)
            text = buf.getvalue().encode("utf-8")

            def fill(tmp: Path) -> None:
                with tmp.open("wb") as f:
                    f.write(text)
                    f.flush()
                    os.fsync(f.fileno())

            try:
                atomic_write(self.path, fill)
            except OSError as err:  # e.g. the disk is full: the temporary file is gone, no table is left
                raise OSError(err.errno, err.strerror, str(self.path)) from err
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND, 0o644)  # unbuffered: we see every error
        try:
            start = os.lseek(fd, 0, os.SEEK_END)
            writer.writerows([_csv_value(v) for v in row.as_dict().values()] for row in rows)
            data = memoryview(buf.getvalue().encode("utf-8"))
            try:
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            except OSError as err:  # e.g. the disk is full: cut what part of the cell got in, then say so
                os.ftruncate(fd, start)
                raise OSError(err.errno, err.strerror, str(self.path)) from err
        finally:
            os.close(fd)


def _csv_value(v: object) -> object:
    # repr() of a float round-trips exactly; csv.writer uses it, and writes None as "".
    return float(v) if isinstance(v, (np.floating,)) else v


@dataclass(frozen=True)
class RawRows:
    """``results.csv`` as text fields: the header, the data rows, and whether a torn last line was cut."""

    header: list[str]
    rows: list[list[str]]
    torn: bool
    upgraded: bool = False  # an older table's rows, given the added columns (empty)


def upgrade_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[list[str]]:
    """Rows of a table with ``header`` (:data:`LEGACY_COLUMNS`) in :data:`COLUMNS` order, the added columns
    empty; a row of another length (a torn one) is kept as it is, for the caller to drop."""
    index = {c: i for i, c in enumerate(header)}
    return [[row[index[c]] if c in index else "" for c in COLUMNS] if len(row) == len(header) else list(row)
            for row in rows]


def read_raw_rows(path: str | Path) -> RawRows | None:
    """Read ``results.csv`` as strings, tolerating a torn last line (a process killed mid-write): it is
    left out and ``torn`` is True. None when there is no file, or only a torn header (the file is then
    removed: the table starts again). An older table (:data:`LEGACY_COLUMNS`) comes back in ``COLUMNS``
    order with ``upgraded`` True; any other header raises ``ValueError``."""
    path = Path(path)
    if not path.exists():
        return None
    original = path.read_text(encoding="utf-8")
    text = original
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]  # a torn last line (killed mid-write)
    records = list(csv.reader(io.StringIO(text)))
    if not records:  # killed while writing the header
        path.unlink()
        return None
    if tuple(records[0]) == LEGACY_COLUMNS:
        return RawRows(list(COLUMNS), upgrade_rows(records[0], records[1:]), text != original, upgraded=True)
    if tuple(records[0]) != COLUMNS:
        raise ValueError(f"{path} has columns {records[0]}, expected {list(COLUMNS)}")
    return RawRows(records[0], records[1:], text != original)


def rewrite_rows(path: str | Path, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Replace ``results.csv`` with these text rows (atomically)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *rows])
    write_text(path, buf.getvalue())


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results CSV: columns in ``COLUMNS`` order (extra columns kept after them), ints as int64
    (nullable Int64 if a value is missing), floats as float64 (NaN kept), strings as str with "" not NaN.
    An older table's missing :data:`ADDED_COLUMNS` and :data:`LEVEL_COLUMNS` come back empty, named in
    ``df.attrs["added_columns"]``."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results file at {path}")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    added = [c for c in ADDED_COLUMNS + LEVEL_COLUMNS if c not in raw.columns]
    for column in added:  # an older run's table: the columns it predates are empty
        raw[column] = ""
    missing = [c for c in COLUMNS if c not in raw.columns]
    if missing:
        raise ValueError(f"{path} is missing columns {missing}; expected {list(COLUMNS)}")
    df = raw[list(COLUMNS) + [c for c in raw.columns if c not in COLUMNS]].copy()
    for col in INT_COLUMNS:
        parsed = _parse(df[col], int, path)
        df[col] = parsed.astype("Int64" if parsed.isna().any() else "int64")
    for col in FLOAT_COLUMNS:
        df[col] = _parse(df[col], float, path)  # float() reads "nan" and "inf" too
    for col in STR_COLUMNS:
        df[col] = df[col].astype(str)
    df.attrs["added_columns"] = added  # what the file predates (genbench.report fills the levels back in)
    return df


def _parse(column: pd.Series, cast: type, path: Path) -> pd.Series:
    """Cast each cell of a str column with ``cast``; "" becomes missing. Names the column and row on failure."""
    values = []
    for i, text in enumerate(column):
        try:
            values.append(None if text == "" else cast(text))
        except ValueError:
            raise ValueError(
                f"{path}: column {column.name!r}, data row {i}: cannot read {text!r} as {cast.__name__}"
            ) from None
    if cast is int:
        return pd.Series(pd.array(values, dtype="Int64"), index=column.index)
    return pd.Series([math.nan if v is None else v for v in values], index=column.index, dtype="float64")
