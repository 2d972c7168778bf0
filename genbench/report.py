"""The report of one or more runs: summary, tables and plots, all regenerated from ``results.csv``.

Every file is a view of the one tidy table (``genbench/results.py``); nothing else is read except the
kept images that :func:`genbench.plots.write_grids` turns into grids. ``write_report([run_dir])`` writes::

    <out>/
      summary.md                               markdown pivots: per task and metric, models x columns
      tables/aggregated.csv                    long format, one row per aggregated cell (below)
      tables/<dataset>__<task>__<metric>.csv   wide pivot of one task and metric (below)
      plots/<dataset>__<task>__<metric>__bars.{png,pdf}         every column, one bar per model
      plots/<dataset>__inpainting__<metric>__occlusion.{png,pdf}  error vs salt-pepper fraction / block size
      plots/<dataset>__projection__<metric>__projections.{png,pdf}  error vs number of projections K
      plots/<dataset>__<task>__<metric>__latent-dim.{png,pdf}   error vs latent dim
      grids/                                   image grids (single-run report into the run folder only)

Tables (every metric with ``ok`` rows; failed and unsupported rows are listed in ``summary.md`` only):

- ``aggregated.csv``: columns ``dataset, task, metric, model, latent_dim, variant, protocol, split, mean, std,
  count, seeds, best``: mean and sample std (ddof=1; empty for one value) over seeds, ``count`` values averaged,
  ``seeds`` space-separated, ``best`` True for the best mean of its (dataset, task, metric, variant, protocol,
  split) column (lowest error, highest psnr; ties all True), the same cells ``summary.md`` puts in bold.
- ``<dataset>__<task>__<metric>.csv``: columns ``model, latent_dim``, then per (variant, protocol, split) column
  ``<variant>/<protocol>/<split>:mean`` and ``...:std``; an empty cell where a model has no value.
  Names are slugged: characters outside ``[A-Za-z0-9_.-]`` become ``-``.

Example::

    >>> agg = pd.read_csv("results/RUN/tables/aggregated.csv")
    >>> wide = pd.read_csv("results/RUN/tables/mnist5k__inpainting__mae.csv", index_col=["model", "latent_dim"])
    >>> wide["salt-pepper-0.5/clean-train/test:mean"]

Plots (metrics in ``plot_metrics``, default mae; error bars are the std over seeds, none for one seed). Each
model has one colour in every plot of a report (:func:`model_colors`); latent dims differ by line style and
marker (bars: hatching). Panels are per (protocol, split) (bars: per protocol). A plot is skipped, and the
reason logged, when its data are absent: occlusion needs two salt-pepper fractions or two block sizes,
projections two K, latent-dim two nonzero latent dims. In the latent-dim plot a reference method (latent dim 0,
no latent code) is a dotted horizontal line.

Several runs: rows are pooled by dataset, so runs of one dataset with different seeds give mean ± std over all
their seeds, and several datasets get their own tables, plots and ``summary.md`` section. The same seed of the
same cell (``ok``) in two runs is refused: those runs are not replicates. The report goes to ``out`` (default
``report-<timestamp>`` beside the first run folder); image grids stay in each run folder. A single-run report
goes into the run folder itself and (re)writes its grids.

Files are written atomically (temp file, then ``os.replace``); plots and tables of an earlier report in ``out``
that this one did not write are removed. Bad input (no ``results.csv``, an unreadable one) raises
:class:`ReportInputError` before anything is written.
"""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # drawn without pyplot: no global state, no display, nothing to close

from .metrics import MAE
from .results import (CELL_KEYS, CONFIG_HASH, DATASET, HIGHER_IS_BETTER, LATENT_DIM, METRIC, MODEL, PROTOCOL, RUN_ID, SEED,
                      SPLIT, STATUS, STATUS_OK, SUMMARY_METRICS, TASK, VALUE, VARIANT, read_results, row_label,
                      summary_markdown)

