"""The tidy results table: one row per (cell, metric); every summary is a view of it.

A *cell* is one (dataset, model, task, variant, protocol, split, latent_dim, seed); it yields one row per metric.
Rows are appended to ``results.csv`` by ``ResultsWriter`` (crash-safe: a whole cell per write, then fsync),
read back with ``read_results``, and turned into pivots (``summary_table``) and a markdown report
(``summary_markdown`` / ``write_summary``). ``genbench/report.py`` adds the CSV tables and plots of one or more runs.

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
from typing import Literal

import numpy as np
import pandas as pd

from .metrics import MAE, MAE_ALL, MSE, PSNR

RUN_ID = "run_id"
DATASET = "dataset"
MODEL = "model"
TASK = "task"
VARIANT = "variant"
PROTOCOL = "protocol"
SPLIT = "split"
LATENT_DIM = "latent_dim"
SEED = "seed"
METRIC = "metric"
VALUE = "value"
N_IMAGES = "n_images"
FIT_SECONDS = "fit_seconds"
EVAL_SECONDS = "eval_seconds"
INFER_SECONDS = "infer_seconds"  # inference seconds per image
INFER_STEPS = "infer_steps"  # inference iterations used
DEVICE = "device"
STATUS = "status"
MESSAGE = "message"
CONFIG_HASH = "config_hash"
VERSIONS = "versions"

COLUMNS = (
    RUN_ID, DATASET, MODEL, TASK, VARIANT, PROTOCOL, SPLIT, LATENT_DIM, SEED, METRIC, VALUE, N_IMAGES,
    FIT_SECONDS, EVAL_SECONDS, INFER_SECONDS, INFER_STEPS, DEVICE, STATUS, MESSAGE, CONFIG_HASH, VERSIONS,
)  # fmt: skip
INT_COLUMNS = (LATENT_DIM, SEED, N_IMAGES, INFER_STEPS)
FLOAT_COLUMNS = (VALUE, FIT_SECONDS, EVAL_SECONDS, INFER_SECONDS)
STR_COLUMNS = tuple(c for c in COLUMNS if c not in INT_COLUMNS + FLOAT_COLUMNS)

STATUS_OK = "ok"
STATUS_FAILED = "failed"
STATUS_UNSUPPORTED = "unsupported"
STATUSES = (STATUS_OK, STATUS_FAILED, STATUS_UNSUPPORTED)

#: Metrics where a larger value is better; every other metric is an error (smaller is better).
HIGHER_IS_BETTER = frozenset({PSNR})

#: Metrics of ``summary.md``, in order.
SUMMARY_METRICS = (MAE, MAE_ALL, MSE, PSNR)

CELL_KEYS = (MODEL, LATENT_DIM, TASK, VARIANT, PROTOCOL, SPLIT)
PIVOT_INDEX = (MODEL, LATENT_DIM)
PIVOT_COLUMNS = (TASK, VARIANT, PROTOCOL, SPLIT)

Stat = Literal["mean", "std", "count"]
_STATS = ("mean", "std", "count")


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One row of the results table: one metric of one cell. Fields are ``COLUMNS``, in order (keyword-only).

    ``status`` is ``"ok"``, ``"failed"`` or ``"unsupported"``; ``message`` holds the error text ("" when ok).
    ``infer_seconds`` is inference time per image, ``infer_steps`` the inference iterations used.
    """

    run_id: str
    dataset: str
    model: str
    task: str
    variant: str
    protocol: str
    split: str
    latent_dim: int
    seed: int
    metric: str
    value: float
    n_images: int
    fit_seconds: float
    eval_seconds: float
    infer_seconds: float
    infer_steps: int
    device: str
    status: str = STATUS_OK
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


