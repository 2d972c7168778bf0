"""The report of one or more runs: summary, tables and plots, all regenerated from ``results.csv``.

Every file is a view of the one tidy table (``genbench/results.py``); nothing else is read except the
kept images that :func:`genbench.plots.write_grids` turns into grids. ``write_report([run_dir])`` writes::

    <out>/
      summary.md                               markdown pivots: per task and metric, models x columns
      tables/aggregated.csv                    long format, one row per aggregated cell (below)
      tables/<dataset>__<task>__<metric>.csv   wide pivot of one task and metric (below)
      tables/<dataset>__<task>__<metric>.tex   the same as a LaTeX booktabs tabular
      plots/<dataset>__<task>__<metric>__bars.{png,pdf}         every column, one bar per model
      plots/<dataset>__<task>__<metric>__sweep.{png,pdf}        the metric vs the variants' level (any task)
      plots/<dataset>__<task>__<metric>__latent-dim.{png,pdf}   the metric vs latent dim
      grids/                                   image grids (single-run report into the run folder only)

Tables (every metric with ``ok`` rows; failed and unsupported rows are listed in ``summary.md`` only):

- ``aggregated.csv`` (:func:`genbench.summary.aggregate`): columns ``dataset, task, metric, model, latent_dim,
  variant, level_name, level, level_unit, protocol, split, mean, std, count, seeds, best, beats_floor``: mean and sample std (ddof=1; empty for one value) over seeds, ``count`` values averaged,
  ``seeds`` space-separated, ``best`` True for the best mean of its (dataset, task, metric, variant, protocol,
  split) column by the registered metric's direction (ties all True), the cells ``summary.md`` puts in bold.
- ``<dataset>__<task>__<metric>.csv``: columns ``model, latent_dim``, then per (variant, protocol, split) column
  ``<variant>/<protocol>/<split>:mean`` and ``...:std``; an empty cell where a model has no value.
  Names are slugged: characters outside ``[A-Za-z0-9_.-]`` become ``-``.

Example::

    >>> agg = pd.read_csv("results/RUN/tables/aggregated.csv")
    >>> wide = pd.read_csv("results/RUN/tables/mnist5k__inpainting__mae.csv", index_col=["model", "latent_dim"])
    >>> wide["salt-pepper-0.5/clean-train/test:mean"]

Plots (:mod:`genbench.figures`; the registered metrics marked ``plot``; error bars are the std over seeds,
none for one seed): the sweep plots read the ``level_name`` / ``level`` columns the tasks' variants write, so
a user's task gets them with no change here; a plot is skipped, and the reason logged, when its data are
absent (fewer than two levels of an axis, fewer than two latent dims).

Several runs: rows are pooled by dataset, so runs of one dataset with different seeds give mean ± std over all
their seeds, and several datasets get their own tables, plots and ``summary.md`` section. Only replicates are
pooled (:mod:`genbench.replicates`): runs whose ``config.json`` settings differ in more than what selects cells
(data as used, a shared model's or task's settings, ``n_eval``, a dry run beside a real one) are refused with
one line naming the settings; so is the same seed of the same cell (``ok``) in two runs. A dry run's report
is marked as such and ranks nothing (no "best"). The report goes to ``out`` (default
``report-<timestamp>`` beside the first run folder); image grids stay in each run folder. A single-run report
goes into the run folder itself and (re)writes its grids.

Files are written atomically (temp file, then ``os.replace``); plots and tables that the previous report into
``out`` wrote (listed in ``out/.genbench-report.json``) and this one did not are removed; nothing else is. Bad input (no ``results.csv``, an unreadable one) raises
:class:`ReportInputError` before anything is written.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from genbench.fsutil import write_text
from genbench.figures import model_colors, save_figure, write_plots
from genbench.results import CONFIG_HASH, DATASET, LATENT_DIM, LEVEL, LEVEL_NAME, LEVEL_UNIT, METRIC, MODEL, PROTOCOL, RUN_ID, SEED, SPLIT, STATUS, STATUS_OK, VALUE, VARIANT, TASK, read_results
from genbench.replicates import NotReplicates, check_replicates, dry_runs, split_varies
from genbench.summary import CELL_KEYS, aggregate, groups, keys, metric_info, row_label, summary_markdown

_SOURCE = "_source"  # which run folder a row came from (overlap check only)


class ReportInputError(ValueError):
    """A run folder cannot be reported (no results.csv, unreadable, overlapping runs): one-line message."""


# ------------------------------------------------------------------------------------------- entry point
def write_report(run_dirs: Sequence[str | Path], out: str | Path | None = None, *,
                 metrics: Sequence[str] | None = None, plot_metrics: Sequence[str] | None = None,
                 log: Callable[[str], None] | None = None) -> Path:
    """Write the report of ``run_dirs`` into ``out`` (see the module docstring) and return ``out``.

    ``out`` defaults to the run folder for one run, ``report-<YYYYmmdd-HHMMSS>`` beside the first run folder
    for several. ``metrics`` are the tables of ``summary.md`` (default: the registered metrics marked
    ``summary``); ``plot_metrics`` get plots (default: those marked ``plot``). ``log`` hears which plots were not
    drawn (``summary.md`` lists them all).
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        raise TypeError(f"write_report takes a sequence of run folders, e.g. [{str(run_dirs)!r}]")
    dirs: list[Path] = []
    for folder in map(Path, run_dirs):  # the same folder twice is one run
        if folder.resolve() not in {d.resolve() for d in dirs}:
            dirs.append(folder)
    if not dirs:
        raise ReportInputError("a report needs one or more run folders")
    for folder in dirs:  # before any lock or folder is made: a wrong path writes nothing
        if not (folder / "results.csv").is_file():
            raise ReportInputError(f"{folder} is not a genbench run folder (no results.csv in it)")
    out = _out_dir(dirs, out)
    if any(out.resolve() == d.resolve() for d in dirs):  # writing into a run folder: be its one writer
        from genbench.runlock import RunLock

        with RunLock(out, "write the report into"):
            return _write_report(dirs, out, metrics, plot_metrics, log)
    return _write_report(dirs, out, metrics, plot_metrics, log)