log = logging.getLogger(__name__)

PLOT_METRICS = (MAE,)
AGG_COLUMNS = (DATASET, TASK, METRIC, MODEL, LATENT_DIM, VARIANT, PROTOCOL, SPLIT,
               "mean", "std", "count", "seeds", "best")
#: variant name -> (x value) for the occlusion and projection plots (tasks/inpainting.py, tasks/projection.py)
OCCLUSION_KINDS = {"salt-pepper": (re.compile(r"^salt-pepper-([0-9.eE+-]+)$"), "fraction of pixels occluded"),
                   "block": (re.compile(r"^block-(\d+)$"), "block size (pixels)")}
PROJECTION_VARIANT = re.compile(r"^k-(\d+)$")

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
_HATCHES = ("", "//", "..", "xx", "\\\\", "--")
_SOURCE = "_source"  # which run folder a row came from (overlap check only)


class ReportInputError(ValueError):
    """A run folder cannot be reported (no results.csv, unreadable, overlapping runs): one-line message."""


# ------------------------------------------------------------------------------------------- entry point
def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None, *,
                 metrics: Sequence[str] = SUMMARY_METRICS, plot_metrics: Sequence[str] = PLOT_METRICS) -> Path:
    """Write the report of ``run_dirs`` into ``out`` (see the module docstring) and return ``out``.

    ``out`` defaults to the run folder for one run, ``report-<YYYYmmdd-HHMMSS>`` beside the first run folder
    for several. ``metrics`` are the tables of ``summary.md``; ``plot_metrics`` get plots.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        raise TypeError(f"write_report takes a sequence of run folders, e.g. [{str(run_dirs)!r}]")
    dirs: list[Path] = []
    for folder in map(Path, run_dirs):  # the same folder twice is one run
        if folder.resolve() not in {d.resolve() for d in dirs}:
            dirs.append(folder)
    if not dirs:
        raise ReportInputError("a report needs one or more run folders")
    df = load_runs(dirs)
    out = _out_dir(dirs, out)
    written = [_write_text(out / "summary.md", report_markdown(df, metrics, dirs, out))]
    agg = aggregate(df, metrics)
    written += write_tables(agg, out / "tables")
    written += write_plots(agg, out / "plots", plot_metrics, model_colors(df[MODEL]))
    _remove_stale(out, written)
    if len(dirs) == 1 and out.resolve() == dirs[0].resolve():
        from .plots import write_grids  # torch: only when there are grids to write

        write_grids(dirs[0])
    return out


def load_runs(run_dirs: Sequence[Path]) -> pd.DataFrame:
    """The concatenated ``results.csv`` of the run folders (read once each); ``ReportInputError`` when one is
    missing or unreadable, or when two runs hold the same seed of the same ``ok`` cell."""
    frames = []
    for i, folder in enumerate(run_dirs):
        path = Path(folder) / "results.csv"
        if not path.is_file():
            raise ReportInputError(f"{folder} is not a genbench run folder (no results.csv in it)")
        try:
            frame = read_results(path)
        except (OSError, ValueError) as err:  # also pandas' parser errors and bad encodings
            raise ReportInputError(f"cannot read {path}: {' '.join(str(err).split())}") from None
        frames.append(frame.assign(**{_SOURCE: i}))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:
        # the same result in two runs (e.g. a reference method, latent_dim 0, in two runs that sweep
        # different latent dims) is one result, not two replicates: keep it once
        same = [DATASET, *CELL_KEYS, SEED, METRIC, CONFIG_HASH, VALUE, STATUS]
        df = df.drop_duplicates(subset=same, keep="first").reset_index(drop=True)
        _check_no_overlap(df, run_dirs)
    return df.drop(columns=_SOURCE)


def _check_no_overlap(df: pd.DataFrame, run_dirs: Sequence[Path]) -> None:
    ok = df[df[STATUS] == STATUS_OK]
    keys = [DATASET, *CELL_KEYS, SEED]
    n_sources = ok.groupby(keys, sort=False)[_SOURCE].nunique()
    clash = n_sources[n_sources > 1]
    if clash.empty:
        return
    key = clash.index[0]
    a, b = sorted(ok.loc[(ok[keys] == pd.Series(key, index=keys)).all(axis=1), _SOURCE].unique())[:2]
    dataset, model, d, task, variant, protocol, split, seed = key
    raise ReportInputError(
        f"{run_dirs[a]} and {run_dirs[b]} both hold seed {seed} of {row_label(model, d)} {task}/{variant}/"
        f"{protocol}/{split} on {dataset}; a report pools the runs of a dataset over seeds, so give runs with "
        f"different seeds (or report them one by one)")


def _out_dir(run_dirs: Sequence[Path], out: str | Path | None) -> Path:
    if out is None:
        if len(run_dirs) == 1:
            return run_dirs[0]
        out = run_dirs[0].parent / f"report-{time.strftime('%Y%m%d-%H%M%S')}"
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportInputError(f"the report folder {out} exists and is not a folder")
    if len(run_dirs) > 1 and out.resolve() in {d.resolve() for d in run_dirs}:
        raise ReportInputError(f"the report of several runs cannot go into one of them ({out}): it would "
                               f"replace that run's own summary; give another --out")
    return out


# ------------------------------------------------------------------------------------------------ tables
def aggregate(df: pd.DataFrame, metrics: Sequence[str] = SUMMARY_METRICS) -> pd.DataFrame:
    """The ``ok`` rows aggregated over seeds: columns ``AGG_COLUMNS`` (see the module docstring). Order: datasets
    and tasks as first seen, metrics as in ``metrics`` then the others, rows and columns of each (dataset, task,
    metric) as first seen (the order of ``summary.md``)."""
    ok = df[df[STATUS] == STATUS_OK]
    parts = []
    for (dataset, task), rows in _groups(ok, [DATASET, TASK]):
        present = list(pd.unique(rows[METRIC]))
        for metric in [m for m in metrics if m in present] + [m for m in present if m not in metrics]:
            cells = rows[rows[METRIC] == metric].groupby(list(CELL_KEYS), sort=False, dropna=False)
            stats = cells[VALUE].agg(["mean", "std", "count"])
            stats["seeds"] = cells[SEED].agg(lambda s: " ".join(map(str, sorted(set(s)))))
            stats = stats.reset_index()
            stats[DATASET], stats[TASK], stats[METRIC] = dataset, task, metric
            column = stats.groupby([VARIANT, PROTOCOL, SPLIT], sort=False)["mean"]
            best = column.transform("max" if metric in HIGHER_IS_BETTER else "min")
            stats["best"] = stats["mean"] == best  # NaN means are never best
            parts.append(stats[list(AGG_COLUMNS)])
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in AGG_COLUMNS})
    agg = pd.concat(parts, ignore_index=True)
    agg["count"] = agg["count"].astype("int64")
    return agg


def wide_table(agg: pd.DataFrame) -> pd.DataFrame:
    """One (dataset, task, metric) slice of :func:`aggregate` as a wide pivot: ``model, latent_dim``, then
    ``<variant>/<protocol>/<split>:mean`` and ``:std`` per column."""
    rows = _keys(agg, [MODEL, LATENT_DIM])
    cols = _keys(agg, [VARIANT, PROTOCOL, SPLIT])
    stats = {k[:5]: k[5:] for k in zip(agg[MODEL], agg[LATENT_DIM], agg[VARIANT], agg[PROTOCOL], agg[SPLIT],
                                       agg["mean"], agg["std"])}
    table = {MODEL: [m for m, _ in rows], LATENT_DIM: [d for _, d in rows]}
    for v, p, s in cols:
        for i, stat in enumerate(("mean", "std")):
            table[f"{v}/{p}/{s}:{stat}"] = [stats.get((m, d, v, p, s), (math.nan,) * 2)[i] for m, d in rows]
    return pd.DataFrame(table)


def write_tables(agg: pd.DataFrame, folder: Path) -> list[Path]:
    """``aggregated.csv`` and one wide CSV per (dataset, task, metric); returns the paths."""
    written = [_write_text(folder / "aggregated.csv", agg.to_csv(index=False, lineterminator="\n"))]
    slugs = _dataset_slugs(agg)
    for (dataset, task, metric), rows in _groups(agg, [DATASET, TASK, METRIC]):
        name = f"{slugs[dataset]}__{_slug(task)}__{_slug(metric)}.csv"
        written.append(_write_text(folder / name, wide_table(rows).to_csv(index=False, lineterminator="\n")))
    return written


# ------------------------------------------------------------------------------------------------- plots
def model_colors(models: Iterable[str]) -> dict[str, tuple[float, float, float, float]]:
    """A colour per model, the same in every plot of every report: the registry's models in
    registration order take tab10 (the ten built-in models fill it); models registered later
    (plug-ins) or no longer registered take the light shades of tab20, in sorted order."""
    from genbench.registry import available_models

    models = set(models)  # an iterator is read once
    registered = list(available_models())
    tab10, tab20 = colormaps["tab10"], colormaps["tab20"]
    out = {}
    extra = sorted({m for m in models if m not in registered[:tab10.N]})
    for name in models:
        if name in registered[:tab10.N]:
            out[name] = tab10(registered.index(name))
        else:
            out[name] = tab20((2 * extra.index(name) + 1) % tab20.N)
    return out


def report_figures(agg: pd.DataFrame, plot_metrics: Sequence[str] = PLOT_METRICS,
                   colors: dict[str, tuple] | None = None) -> Iterator[tuple[str, Figure]]:
    """``(file stem, figure)`` of every plot of the report, drawn from :func:`aggregate`'s table."""
    colors = model_colors(agg[MODEL]) if colors is None else colors
    dims = sorted({int(d) for d in agg[LATENT_DIM] if int(d) != 0})
    style = _Style(colors, {d: i for i, d in enumerate(dims)})
    slugs = _dataset_slugs(agg)
    for (dataset, task, metric), rows in _groups(agg[agg[METRIC].isin(plot_metrics)], [DATASET, TASK, METRIC]):
        stem = f"{slugs[dataset]}__{_slug(task)}__{_slug(metric)}"
        title = f"{dataset}: {task}, {metric} ({_direction(metric)} is better)"
        drawers = {"bars": _bars, "occlusion": _occlusion, "projections": _projections, "latent-dim": _latent}
        for kind, draw in drawers.items():
            fig = draw(rows, style, metric)
            if fig is None:
                continue
            fig.suptitle(title + ("\nerror bars: std over seeds" if (rows["count"] > 1).any() else ""),
                         fontsize=10)
            yield f"{stem}__{kind}", fig


