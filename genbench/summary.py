"""Views of the results table: the one aggregation over seeds, pivots and ``summary.md``.

:func:`aggregate` is the only place that turns rows into "mean, std, count, best" per cell; the
markdown tables here, the CSV tables and the plots of :mod:`genbench.report` all read its output.
What a metric is (its direction, its format) comes from the metric registry
(:func:`genbench.registry.get_metric`); a metric found in a table but not registered in this
process is shown as an error (lower is better) with 4 significant digits.

Example::

    >>> df = read_results(run_dir / "results.csv")
    >>> agg = aggregate(df)                    # one row per (dataset, task, metric, cell), over seeds
    >>> summary_table(df, metric="mae")        # index (model, latent_dim), columns (task, variant, protocol, split)
    >>> write_summary(df, run_dir / "summary.md")
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import pandas as pd

from genbench.fsutil import write_text
from genbench.metrics import Metric, unregistered_metric
from genbench.registry import METRICS
from genbench.results import (CELL_KEYS, CI_HIGH, CI_LOW, DATASET, FLAG, LATENT_DIM, LEVEL, LEVEL_NAME, LEVEL_UNIT,
                              MESSAGE, METRIC, MODEL, PROTOCOL, RUN_ID, SEED, SPLIT, STATUS, STATUS_OK, TASK, VALUE,
                              VARIANT)
from genbench.uncertainty import seed_interval

#: columns of :func:`aggregate`'s table (``tables/aggregated.csv``)
AGG_COLUMNS = (DATASET, TASK, METRIC, MODEL, LATENT_DIM, VARIANT, LEVEL_NAME, LEVEL, LEVEL_UNIT, PROTOCOL, SPLIT,
               "mean", "std", "count", "seeds", "ci_low", "ci_high", "best", "beats_floor", FLAG)
#: the footnote of a value that does not beat its column's best floor (baselines/floors.py)
FLOOR_MARK = "†"
#: the footnote of a value that is degenerate by construction (results.csv's flag; Task.degenerate)
DEGENERATE_MARK = "‡"
PIVOT_INDEX = (MODEL, LATENT_DIM)
PIVOT_COLUMNS = (TASK, VARIANT, PROTOCOL, SPLIT)
Stat = Literal["mean", "std", "count"]
_STATS = ("mean", "std", "count")


def metric_info(name: str) -> Metric:
    """The registered :class:`~genbench.metrics.Metric` called ``name`` (a neutral stand-in if none is)."""
    registered = METRICS.as_dict()
    return registered[name] if name in registered else unregistered_metric(name)


def summary_metrics(present: Sequence[str] = ()) -> list[str]:
    """Metrics of ``summary.md``: the registered ones marked ``summary``, in registration order, then any
    others ``present`` in the table (e.g. a plug-in's metric not loaded here)."""
    registered = [m.name for m in METRICS.as_dict().values() if m.summary]
    return registered + [m for m in dict.fromkeys(present) if m not in METRICS.as_dict()]


def has_latent_code(latent_dim: object) -> bool:
    """False for the empty ``latent_dim`` of a method without a latent code."""
    return latent_dim is not None and not pd.isna(latent_dim)


def row_label(model: str, latent_dim: object) -> str:
    """``model (d=10)``; a method without a latent code (empty latent_dim) is just its name."""
    return f"{model} (d={int(latent_dim)})" if has_latent_code(latent_dim) else model


# ------------------------------------------------------------------------------------ aggregation
def aggregate(df: pd.DataFrame, metrics: Sequence[str] | None = None, *, rank: bool = True,
              shared_images: bool = True) -> pd.DataFrame:
    """The ``ok`` rows aggregated over seeds: columns :data:`AGG_COLUMNS`.

    ``mean`` and sample ``std`` (ddof=1; NaN for one value) over seeds, ``count`` values averaged,
    ``seeds`` space-separated, ``ci_low``/``ci_high`` the 95% interval of the mean over seeds and images
    (:func:`genbench.uncertainty.seed_interval`; ``shared_images``: every seed scored the same images, no
    ``data.vary_split``; NaN for a metric without per-cell intervals and one seed), ``flag`` why the cell is
    degenerate by construction ("" for none), ``best`` True for the best mean of its (dataset, task, metric, variant,
    protocol, split) column by the metric's direction (ties all True; NaN is never best), ``beats_floor``
    whether the mean is strictly better than the best trivial floor of its column (models whose
    ``capabilities.floor`` is set: ``zero``, ``mean-image``, ``naive-inverse``; empty for the floors
    themselves and where a column has none). Order: datasets
    and tasks as first seen, metrics as :func:`summary_metrics` (or ``metrics``) then the others, rows
    and columns of each (dataset, task, metric) as first seen."""
    ok = df[df[STATUS] == STATUS_OK]
    parts = []
    for (dataset, task), rows in groups(ok, [DATASET, TASK]):
        present = list(pd.unique(rows[METRIC]))
        order = summary_metrics(present) if metrics is None else list(metrics)
        for metric in [m for m in order if m in present] + [m for m in present if m not in order]:
            cells = rows[rows[METRIC] == metric].groupby(list(CELL_KEYS), sort=False, dropna=False)
            stats = cells[VALUE].agg(["mean", "std", "count"])
            stats["seeds"] = cells[SEED].agg(lambda s: " ".join(map(str, sorted(set(s)))))
            intervals = cells[[VALUE, CI_LOW, CI_HIGH]].apply(lambda c: seed_interval(
                c[VALUE], c[CI_LOW], c[CI_HIGH], shared_images=shared_images))
            stats["ci_low"], stats["ci_high"] = intervals.str[0], intervals.str[1]
            stats[FLAG] = cells[FLAG].agg(lambda f: next((x for x in f if x), ""))
            stats = stats.reset_index()
            stats[DATASET], stats[TASK], stats[METRIC] = dataset, task, metric
            # rank=False (a dry run): nothing is best; nor is anything on the out-of-domain split, unless the metric
            # is one of out-of-domain detection (a lower error on faces is not "better" for a digit model)
            ranked = ((stats[SPLIT] != "negative") | metric_info(metric).ranks_negative) & (stats[FLAG] == "")
            best = stats["mean"].where(ranked).groupby([stats[VARIANT], stats[PROTOCOL], stats[SPLIT]], sort=False,
                                                      dropna=False).transform(
                "max" if metric_info(metric).higher_is_better else "min")
            stats["best"] = (stats["mean"] == best) & ranked & rank
            stats["beats_floor"] = _beats_floor(stats, metric_info(metric).higher_is_better)
            parts.append(stats[list(AGG_COLUMNS)])
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in AGG_COLUMNS})
    agg = pd.concat(parts, ignore_index=True)
    agg["count"] = agg["count"].astype("int64")
    return agg