def _write_report(dirs: list[Path], out: Path, metrics: Sequence[str] | None,
                  plot_metrics: Sequence[str] | None, log: Callable[[str], None] | None = None) -> Path:
    df = load_runs(dirs)
    dry = bool(dry_runs(dirs))
    agg = aggregate(df, metrics, rank=not dry, shared_images=not any(split_varies(d) for d in dirs))
    written = write_tables(agg, out / "tables")
    skipped: list[str] = []
    written += write_plots(agg, out / "plots", plot_metrics, model_colors(df[MODEL]), skipped)
    written += _write_capacity(dirs, agg, out, model_colors(df[MODEL]))
    if plot_metrics is None or len(plot_metrics):  # plot_metrics=(): no plots at all
        written += _write_fit_figures(dirs, df, out, model_colors(df[MODEL]), skipped)
    text = report_markdown(df, metrics, dirs, out, dry_run=dry)
    mixed = _mixed_versions(df)
    if mixed:
        text += (f"\n## Mixed versions\n\nThese rows come from different versions ({mixed}); the same config and seed "
                 f"give the same numbers within one torch version and device only (a quick-preset ABP cell moved by "
                 f"0.6 % between torch versions), so compare across them with care.\n")
        if log is not None:
            log(f"warning: the report pools rows of different versions ({mixed})")
    if skipped:
        text += "\n## Plots not drawn\n\n" + "\n".join(f"- {why}" for why in skipped) + "\n"
        if log is not None:
            log(f"report: {len(skipped)} plot(s) not drawn (summary.md says why), e.g. {skipped[0]}")
    written.append(write_text(out / "summary.md", text))
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
        if frame.attrs.get("added_columns"):
            frame = fill_levels(frame, Path(folder), frame.attrs["added_columns"])
        frames.append(frame.assign(**{_SOURCE: i}))
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    # the same result twice is one result, not two replicates: in two runs (e.g. a reference method in two
    # runs that sweep different latent dims) or in one (a cell appended twice); keep it once
    same = [DATASET, *CELL_KEYS, SEED, METRIC, CONFIG_HASH, VALUE, STATUS]
    df = df.drop_duplicates(subset=same, keep="first").reset_index(drop=True)
    _check_no_conflict(df, run_dirs)
    if len(frames) > 1:
        try:
            check_replicates(run_dirs)
        except NotReplicates as err:
            raise ReportInputError(str(err)) from None
        _check_no_overlap(df, run_dirs)
    return df.drop(columns=_SOURCE)


