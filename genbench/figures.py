"""The report's figures, drawn from :func:`genbench.summary.aggregate`'s table alone.

For every (dataset, task, metric) whose registered :class:`~genbench.metrics.Metric` says ``plot``:

- ``<dataset>__<task>__<metric>__bars``: every column, one bar per (model, latent dim), panels per protocol;
- ``<dataset>__<task>__<metric>__sweep``: the metric against the variants' level (``level_name`` and
  ``level`` columns of ``results.csv``: occlusion fraction, block size, number of projections K, or any
  axis a user's task declares), one column of panels per level name with two or more levels, rows of panels
  per (protocol, split); a log x axis when the levels span a factor of 8 or more;
- ``<dataset>__<task>__<metric>__latent-dim``: the metric against the latent dim, when two or more are
  present; a method without a latent code is a dotted horizontal line.

And per dataset, for each trade-off of :data:`TRADEOFFS` whose two cells are present,
``<dataset>__tradeoff__<name>``: one point per (model, latent dim), x and y the two metrics, error bars the
std over seeds (e.g. held-out recovery error against FID: "this one samples better, that one recovers better").

Each model has one colour in every plot of a report (:func:`model_colors`); latent dims differ by line style
and marker (bars: hatching). A plot whose data are absent is skipped; the reason goes to the log and to ``summary.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure  # drawn without pyplot: no global state, no display, nothing to close

from genbench.fsutil import atomic_write
from genbench.results import DATASET, FLAG, LATENT_DIM, LEVEL, LEVEL_NAME, LEVEL_UNIT, METRIC, MODEL, PROTOCOL, SPLIT, TASK, VARIANT
from genbench.summary import groups as _groups
from genbench.summary import has_latent_code, keys as _keys, metric_info, row_label

log = logging.getLogger(__name__)

#: the trade-off pictures: name -> ((task, variant, protocol, split, metric) of x, the same of y); variant
#: None: the task's only variant
TRADEOFFS: dict[str, tuple[tuple, tuple]] = {
    "recovery-vs-fid": (("reconstruction", "identity", "clean-train", "test", "mae"),
                        ("samples", None, "clean-train", "test", "fid")),
}

_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
_HATCHES = ("", "//", "..", "xx", "\\\\", "--")


def plot_metrics() -> list[str]:
    """The registered metrics marked ``plot``, in registration order."""
    from genbench.registry import METRICS

    return [m.name for m in METRICS.as_dict().values() if m.plot]


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


def report_figures(agg: pd.DataFrame, metrics: Sequence[str] | None = None,
                   colors: dict[str, tuple] | None = None,
                   skipped: list[str] | None = None) -> Iterator[tuple[str, Figure]]:
    """``(file stem, figure)`` of every plot of the report, drawn from :func:`~genbench.summary.aggregate`'s
    table; ``metrics`` defaults to :func:`plot_metrics`; ``skipped`` collects why a plot was not drawn."""
    from genbench.report import dataset_slugs, slug

    metrics = plot_metrics() if metrics is None else list(metrics)
    colors = model_colors(agg[MODEL]) if colors is None else colors
    dims = sorted({int(d) for d in agg[LATENT_DIM] if has_latent_code(d)})
    style = _Style(colors, {d: i for i, d in enumerate(dims)}, skipped)
    slugs = dataset_slugs(agg)
    for (dataset, task, metric), rows in _groups(agg[agg[METRIC].isin(metrics)], [DATASET, TASK, METRIC]):
        stem = f"{slugs[dataset]}__{slug(task)}__{slug(metric)}"
        title = f"{dataset}: {task}, {metric} ({metric_info(metric).direction} is better)"
        drawers = {"bars": _bars, "sweep": _sweeps, "latent-dim": _latent}
        for kind, draw in drawers.items():
            fig = draw(rows, style, metric)
            if fig is None:
                continue
            fig.suptitle(title + _bars_caption(rows, "\n"),
                         fontsize=10)
            yield f"{stem}__{kind}", fig
    for (dataset,), rows in _groups(agg, [DATASET]):
        for name, (x, y) in TRADEOFFS.items():
            fig = _tradeoff(rows, style, x, y)
            if fig is not None:
                fig.suptitle(f"{dataset}: {x[0]} {x[4]} vs {y[0]} {y[4]}\nlower-left is better"
                             + _bars_caption(rows, "; "), fontsize=10)
                yield f"{slugs[dataset]}__tradeoff__{name}", fig


def write_plots(agg: pd.DataFrame, folder: Path, metrics: Sequence[str] | None = None,
                colors: dict[str, tuple] | None = None, skipped: list[str] | None = None) -> list[Path]:
    """Save every figure of :func:`report_figures` as PNG and PDF under ``folder``; returns the paths
    (``skipped``: why the others were not drawn)."""
    written: list[Path] = []
    for stem, fig in report_figures(agg, metrics, colors, skipped):
        written += save_figure(fig, folder, stem)
    return written


def save_figure(fig: Figure, folder: Path, stem: str) -> list[Path]:
    """``folder/<stem>.png`` and ``.pdf``, each written atomically; no creation date in the PDF (the same
    table gives the same file). The one place a report figure is saved."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "pdf"):
        path = folder / f"{stem}.{ext}"
        atomic_write(path, lambda tmp: fig.savefig(tmp, format=ext, dpi=120,
                                                   metadata={"CreationDate": None} if ext == "pdf" else None))
        paths.append(path)
        fig.set_layout_engine("none")  # laid out by the first save; the second reuses it (time)
    return paths