def versions_string() -> str:
    """Short provenance string, e.g. ``"genbench=0.1.0 torch=2.14.1 numpy=2.4.6 python=3.11.7"``."""
    import torch  # local: keep `results` importable cheaply where torch is already loaded anyway

    return (
        f"genbench={_genbench_version()} torch={torch.__version__} "
        f"numpy={np.__version__} python={platform.python_version()}"
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
            if tuple(header) != COLUMNS:
                raise ValueError(
                    f"{self.path} has columns {header}, expected {list(COLUMNS)}; write to a new file instead"
                )

    def append(self, rows: Sequence[ResultRow]) -> None:
        """Append the rows of one cell atomically (one write, then fsync)."""
        rows = list(rows)
        if not rows:
            return
        for row in rows:
            if not isinstance(row, ResultRow):
                raise ValueError(f"ResultsWriter.append takes ResultRow objects, got {type(row).__name__}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("ab") as f:
            buf = io.StringIO()
            writer = csv.writer(buf, lineterminator="\n")
            if f.tell() == 0:
                writer.writerow(COLUMNS)
            writer.writerows([_csv_value(v) for v in row.as_dict().values()] for row in rows)
            f.write(buf.getvalue().encode("utf-8"))
            f.flush()
            os.fsync(f.fileno())


def _csv_value(v: object) -> object:
    # repr() of a float round-trips exactly; csv.writer uses it, and writes None as "".
    return float(v) if isinstance(v, (np.floating,)) else v


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results CSV: columns in ``COLUMNS`` order (extra columns kept after them), ints as int64
    (nullable Int64 if a value is missing), floats as float64 (NaN kept), strings as str with "" not NaN."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results file at {path}")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
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


# ---------------------------------------------------------------------------------------------------- views


def summary_table(df: pd.DataFrame, metric: str = MAE, stat: Stat = "mean") -> pd.DataFrame:
    """Pivot the ``ok`` rows of one metric: index ``(model, latent_dim)``, columns ``(task, variant, protocol,
    split)``, values aggregated over seeds with ``stat`` (std is NaN for a single seed; count is a float)."""
    if stat not in _STATS:
        raise ValueError(f"stat must be one of {_STATS}, got {stat!r}")
    rows = df[(df[STATUS] == STATUS_OK) & (df[METRIC] == metric)]
    if rows.empty:
        present = sorted(df.loc[df[STATUS] == STATUS_OK, METRIC].unique().tolist())
        raise ValueError(f"no ok rows for metric {metric!r}; metrics with ok rows: {present}")
    grouped = rows.groupby(list(PIVOT_INDEX + PIVOT_COLUMNS), sort=True, dropna=False)[VALUE].agg(stat)
    table = grouped.unstack(list(PIVOT_COLUMNS))
    return table.astype("float64")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table: header row, ``|---|`` separator, one line per row; pipes in cells escaped and
    newlines turned into spaces."""

    def cell(v: object) -> str:
        return " ".join(str(v).split()).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(metric: str, v: float) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "nan"
    return f"{v:.2f}" if metric == PSNR else f"{v:#.4g}"  # '#' keeps trailing zeros: 0.4000, not 0.4


def row_label(model: str, latent_dim: object) -> str:
    """``model (d=10)``; a reference method (latent_dim 0, no latent code) is just its name."""
    return model if str(latent_dim) == "0" else f"{model} (d={latent_dim})"


def _metric_table(ok: pd.DataFrame, metric: str) -> str:
    """Markdown table of one task and one metric: "mean ± std" over seeds, best per column in bold."""
    stats = ok.groupby(list(CELL_KEYS), sort=False, dropna=False)[VALUE].agg(["mean", "std", "count"])
    col_keys = list(dict.fromkeys(k[2:] for k in stats.index))  # (task, variant, protocol, split), first-seen
    row_keys = list(dict.fromkeys(k[:2] for k in stats.index))  # (model, latent_dim)
    higher = metric in HIGHER_IS_BETTER
    best = {}
    for ck in col_keys:
        means = [stats.loc[rk + ck, "mean"] for rk in row_keys if rk + ck in stats.index]
        means = [m for m in means if not math.isnan(m)]
        best[ck] = (max(means) if higher else min(means)) if means else None
    body = []
    for rk in row_keys:
        cells = [row_label(*rk)]
        for ck in col_keys:
            if rk + ck not in stats.index:
                cells.append("—")
                continue
            mean, std, count = stats.loc[rk + ck, ["mean", "std", "count"]]
            text = _fmt(metric, mean) if count < 2 else f"{_fmt(metric, mean)} ± {_fmt(metric, std)}"
            cells.append(f"**{text}**" if best[ck] is not None and mean == best[ck] else text)
        body.append(cells)
    header = ["model"] + [" / ".join(str(p) for p in ck[1:]) for ck in col_keys]
    return markdown_table(header, body)


def summary_markdown(df: pd.DataFrame, metrics: Sequence[str] = (MAE,), *, title: str = "genbench results",
                     level: int = 1) -> str:
    """A markdown report of the table: a title; per task and per metric a table (rows "model (d=latent)",
    columns "variant / protocol / split", cells "mean ± std" over seeds, std omitted for one seed, best mean per
    column in bold: lowest for errors, highest for psnr); the failed/unsupported cells, if any; the row and seed
    counts. mae/mse show 4 significant digits, psnr 2 decimals. The title is a level-``level`` heading and the
    sections one level below (``level=2`` nests the summary of one dataset in a larger report)."""
    h1, h2 = "#" * level, "#" * (level + 1)
    lines = [f"{h1} {title}", ""]
    runs = ", ".join(str(r) for r in pd.unique(df[RUN_ID])) if len(df) else ""
    datasets = ", ".join(str(d) for d in pd.unique(df[DATASET])) if len(df) else ""
    if runs:
        lines += [f"Run: {runs}. Dataset: {datasets}.", ""]
    ok = df[df[STATUS] == STATUS_OK]
    for task in pd.unique(ok[TASK]):
        task_rows = ok[ok[TASK] == task]
        for metric in metrics:
            rows = task_rows[task_rows[METRIC] == metric]
            if rows.empty:
                continue
            unit = " (higher is better)" if metric in HIGHER_IS_BETTER else " (lower is better)"
            lines += [f"{h2} {task}: {metric}{unit}", "", _metric_table(rows, metric), ""]
    bad = df[df[STATUS] != STATUS_OK]
    if not bad.empty:
        keys = list(CELL_KEYS) + [STATUS, MESSAGE]
        by_cell = bad.groupby(keys, sort=False, dropna=False)[SEED]
        cells = by_cell.agg(lambda s: ", ".join(map(str, sorted(set(s)))))  # one line per cell, not per metric
        body = [
            [row_label(m, d), t, v, p, s, seeds, st, _shorten(msg)]
            for (m, d, t, v, p, s, st, msg), seeds in cells.items()
        ]
        header = ["model", "task", "variant", "protocol", "split", "seeds", "status", "message"]
        lines += [f"{h2} Failed or unsupported cells", "", markdown_table(header, body), ""]
    seeds = sorted(pd.unique(df[SEED]).tolist()) if len(df) else []
    seed_text = f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}" if seeds else "no seeds"
    lines.append(f"{len(df)} rows; {seed_text}.")
    return "\n".join(lines) + "\n"


def _shorten(message: str, limit: int = 300) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"


def write_summary(df: pd.DataFrame, path: str | Path, metrics: Sequence[str] = SUMMARY_METRICS) -> Path:
    """Write ``summary_markdown(df, metrics)`` to ``path`` (atomically: temp file, then rename); return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(summary_markdown(df, metrics), encoding="utf-8")
    os.replace(tmp, path)
    return path