def fill_levels(frame: pd.DataFrame, folder: Path, added: Sequence[str]) -> pd.DataFrame:
    """An older table gets the columns it predates (``added``) from its tasks' registered variants, built as
    the run built them (its ``config.json`` task parameters, its image shape): the variant axis, and the
    degenerate flag; a method without a latent code, recorded with latent dim 0 then, gets none. A lookup of
    each row's variant and model, not parsing of a name; left as read where that cannot be had."""
    from genbench.config import build_run_config
    from genbench.planning import effective_data_config
    from genbench.registry import MODELS, get_task
    from genbench.results import FLAG

    try:
        blob = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        config = build_run_config(blob["config"])
        shape = (blob.get("data_used") or {}).get("image_shape")
        if shape is None:
            from genbench.data import load_data

            shape = list(load_data(effective_data_config(config)).train.shape[1:])
        out = frame.copy()
        specs = MODELS.as_dict()
        no_code = out[MODEL].map(lambda m: m in specs and not specs[m].capabilities.latent_code)
        out[LATENT_DIM] = out[LATENT_DIM].astype("Int64").mask(no_code.astype(bool))
        for task_name in pd.unique(out[TASK]):
            task = get_task(str(task_name))(config.task.get(str(task_name)))
            for v in task.variants(tuple(shape)):
                rows = (out[TASK] == task_name) & (out[VARIANT] == v.name)
                if not rows.any():
                    continue
                if LEVEL_NAME in added and v.level_name is not None:
                    out.loc[rows, LEVEL_NAME], out.loc[rows, LEVEL] = v.level_name, float(v.level)
                    out.loc[rows, LEVEL_UNIT] = v.level_unit
                if FLAG in added:
                    op = v.make_operator(tuple(shape), 0)
                    for (model, protocol), part in out[rows & (out[STATUS] == STATUS_OK)].groupby([MODEL, "protocol"]):
                        if model in specs:
                            out.loc[part.index, FLAG] = task.degenerate(op, protocol, specs[model].capabilities)
        return out
    except Exception:  # noqa: BLE001 -- a table too old to rebuild its variants: reported without sweeps
        return frame


def _check_no_conflict(df: pd.DataFrame, run_dirs: Sequence[Path]) -> None:
    """One run holding one seed of one cell's metric twice with different values: refuse, never pool."""
    cols = [_SOURCE, DATASET, *CELL_KEYS, SEED, METRIC]
    twice = df[df.duplicated(cols, keep=False)]
    if not twice.empty:
        row = twice.iloc[0]
        cell = f"{row_label(row[MODEL], row[LATENT_DIM])} {row[TASK]}/{row[VARIANT]}/{row[PROTOCOL]}/{row[SPLIT]}"
        raise ReportInputError(
            f"{run_dirs[int(row[_SOURCE])]}/results.csv holds seed {row[SEED]} of {cell} {row[METRIC]} twice "
            f"with different values "
            f"(two writers?); keep one of the cell's row sets, or --resume the run to redo failed cells")


def _check_no_overlap(df: pd.DataFrame, run_dirs: Sequence[Path]) -> None:
    ok = df[df[STATUS] == STATUS_OK]
    cols = [DATASET, MODEL, LATENT_DIM, TASK, VARIANT, PROTOCOL, SPLIT, SEED]
    for key, rows in ok.groupby(cols, sort=False, dropna=False):
        sources = sorted(rows[_SOURCE].unique())
        if len(sources) > 1:
            dataset, model, d, task, variant, protocol, split, seed = key
            a, b = sources[:2]
            raise ReportInputError(
                f"{run_dirs[a]} and {run_dirs[b]} both hold seed {seed} of {row_label(model, d)} {task}/{variant}/"
                f"{protocol}/{split} on {dataset}; a report pools the runs of a dataset over seeds, so give runs "
                f"with different seeds (or report them one by one)")


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
def wide_table(agg: pd.DataFrame) -> pd.DataFrame:
    """One (dataset, task, metric) slice of :func:`aggregate` as a wide pivot: ``model, latent_dim``, then
    ``<variant>/<protocol>/<split>:mean`` and ``:std`` per column."""
    rows = keys(agg, [MODEL, LATENT_DIM])
    cols = keys(agg, [VARIANT, PROTOCOL, SPLIT])
    stats = {k[:5]: k[5:] for k in zip(agg[MODEL], agg[LATENT_DIM].map(_none), agg[VARIANT], agg[PROTOCOL],
                                       agg[SPLIT], agg["mean"], agg["std"])}
    table = {MODEL: [m for m, _ in rows], LATENT_DIM: pd.array([d for _, d in rows], dtype="Int64")}
    for v, p, s in cols:
        for i, stat in enumerate(("mean", "std")):
            table[f"{v}/{p}/{s}:{stat}"] = [stats.get((m, d, v, p, s), (math.nan,) * 2)[i] for m, d in rows]
    return pd.DataFrame(table)