class _Style:
    """Colour per model; line style, marker and hatch per latent dim (none: a method without a latent code)."""

    def __init__(self, colors: dict[str, tuple], dims: dict[int, int], skipped: list[str] | None = None) -> None:
        self.colors, self.dims = colors, dims
        self.skipped = [] if skipped is None else skipped  # why a plot was not drawn, for summary.md and the log

    def skip(self, why: str) -> None:
        log.info(why)
        self.skipped.append(why)

    def line(self, model: str, d: object) -> dict:
        i = self.dims.get(int(d)) if has_latent_code(d) else None
        if i is None:  # a method without a latent code (a reference, a floor): dashed, thin, apart from the models
            return {"color": self.colors[model], "linestyle": "--", "marker": "x", "linewidth": 0.9}
        return {"color": self.colors[model], "linestyle": _LINESTYLES[i % len(_LINESTYLES)],
                "marker": _MARKERS[i % len(_MARKERS)]}

    def bar(self, model: str, d: object) -> dict:
        i = self.dims.get(int(d)) if has_latent_code(d) else None
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
            mine = panel[(panel[MODEL] == model) & _same_dim(panel[LATENT_DIM], d)]
            if mine.empty:
                continue
            x = np.array([groups[g] for g in zip(mine[VARIANT], mine[SPLIT])]) + (j - (len(models) - 1) / 2) * width
            ax.bar(x, mine["mean"], width, yerr=mine["std"], label=row_label(model, d),
                   error_kw={"elinewidth": 0.8, "capsize": 1.5}, **style.bar(model, d))
            _mark_degenerate(ax, x, mine)
        ax.set_xticks(range(len(groups)), [f"{v}\n{s}" for v, s in groups], fontsize=7)
        ax.set_title(protocol, fontsize=9)
        ax.set_ylabel(metric_info(metric).label)
    _legend(fig, axes)
    return fig


def _sweeps(rows: pd.DataFrame, style: _Style, metric: str) -> Figure | None:
    """The metric against the variants' level: a column of panels per level name with two or more levels."""
    columns = []
    for name, points in _groups(rows[rows[LEVEL_NAME] != ""], [LEVEL_NAME]):
        points = points.assign(x=points[LEVEL].astype(float))
        if points["x"].nunique() >= 2:
            unit = next((u for u in points[LEVEL_UNIT] if u), "")
            columns.append((name[0], f"{name[0]} ({unit})" if unit else name[0], points))
        else:
            style.skip(f"no {name[0]} sweep for {_where(rows, metric)}: fewer than two levels")
    if not columns:
        return None
    return _line_grid(rows, style, metric, columns)


def _line_grid(rows: pd.DataFrame, style: _Style, metric: str, columns: list) -> Figure:
    """Rows of panels per (protocol, split), one column per (kind, x label, points); a line per model row;
    x ticks at the levels present, on a log axis when they span a factor of 8 or more."""
    panel_rows = _keys(pd.concat([p for _, _, p in columns]), [PROTOCOL, SPLIT])
    fig, axes = _panels(len(panel_rows), len(columns), 3.4, 2.6)
    for (protocol, split), line in zip(panel_rows, axes):
        for ax, (_, xlabel, points) in zip(line, columns):
            panel = points[(points[PROTOCOL] == protocol) & (points[SPLIT] == split)]
            _lines(ax, panel, style, _keys(rows, [MODEL, LATENT_DIM]))
            if not panel.empty:
                levels = sorted(points["x"].unique())
                if levels[0] > 0 and levels[-1] / levels[0] >= 8:
                    ax.set_xscale("log")
                    ax.minorticks_off()
                ax.set_xticks(levels, [f"{x:g}" for x in levels])
            ax.set_title(f"{protocol} / {split}", fontsize=9)
            ax.set_xlabel(xlabel, fontsize=8)
            ax.set_ylabel(metric_info(metric).label)
    _legend(fig, axes.ravel())
    return fig