def floor_models(models: Sequence[str]) -> set[str]:
    """The names among ``models`` registered as trivial floors (``capabilities.floor``)."""
    from genbench.registry import MODELS

    registered = MODELS.as_dict()
    return {m for m in models if m in registered and getattr(registered[m].capabilities, "floor", False)}


def _beats_floor(stats: pd.DataFrame, higher_is_better: bool) -> pd.Series:
    floors = stats[MODEL].isin(floor_models(list(pd.unique(stats[MODEL]))))
    out = pd.Series(pd.NA, index=stats.index, dtype="boolean")
    if not floors.any():
        return out
    for _, column in stats.groupby([VARIANT, PROTOCOL, SPLIT], sort=False, dropna=False):
        floor = column.loc[floors[column.index], "mean"].dropna()
        if floor.empty:
            continue
        best = floor.max() if higher_is_better else floor.min()
        rest = column.index[~floors[column.index] & column["mean"].notna()]
        means = column.loc[rest, "mean"]
        out[rest] = (means > best) if higher_is_better else (means < best)
    return out


def summary_table(df: pd.DataFrame, metric: str = "mae", stat: Stat = "mean") -> pd.DataFrame:
    """Pivot the ``ok`` rows of one metric: index ``(model, latent_dim)``, columns ``(task, variant, protocol,
    split)``, values aggregated over seeds with ``stat`` (std is NaN for a single seed; count is a float)."""
    if stat not in _STATS:
        raise ValueError(f"stat must be one of {_STATS}, got {stat!r}")
    if not (df[METRIC] == metric).any() or df.loc[df[METRIC] == metric, STATUS].ne(STATUS_OK).all():
        present = sorted(df.loc[df[STATUS] == STATUS_OK, METRIC].unique().tolist())
        raise ValueError(f"no ok rows for metric {metric!r}; metrics with ok rows: {present}")
    agg = aggregate(df, [metric])
    agg = agg[agg[METRIC] == metric]
    table = agg.set_index([*PIVOT_INDEX, *PIVOT_COLUMNS])[stat].sort_index()
    return table.unstack(list(PIVOT_COLUMNS)).astype("float64")