def write_plots(agg: pd.DataFrame, folder: Path, plot_metrics: Sequence[str] = PLOT_METRICS,
                colors: dict[str, tuple] | None = None) -> list[Path]:
    """Save every figure of :func:`report_figures` as PNG and PDF under ``folder``; returns the paths."""
    written: list[Path] = []
    for stem, fig in report_figures(agg, plot_metrics, colors):
        folder.mkdir(parents=True, exist_ok=True)
        for ext in ("png", "pdf"):
            path = folder / f"{stem}.{ext}"
            tmp = path.with_name(path.name + ".tmp")
            # no creation date in the PDF: the same table gives the same file
            fig.savefig(tmp, format=ext, dpi=120, metadata={"CreationDate": None} if ext == "pdf" else None)
            os.replace(tmp, path)
            written.append(path)
            fig.set_layout_engine("none")  # laid out by the first save; the second reuses it (time)
    return written


class _Style:
    """Colour per model; line style, marker and hatch per latent dim (latent dim 0: a reference method)."""

    def __init__(self, colors: dict[str, tuple], dims: dict[int, int]) -> None:
        self.colors, self.dims = colors, dims

    def line(self, model: str, d: int) -> dict:
        i = self.dims.get(int(d))
        if i is None:
            return {"color": self.colors[model], "linestyle": "-", "marker": "x"}
        return {"color": self.colors[model], "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
                "marker": _MARKERS[i % len(_MARKERS)]}

    def bar(self, model: str, d: int) -> dict:
        i = self.dims.get(int(d))
        return {"color": self.colors[model], "edgecolor": "black", "linewidth": 0.4,
                "hatch": None if i is None else (_HATCHES[i % len(_HATCHES)] or None)}