def _latent(rows: pd.DataFrame, style: _Style, metric: str) -> Figure | None:
    """Error vs latent dim: rows of panels per (protocol, split), a column per variant; references dotted."""
    dims = sorted({int(d) for d in rows[LATENT_DIM] if has_latent_code(d)})
    if len(dims) < 2:
        style.skip(f"no latent-dim plot for {_where(rows, metric)}: {len(dims)} latent dim(s)")
        return None
    panel_rows = _keys(rows, [PROTOCOL, SPLIT])
    variants = list(pd.unique(rows[VARIANT]))
    fig, axes = _panels(len(panel_rows), len(variants), 3.0, 2.4)
    for (protocol, split), line in zip(panel_rows, axes):
        for ax, variant in zip(line, variants):
            panel = rows[(rows[PROTOCOL] == protocol) & (rows[SPLIT] == split) & (rows[VARIANT] == variant)]
            for model in pd.unique(panel[MODEL]):
                mine = panel[panel[MODEL] == model]
                latent = mine[LATENT_DIM].map(has_latent_code).astype(bool)
                for mean in mine.loc[~latent, "mean"]:
                    ax.axhline(mean, color=style.colors[model], linestyle=":", linewidth=1.2, label=model)
                mine = mine[latent].assign(x=lambda r: r[LATENT_DIM].astype(float)).sort_values("x")
                if not mine.empty:
                    ax.errorbar(mine["x"], mine["mean"], yerr=mine["std"], color=style.colors[model], marker="o",
                                markersize=4, linewidth=1.2, capsize=2, label=model)
                    _mark_degenerate(ax, mine["x"], mine)
            if not panel.empty:
                ax.set_xticks(dims, [str(d) for d in dims])
            _empty_note(ax, panel)
            ax.set_title(f"{variant} / {protocol} / {split}", fontsize=8)
            ax.set_xlabel("latent dim", fontsize=8)
            ax.set_ylabel(metric_info(metric).label)
    _legend(fig, axes.ravel())
    return fig


def capacity_figure(agg: pd.DataFrame, capacity: pd.DataFrame, colors: dict[str, tuple],
                    metric: str = "mae") -> tuple[str, Figure] | None:
    """Held-out reconstruction ``metric`` (test) against the fit's parameter count (log x), one point per model and
    latent dim (error bars: std over seeds); a method with 0 parameters sits at the left edge. None without data."""
    from genbench.report import slug

    rows = agg[(agg[TASK] == "reconstruction") & (agg[SPLIT] == "test") & (agg[METRIC] == metric)]
    if rows.empty or capacity is None or capacity.empty:
        return None
    cap = capacity.assign(d=capacity[LATENT_DIM].map(lambda v: int(v) if has_latent_code(v) else -1))
    points = rows.assign(d=rows[LATENT_DIM].map(lambda v: int(v) if has_latent_code(v) else -1)).merge(
        cap[[MODEL, "d", "parameters", "code"]], on=[MODEL, "d"])
    if points.empty:
        return None
    dims = sorted({int(d) for d in points[LATENT_DIM] if has_latent_code(d)})
    style = _Style(colors, {d: i for i, d in enumerate(dims)})
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.subplots()
    floor_x = max(1.0, points.loc[points["parameters"] > 0, "parameters"].min() / 3) if (points["parameters"] > 0).any() \
        else 1.0
    for _, p in points.iterrows():
        look = style.line(p[MODEL], p[LATENT_DIM])
        x = p["parameters"] if p["parameters"] > 0 else floor_x
        ax.errorbar(x, p["mean"], yerr=p["std"] if p["count"] >= 2 else None, color=look["color"],
                    marker=look["marker"], linestyle="none", markersize=6, capsize=2,
                    label=row_label(p[MODEL], p[LATENT_DIM]) + (" (binary code)" if p["code"] == "binary" else ""))
    ax.set_xscale("log")
    ax.set_xlabel("parameters learned by the fit (log; 0 drawn at the left edge)", fontsize=8)
    ax.set_ylabel(f"reconstruction {metric} (test): {metric_info(metric).label}", fontsize=8)
    _legend(fig, [ax])
    dataset = str(points[DATASET].iloc[0])
    fig.suptitle(f"{dataset}: held-out {metric} vs capacity (equal latent dim is not equal capacity)", fontsize=10)
    return f"{slug(dataset)}__capacity__reconstruction-{slug(metric)}", fig