# --------------------------------------------------------------------------------------- markdown
def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub markdown table: header row, ``|---|`` separator, one line per row; pipes in cells escaped and
    newlines turned into spaces."""

    def cell(v: object) -> str:
        return " ".join(str(v).split()).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def metric_table(agg: pd.DataFrame) -> str:
    """Markdown table of one (task, metric) slice of :func:`aggregate`: rows "model (d=..)", columns
    "variant / protocol / split", cells "mean ± std" over seeds (std omitted for one seed), best in bold."""
    info = metric_info(str(agg[METRIC].iloc[0]))
    col_keys = keys(agg, [VARIANT, PROTOCOL, SPLIT])
    row_keys = keys(agg, [MODEL, LATENT_DIM])
    cell = {(r[MODEL], _na(r[LATENT_DIM]), r[VARIANT], r[PROTOCOL], r[SPLIT]): r for r in agg.to_dict("records")}
    body = []
    marked, flags = False, set()
    for model, d in row_keys:
        cells = [row_label(model, d)]
        for ck in col_keys:
            r = cell.get((model, _na(d), *ck))
            if r is None:
                cells.append("—")
                continue
            text = info.format_pair(r["mean"], r["std"]) if r["count"] >= 2 else info.format(r["mean"])
            text = f"**{text}**" if r["best"] else text
            if r.get("beats_floor") is False:
                text += f" {FLOOR_MARK}"
                marked = True
            if r.get(FLAG):
                text += f" {DEGENERATE_MARK}"
                flags.add(str(r[FLAG]))
            cells.append(text)
        body.append(cells)
    header = ["model"] + [" / ".join(str(p) for p in ck) for ck in col_keys]
    table = markdown_table(header, body)
    if marked:
        floors = ", ".join(sorted(floor_models(list(pd.unique(agg[MODEL])))))
        table += (f"\n\n{FLOOR_MARK} not better than the best trivial floor of its column ({floors}: "
                  f"baselines/floors.py): the row measures no learning there.")
    for flag in sorted(flags):
        table += f"\n\n{DEGENERATE_MARK} {flag} (computed, never ranked)."
    return table


#: a summary table wider than this many value columns is cut into one table per protocol (then per split)
MAX_COLUMNS = 6


def narrow(rows: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """``rows`` of one (task, metric) as ``[(label, part)]``: one part when its columns fit :data:`MAX_COLUMNS`,
    else one per protocol, and a protocol still too wide one per (protocol, split); labels name the part."""
    def width(part: pd.DataFrame) -> int:
        return len(keys(part, [VARIANT, PROTOCOL, SPLIT]))

    if width(rows) <= MAX_COLUMNS:
        return [("", rows)]
    out = []
    for (protocol,), part in groups(rows, [PROTOCOL]):
        if width(part) <= MAX_COLUMNS:
            out.append((str(protocol), part))
        else:
            out += [(f"{protocol} / {split}", p) for (split,), p in groups(part, [SPLIT])]
    return out


def summary_markdown(df: pd.DataFrame, metrics: Sequence[str] | None = None, *, title: str = "genbench results",
                     level: int = 1, dry_run: bool = False) -> str:
    """A markdown report of the table: a title; per task and per metric (default :func:`summary_metrics`) a
    :func:`metric_table` with the metric's direction; the failed/unsupported cells, if any; the row and seed
    counts. The title is a level-``level`` heading and the sections one level below (``level=2`` nests the
    summary of one dataset in a larger report)."""
    h1, h2 = "#" * level, "#" * (level + 1)
    lines = [f"{h1} {title}", ""]
    runs = ", ".join(str(r) for r in pd.unique(df[RUN_ID])) if len(df) else ""
    datasets = ", ".join(str(d) for d in pd.unique(df[DATASET])) if len(df) else ""
    if runs:
        lines += [f"Run: {runs}. Dataset: {datasets}.", ""]
    if dry_run:
        lines += ["**DRY RUN** (`--dry-run`: one training step, 16 images per split): these numbers test that "
                  "the suite runs; they are not results, and nothing is ranked.", ""]
    agg = aggregate(df, rank=not dry_run)
    wanted = summary_metrics(pd.unique(df[METRIC])) if metrics is None else list(metrics)
    for task in pd.unique(agg[TASK]):
        for metric in wanted:
            rows = agg[(agg[TASK] == task) & (agg[METRIC] == metric)]
            if rows.empty:
                continue
            direction = f" ({metric_info(metric).direction} is better)"
            lines += [f"{h2} {task}: {metric}{direction}", ""]
            parts = narrow(rows)
            for label, part in parts:
                lines += ([f"*{label}*", ""] if len(parts) > 1 else []) + [metric_table(part), ""]
    bad = df[df[STATUS] != STATUS_OK]
    if not bad.empty:
        by_cell = bad.groupby([MODEL, LATENT_DIM, TASK, VARIANT, PROTOCOL, SPLIT, STATUS, MESSAGE], sort=False,
                              dropna=False)[SEED]
        cells = by_cell.agg(lambda s: ", ".join(map(str, sorted(set(s)))))  # one line per cell, not per metric
        body = [[row_label(m, d), t, v, p, s, seeds, st, _shorten(msg)]
                for (m, d, t, v, p, s, st, msg), seeds in cells.items()]
        header = ["model", "task", "variant", "protocol", "split", "seeds", "status", "message"]
        lines += [f"{h2} Failed or unsupported cells", "", markdown_table(header, body), ""]
    seeds = sorted(pd.unique(df[SEED]).tolist()) if len(df) else []
    seed_text = f"{len(seeds)} seed(s): {', '.join(map(str, seeds))}" if seeds else "no seeds"
    lines.append(f"{len(df)} rows; {seed_text}.")
    return "\n".join(lines) + "\n"


def write_summary(df: pd.DataFrame, path: str | Path, metrics: Sequence[str] | None = None) -> Path:
    """Write ``summary_markdown(df, metrics)`` to ``path`` (atomically: temp file, then rename); return it."""
    return write_text(path, summary_markdown(df, metrics))


# ---------------------------------------------------------------------------------------- helpers
def groups(df: pd.DataFrame, cols: list[str]) -> Iterator[tuple[tuple, pd.DataFrame]]:
    """``groupby(cols)`` in first-seen order (an empty frame gives nothing)."""
    if df.empty:
        return iter(())
    return iter(df.groupby(cols, sort=False, dropna=False))


def keys(df: pd.DataFrame, cols: list[str]) -> list[tuple]:
    """Distinct tuples of ``cols`` in first-seen order (missing values as None)."""
    return list(dict.fromkeys(tuple(_na(v) for v in t) for t in zip(*(df[c] for c in cols))))


def _na(value: object) -> object:
    return None if value is None or (not isinstance(value, str) and pd.isna(value)) else value


def _shorten(message: str, limit: int = 300) -> str:
    message = " ".join(str(message).split())
    return message if len(message) <= limit else message[: limit - 1] + "…"