def _bars(rows: pd.DataFrame, style: _Style, metric: str) -> Figure:
    """Per protocol a panel; groups (variant, split); one bar per (model, latent dim), same slot in each group."""
    models = _keys(rows, [MODEL, LATENT_DIM])
    protocols = list(pd.unique(rows[PROTOCOL]))
    width = 0.8 / len(models)
    n_groups = max(len(_keys(rows[rows[PROTOCOL] == p], [VARIANT, SPLIT])) for p in protocols)
    fig = Figure(figsize=(min(22.0, max(6.5, 2.5 + n_groups * (0.22 * len(models) + 0.4))),
                          1.0 + 2.6 * len(protocols)),
                 layout="constrained")
    axes = fig.subplots(len(protocols), 1, squeeze=False)[:, 0]
    for ax, protocol in zip(axes, protocols):
        panel = rows[rows[PROTOCOL] == protocol]
        groups = {g: i for i, g in enumerate(_keys(panel, [VARIANT, SPLIT]))}
        for j, (model, d) in enumerate(models):
            mine = panel[(panel[MODEL] == model) & (panel[LATENT_DIM] == d)]
            if mine.empty:
                continue
            x = np.array([groups[g] for g in zip(mine[VARIANT], mine[SPLIT])]) + (j - (len(models) - 1) / 2) * width
            ax.bar(x, mine["mean"], width, yerr=mine["std"], label=row_label(model, d),
                   error_kw={"elinewidth": 0.8, "capsize": 1.5}, **style.bar(model, d))
        ax.set_xticks(range(len(groups)), [f"{v}\n{s}" for v, s in groups], fontsize=7)
        ax.set_title(protocol, fontsize=9)
        ax.set_ylabel(metric)
    _legend(fig, axes)
    return fig