def _tradeoff(rows: pd.DataFrame, style: _Style, x: tuple, y: tuple) -> Figure | None:
    """One point per (model, latent dim) present in both cells ``x`` and ``y`` (task, variant, protocol, split,
    metric), error bars the std over seeds; None when either cell is absent."""
    def cell(task: str, variant: str | None, protocol: str, split: str, metric: str) -> pd.DataFrame:
        mine = rows[(rows[TASK] == task) & (rows[PROTOCOL] == protocol) & (rows[SPLIT] == split)
                    & (rows[METRIC] == metric) & ((rows[VARIANT] == variant) if variant else True)]
        return mine.assign(d=mine[LATENT_DIM].map(lambda v: int(v) if has_latent_code(v) else -1))

    xs, ys = cell(*x), cell(*y)
    if xs.empty or ys.empty:
        return None  # one of the two tasks did not run: no trade-off was asked for
    points = xs.merge(ys, on=[MODEL, "d"], suffixes=("_x", "_y"))
    if points.empty:
        style.skip(f"no trade-off plot {x[0]} {x[4]} vs {y[0]} {y[4]} for {rows[DATASET].iloc[0]}: no model has both")
        return None
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.subplots()
    for _, p in points.iterrows():
        d = p[f"{LATENT_DIM}_x"]
        look = style.line(p[MODEL], d)
        one_seed = p["count_x"] < 2 and p["count_y"] < 2
        ax.errorbar(p["mean_x"], p["mean_y"], xerr=None if one_seed else p["std_x"],
                    yerr=None if one_seed else p["std_y"], color=look["color"], marker=look["marker"],
                    linestyle="none", markersize=6, capsize=2, label=row_label(p[MODEL], d))
    ax.set_xlabel(f"{x[0]} {x[4]} ({x[3]}): {metric_info(x[4]).label}", fontsize=8)
    ax.set_ylabel(f"{y[0]} {y[4]} ({y[3]}): {metric_info(y[4]).label}", fontsize=8)
    _legend(fig, [ax])
    return fig


def _panels(n_rows: int, n_cols: int, width: float, height: float) -> tuple[Figure, np.ndarray]:
    """A figure of ``n_rows x n_cols`` panels (axes[i, j]) sharing the y-axis within each row; a single column
    is laid out as one row instead."""
    shape = (1, n_rows) if n_cols == 1 else (n_rows, n_cols)
    fig = Figure(figsize=(max(6.5, 2.0 + width * shape[1]), 1.0 + height * shape[0]), layout="constrained")
    axes = fig.subplots(*shape, squeeze=False, sharey="row")  # one y-range per row of panels: comparable by eye
    return fig, (axes.T if n_cols == 1 else axes)


def _lines(ax: Axes, points: pd.DataFrame, style: _Style, models: list[tuple[str, int]]) -> None:
    for model, d in models:
        mine = points[(points[MODEL] == model) & _same_dim(points[LATENT_DIM], d)].sort_values("x")
        if not mine.empty:
            ax.errorbar(mine["x"], mine["mean"], yerr=mine["std"], label=row_label(model, d), markersize=4,
                        capsize=2, **{"linewidth": 1.2, **style.line(model, d)})
            _mark_degenerate(ax, mine["x"], mine)
    _empty_note(ax, points)


#: the legend entry of a point or bar that is degenerate by construction (results.csv's flag)
DEGENERATE_LABEL = "‡ degenerate by construction"


def _mark_degenerate(ax: Axes, x: Iterable[float], points: pd.DataFrame) -> None:
    """A white cross over each point of ``points`` whose cell is flagged degenerate (``flag``)."""
    if FLAG not in points:
        return
    flagged = points[FLAG].fillna("").astype(str).ne("").to_numpy()
    if flagged.any():
        ax.scatter(np.asarray(list(x), dtype=float)[flagged], points["mean"].to_numpy()[flagged], marker="X", s=40,
                   facecolor="white", edgecolor="black", linewidth=0.8, zorder=5, label=DEGENERATE_LABEL)


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


def _bars_caption(rows: pd.DataFrame, sep: str) -> str:
    """``error bars: std over n = 2 seeds`` (n as it is: ``n = 1-3`` where cells differ); "" when no value has
    two seeds, and then no error bar is drawn (a std of one value is NaN)."""
    counts = sorted({int(c) for c in rows["count"]})
    if counts[-1] < 2:
        return ""
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"{sep}error bars: std over n = {n} seeds"


def _same_dim(column: pd.Series, d: object) -> pd.Series:
    """Rows of ``column`` equal to latent dim ``d`` (an empty latent dim matches an empty one)."""
    if has_latent_code(d):
        return column.map(lambda v: has_latent_code(v) and int(v) == int(d)).astype(bool)
    return ~column.map(has_latent_code).astype(bool)


def _where(rows: pd.DataFrame, metric: str) -> str:
    return f"{rows[DATASET].iloc[0]} {rows[TASK].iloc[0]} {metric}"