def write_tables(agg: pd.DataFrame, folder: Path) -> list[Path]:
    """``aggregated.csv``, and per (dataset, task, metric) one wide CSV and one LaTeX table; returns the paths."""
    written = [write_text(folder / "aggregated.csv", agg.to_csv(index=False, lineterminator="\n"))]
    slugs = dataset_slugs(agg)
    for (dataset, task, metric), rows in groups(agg, [DATASET, TASK, METRIC]):
        name = f"{slugs[dataset]}__{slug(task)}__{slug(metric)}"
        written.append(write_text(folder / f"{name}.csv", wide_table(rows).to_csv(index=False, lineterminator="\n")))
        written.append(write_text(folder / f"{name}.tex", latex_table(rows)))
    return written


_TEX = str.maketrans({c: "\\" + c for c in "&%$#_{}"} | {"~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                                                          "\\": r"\textbackslash{}"})


def latex_table(agg: pd.DataFrame) -> str:
    """One (dataset, task, metric) slice of :func:`aggregate` as a booktabs ``tabular`` (``\\usepackage{booktabs}``):
    rows "model (d=..)", one column per (variant, protocol, split), cells ``$mean \\pm std$`` as ``summary.md``
    shows them (best in bold, a dagger where a value does not beat the best floor), ``n`` seeds in the caption
    line above. Paste it inside a ``table`` environment."""
    info = metric_info(str(agg[METRIC].iloc[0]))
    col_keys = keys(agg, [VARIANT, PROTOCOL, SPLIT])
    cell = {(r[MODEL], _none(r[LATENT_DIM]), r[VARIANT], r[PROTOCOL], r[SPLIT]): r for r in agg.to_dict("records")}
    counts = sorted({int(c) for c in agg["count"]})
    lines = [f"% {agg[DATASET].iloc[0]}: {agg[TASK].iloc[0]}, {info.label} ({info.direction} is better); "
             f"mean $\\pm$ std over n = {'/'.join(map(str, counts))} seed(s)",
             "\\begin{tabular}{l" + "r" * len(col_keys) + "}", "\\toprule",
             " & ".join(["model"] + [" / ".join(str(p) for p in ck).translate(_TEX) for ck in col_keys]) + " \\\\",
             "\\midrule"]
    for model, d in keys(agg, [MODEL, LATENT_DIM]):
        cells = [row_label(model, d).translate(_TEX)]
        for ck in col_keys:
            r = cell.get((model, d, *ck))
            if r is None:
                cells.append("--")
                continue
            text = info.format_pair(r["mean"], r["std"]) if r["count"] >= 2 else info.format(r["mean"])
            text = text.replace("±", "\\pm")
            text = f"\\mathbf{{{text}}}" if r["best"] else text
            dagger = "^{\\dagger}" if r.get("beats_floor") is False else ""
            dagger += "^{\\ddagger}" if r.get("flag") else ""
            cells.append(f"${text}{dagger}$")
        lines.append(" & ".join(cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if (agg["beats_floor"] == False).any():  # noqa: E712 -- a nullable boolean column
        lines.append("% $^\\dagger$ not better than the best trivial floor of its column (baselines/floors.py)")
    if agg["flag"].astype(bool).any():
        lines.append("% $^\\ddagger$ degenerate by construction (results.csv's flag column says why)")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ markdown
def report_markdown(df: pd.DataFrame, metrics: Sequence[str] | None = None, run_dirs: Sequence[Path] = (),
                    out: Path | None = None, *, dry_run: bool = False) -> str:
    """``summary.md``: for one run of one dataset exactly :func:`genbench.results.summary_markdown`; otherwise a
    list of the runs (folders relative to ``out``) and one section per dataset. ``dry_run``: marked, unranked."""
    datasets = list(pd.unique(df[DATASET]))
    if len(run_dirs) <= 1 and len(datasets) <= 1:
        return summary_markdown(df, metrics, dry_run=dry_run)
    lines = ["# genbench report", "", "Runs (image grids stay in each run folder, under `grids/`):", ""]
    for folder in run_dirs:
        where = os.path.relpath(folder.resolve(), out.resolve()) if out is not None else str(folder)
        lines.append(f"- `{where}`")
    parts = ["\n".join(lines) + "\n"]
    parts += [summary_markdown(df[df[DATASET] == d], metrics, title=f"Dataset: {d}", level=2, dry_run=dry_run)
              for d in datasets]
    runs = ", ".join(str(r) for r in pd.unique(df[RUN_ID]))
    parts.append(f"{len(df)} rows from {len(run_dirs)} run(s): {runs}.\n")
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------- helpers
def slug(text: str) -> str:
    """File-name-safe text: characters outside ``[A-Za-z0-9_.-]`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", str(text)).strip("-") or "_"


def dataset_slugs(agg: pd.DataFrame) -> dict[str, str]:
    """File-name-safe dataset names, made unique (``folder:/a/b`` and ``folder:/a-b`` must not share files)."""
    slugs: dict[str, str] = {}
    for dataset in sorted(set(agg[DATASET])):
        name, n = slug(dataset), 2
        while name in slugs.values():
            name, n = f"{slug(dataset)}-{n}", n + 1
        slugs[dataset] = name
    return slugs


MANIFEST = ".genbench-report.json"  # in the report folder: the files the last report wrote there


def _remove_stale(out: Path, written: Sequence[Path]) -> None:
    """Remove the files that the previous report into ``out`` wrote (as its manifest lists them) and this
    one did not (the data changed); then record this report's files. Nothing else is ever deleted: a
    user's ``figure1.png`` beside the plots stays."""
    keep = {p.resolve() for p in written}
    manifest = out / MANIFEST
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("written", [])
    except (OSError, ValueError, AttributeError):
        previous = []  # no manifest (a first report, or one by an older genbench): delete nothing
    for rel in previous if isinstance(previous, list) else []:
        rel_path = Path(str(rel))
        if rel_path.is_absolute() or ".." in rel_path.parts or rel_path.parts[:1] not in (("tables",), ("plots",)):
            continue  # only what a report writes, only inside the report folder
        path = out / rel_path
        if path.resolve() not in keep and path.is_file():
            path.unlink()
    listed = sorted(str(p.resolve().relative_to(out.resolve())) for p in written
                    if p.resolve().is_relative_to(out.resolve()))
    write_text(manifest, json.dumps({"written": listed}, indent=1) + "\n")


def _write_capacity(dirs: list[Path], agg: pd.DataFrame, out: Path, colors: dict) -> list[Path]:
    """``tables/capacity.csv`` (genbench.capacity, from the runs' fits.jsonl) and its plot, when the runs recorded
    their fits (older runs did not: nothing is written)."""
    from genbench.capacity import capacity_table
    from genbench.figures import capacity_figure

    table = capacity_table(dirs)
    if table is None:
        return []
    written = [write_text(out / "tables" / "capacity.csv", table.to_csv(index=False, lineterminator="\n"))]
    for dataset in pd.unique(agg[DATASET]):
        drawn = capacity_figure(agg[agg[DATASET] == dataset], table[table[DATASET] == dataset], colors)
        if drawn is None:
            continue
        stem, fig = drawn
        written += save_figure(fig, out / "plots", stem)
    return written


def _write_fit_figures(dirs: list[Path], df: pd.DataFrame, out: Path, colors: dict, skipped: list[str]) -> list[Path]:
    """The training curves and the inference-cost plot (genbench.fitplots)."""
    from genbench.capacity import read
    from genbench.fitplots import write_fit_figures

    return write_fit_figures(df, read(dirs), out, colors, lambda fig, stem: save_figure(fig, out / "plots", stem),
                             skipped)


def _mixed_versions(df: pd.DataFrame) -> str:
    """``torch=2.1 / torch=2.4`` when the rows' ``versions`` differ in torch, numpy, the convolution path
    (``conv=im2col``; none: native) or the device; "" otherwise."""
    def key(text: str) -> tuple[str, ...]:
        return tuple(v for v in str(text).split() if v.split("=")[0] in ("torch", "numpy", "conv"))

    found = sorted({key(v) for v in df["versions"]})
    devices = sorted(set(df["device"]))
    parts = [" / ".join(" ".join(k) for k in found)] if len(found) > 1 else []
    parts += [" / ".join(devices)] if len(devices) > 1 else []
    return "; ".join(parts)


def _none(value: object) -> object:
    return None if pd.isna(value) else value