def _occlusion(rows: pd.DataFrame, style: _Style, metric: str) -> Figure | None:
    """Error vs occlusion level: a column of panels per kind (salt-pepper fraction, block size) with 2+ levels."""
    columns = []
    for kind, (pattern, label) in OCCLUSION_KINDS.items():
        points = _levels(rows, pattern)
        if points["x"].nunique() >= 2:
            columns.append((kind, label, points))
    if not columns:
        if any(rows[VARIANT].str.match(pattern).any() for pattern, _ in OCCLUSION_KINDS.values()):
            log.info("no occlusion plot for %s: fewer than two salt-pepper fractions and block sizes",
                     _where(rows, metric))
        return None
    return _line_grid(rows, style, metric, columns)


def _projections(rows: pd.DataFrame, style: _Style, metric: str) -> Figure | None:
    """Error vs number of projections K (log axis), panels per (protocol, split)."""
    points = _levels(rows, PROJECTION_VARIANT)
    if points["x"].nunique() < 2:
        if not points.empty:
            log.info("no projections plot for %s: fewer than two K", _where(rows, metric))
        return None
    return _line_grid(rows, style, metric, [("projections", "number of projections K", points)], log_x=True)


def _line_grid(rows: pd.DataFrame, style: _Style, metric: str, columns: list, log_x: bool = False) -> Figure:
    """Rows of panels per (protocol, split), one column per (kind, x label, points); a line per model row;
    x ticks at the levels present."""
    panel_rows = _keys(pd.concat([p for _, _, p in columns]), [PROTOCOL, SPLIT])
    fig, axes = _panels(len(panel_rows), len(columns), 3.4, 2.6)
    for (protocol, split), line in zip(panel_rows, axes):
        for ax, (_, xlabel, points) in zip(line, columns):
            panel = points[(points[PROTOCOL] == protocol) & (points[SPLIT] == split)]
            _lines(ax, panel, style, _keys(rows, [MODEL, LATENT_DIM]))
            if not panel.empty:
                if log_x:
                    ax.set_xscale("log")
                    ax.minorticks_off()
                levels = sorted(points["x"].unique())
                ax.set_xticks(levels, [f"{x:g}" for x in levels])
            ax.set_title(f"{protocol} / {split}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(metric)
    _legend(fig, axes.ravel())
    return fig


def _latent(rows: pd.DataFrame, style: _Style, metric: str) -> Figure | None:
    """Error vs latent dim: rows of panels per (protocol, split), a column per variant; references dotted."""
    dims = sorted({int(d) for d in rows[LATENT_DIM] if int(d) != 0})
    if len(dims) < 2:
        log.info("no latent-dim plot for %s: %d nonzero latent dim(s)", _where(rows, metric), len(dims))
        return None
    panel_rows = _keys(rows, [PROTOCOL, SPLIT])
    variants = list(pd.unique(rows[VARIANT]))
    fig, axes = _panels(len(panel_rows), len(variants), 3.0, 2.4)
    for (protocol, split), line in zip(panel_rows, axes):
        for ax, variant in zip(line, variants):
            panel = rows[(rows[PROTOCOL] == protocol) & (rows[SPLIT] == split) & (rows[VARIANT] == variant)]
            for model in pd.unique(panel[MODEL]):
                mine = panel[panel[MODEL] == model].assign(x=lambda r: r[LATENT_DIM].astype(float))
                ref = mine[mine[LATENT_DIM] == 0]
                for mean in ref["mean"]:
                    ax.axhline(mean, color=style.colors[model], linestyle=":", linewidth=1.2, label=model)
                mine = mine[mine[LATENT_DIM] != 0].sort_values("x")
                if not mine.empty:
                    ax.errorbar(mine["x"], mine["mean"], yerr=mine["std"], color=style.colors[model], marker="o",
                                markersize=4, linewidth=1.2, capsize=2, label=model)
            if not panel.empty:
                ax.set_xticks(dims, [str(d) for d in dims])
            _empty_note(ax, panel)
            ax.set_title(f"{variant} / {protocol} / {split}", fontsize=8)
            ax.set_xlabel("latent dim", fontsize=8)
            ax.set_ylabel(metric)
    _legend(fig, axes.ravel())
    return fig


def _panels(n_rows: int, n_cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_rows x n_cols`` panels (axes[i, j]); a single column is laid out as one row instead."""
    shape = (1, n_rows) if n_cols == 1 else (n_rows, n_cols)
    fig = Figure(figsize=(max(6.5, 2.0 + width * shape[1]), 1.0 + height * shape[0]), layout="constrained")
    axes = fig.subplots(*shape, squeeze=False)
    return fig, (axes.T if n_cols == 1 else axes)


def _lines(ax: Axes, points: pd.DataFrame, style: _Style, models: list[tuple[str, int]]) -> None:
    for model, d in models:
        mine = points[(points[MODEL] == model) & (points[LATENT_DIM] == d)].sort_values("x")
        if not mine.empty:
            ax.errorbar(mine["x"], mine["mean"], yerr=mine["std"], label=row_label(model, d), markersize=4,
                        linewidth=1.2, capsize=2, **style.line(model, d))
    _empty_note(ax, points)


def _empty_note(ax: Axes, points: pd.DataFrame) -> None:
    if points.empty:
        ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="gray")
        ax.set_xticks([])
        ax.set_yticks([])


def _legend(fig: Figure, axes: Iterable[Axes]) -> None:
    """One legend for the figure, each label once, outside on the right."""
    entries: dict[str, object] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="outside right upper", fontsize=7)


def _levels(rows: pd.DataFrame, pattern: re.Pattern) -> pd.DataFrame:
    """The rows whose variant matches ``pattern``, with its number in column ``x``."""
    found = rows[VARIANT].str.extract(pattern, expand=False)
    points = rows[found.notna()].copy()
    points["x"] = pd.to_numeric(found[found.notna()], errors="coerce")
    return points[points["x"].notna()]


# ------------------------------------------------------------------------------------------------ markdown
def report_markdown(df: pd.DataFrame, metrics: Sequence[str] = SUMMARY_METRICS, run_dirs: Sequence[Path] = (),
                    out: Path | None = None) -> str:
    """``summary.md``: for one run of one dataset exactly :func:`genbench.results.summary_markdown`; otherwise a
    list of the runs (folders relative to ``out``) and one section per dataset."""
    datasets = list(pd.unique(df[DATASET]))
    if len(run_dirs) <= 1 and len(datasets) <= 1:
        return summary_markdown(df, metrics)
    lines = ["# genbench report", "", "Runs (image grids stay in each run folder, under `grids/`):", ""]
    for folder in run_dirs:
        where = os.path.relpath(folder.resolve(), out.resolve()) if out is not None else str(folder)
        lines.append(f"- `{where}`")
    parts = ["\n".join(lines) + "\n"]
    parts += [summary_markdown(df[df[DATASET] == d], metrics, title=f"Dataset: {d}", level=2) for d in datasets]
    runs = ", ".join(str(r) for r in pd.unique(df[RUN_ID]))
    parts.append(f"{len(df)} rows from {len(run_dirs)} run(s): {runs}.\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- helpers
def _groups(df: pd.DataFrame, keys: list[str]) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """``groupby(keys)`` in first-seen order (an empty frame gives nothing)."""
    if df.empty:
        return iter(())
    return iter(df.groupby(keys, sort=False, dropna=False))


def _keys(df: pd.DataFrame, cols: list[str]) -> list[tuple]:
    """Distinct tuples of ``cols`` in first-seen order."""
    return list(dict.fromkeys(zip(*(df[c] for c in cols))))


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "_"


def _dataset_slugs(agg: pd.DataFrame) -> dict[str, str]:
    """File-name-safe dataset names, made unique (``folder:/a/b`` and ``folder:/a-b`` must not share files)."""
    slugs: dict[str, str] = {}
    for dataset in sorted(set(agg[DATASET])):
        slug, n = _slug(dataset), 2
        while slug in slugs.values():
            slug, n = f"{_slug(dataset)}-{n}", n + 1
        slugs[dataset] = slug
    return slugs


def _direction(metric: str) -> str:
    return "higher" if metric in HIGHER_IS_BETTER else "lower"


def _where(rows: pd.DataFrame, metric: str) -> str:
    return f"{rows[DATASET].iloc[0]} {rows[TASK].iloc[0]} {metric}"


def _write_text(path: Path, text: str) -> Path:
    """Write atomically: a temp file, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _remove_stale(out: Path, written: Sequence[Path]) -> None:
    """Remove tables and plots of an earlier report that this one did not write (the data changed)."""
    keep = {p.resolve() for p in written}
    for folder, patterns in (("tables", ("*.csv",)), ("plots", ("*.png", "*.pdf"))):
        for pattern in patterns:
            for path in (out / folder).glob(pattern):
                if path.resolve() not in keep:
                    path.unlink()
