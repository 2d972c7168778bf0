"""Figures of the fits themselves, beside the comparison plots of :mod:`genbench.figures`:

- ``plots/<dataset>__training-curves``: every clean fit's training curves (``fits.jsonl``'s
  ``history``, :func:`genbench.capacity.curves`), one panel per model (its own loss and scale), one
  line per latent dim and seed (and loss component or RBM layer);
- ``plots/<dataset>__cost__infer-seconds-vs-<metric>``: inference cost against recovery quality, one
  point per model and latent dim: the held-out reconstruction ``metric`` (test) against
  ``infer_seconds`` (seconds per image, log x), error bars over seeds (n >= 2).

Both are views of what a run already records; a run without them (older runs: no ``history``)
draws nothing and says so.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from genbench.results import DATASET, LATENT_DIM, METRIC, MODEL, PROTOCOL, SPLIT, STATUS, STATUS_OK, TASK, VALUE, VARIANT
from genbench.summary import has_latent_code, metric_info, row_label


def training_curves_figure(fits: list[dict[str, Any]], dataset: str, colors: dict[str, tuple]) -> Figure | None:
    """The clean fits' curves of ``dataset`` (module docstring); None when none recorded a history."""
    lines = [f for f in fits if f.get("dataset") == dataset and f.get("fit") == "clean" and f.get("history")]
    if not lines:
        return None
    models = list(dict.fromkeys(f["model"] for f in lines))
    n_cols = min(4, len(models))
    n_rows = math.ceil(len(models) / n_cols)
    fig = Figure(figsize=(max(6.5, 3.2 * n_cols), 1.0 + 2.5 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False).ravel()
    styles = ("-", "--", ":", "-.")
    for ax, model in zip(axes, models):
        mine = [f for f in lines if f["model"] == model]
        dims = sorted({f["latent_dim"] for f in mine if f["latent_dim"] is not None})
        for f in mine:
            for j, (name, values) in enumerate(f["history"].items()):
                if not values:
                    continue
                shade = 0.55 + 0.45 * (dims.index(f["latent_dim"]) + 1) / len(dims) if f["latent_dim"] in dims else 1.0
                color = tuple(c * shade for c in colors.get(model, (0.3, 0.3, 0.3, 1.0))[:3])
                label = f"{row_label(model, f['latent_dim'])} s{f['seed']}" + (f" {name}" if len(f["history"]) > 1 else "")
                ax.plot(np.arange(1, len(values) + 1), values, linestyle=styles[j % len(styles)], color=color,
                        linewidth=1.0, label=label)
        names = list(mine[0]["history"])
        what = mine[0].get("loss_name") or ", ".join(names)
        ax.set_title(f"{model}: {what}", fontsize=8)
        ax.set_xlabel("epoch (PCA: EM iteration)", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=6)
    for ax in axes[len(models):]:
        ax.set_visible(False)
    fig.suptitle(f"{dataset}: training curves of the clean fits (each model's own loss and scale)", fontsize=10)
    return fig


def cost_figure(df: pd.DataFrame, dataset: str, colors: dict[str, tuple], metric: str = "mae") -> Figure | None:
    """Inference seconds per image vs held-out reconstruction ``metric`` (module docstring); None without data."""
    ok = df[(df[DATASET] == dataset) & (df[STATUS] == STATUS_OK) & (df[TASK] == "reconstruction")
            & (df[VARIANT] == "identity") & (df[PROTOCOL] == "clean-train") & (df[SPLIT] == "test")
            & (df[METRIC] == metric)]
    ok = ok[np.isfinite(ok["infer_seconds"]) & (ok["infer_seconds"] > 0)]
    if ok.empty:
        return None
    key = ok[LATENT_DIM].map(lambda v: int(v) if has_latent_code(v) else -1)
    points = ok.assign(d=key).groupby([MODEL, "d"], sort=False).agg(
        mean=(VALUE, "mean"), std=(VALUE, "std"), n=(VALUE, "count"), seconds=("infer_seconds", "mean")).reset_index()
    fig = Figure(figsize=(7.0, 4.4), layout="constrained")
    ax = fig.subplots()
    markers = "osD^v"
    dims = sorted({d for d in points["d"] if d >= 0})
    for _, p in points.iterrows():
        d = None if p["d"] < 0 else int(p["d"])
        ax.errorbar(p["seconds"], p["mean"], yerr=p["std"] if p["n"] >= 2 else None, linestyle="none", capsize=2,
                    marker=markers[dims.index(d) % len(markers)] if d in dims else "x", markersize=6,
                    color=colors.get(p[MODEL], (0.3, 0.3, 0.3, 1.0)), label=row_label(p[MODEL], d))
    ax.set_xscale("log")
    ax.set_xlabel("inference seconds per image (log; the row's infer_seconds)", fontsize=8)
    ax.set_ylabel(f"reconstruction {metric} (test): {metric_info(metric).label}", fontsize=8)
    ax.legend(fontsize=7, loc="best")
    counts = sorted(set(points["n"]))
    bars = f"; error bars: std over n = {counts[-1]} seeds" if counts[-1] >= 2 else ""
    fig.suptitle(f"{dataset}: inference cost vs held-out {metric}{bars}", fontsize=10)
    return fig


def write_fit_figures(df: pd.DataFrame, fits: list[dict[str, Any]], out: Path, colors: dict[str, tuple],
                      save: Any, skipped: list[str]) -> list[Path]:
    """Both figures per dataset, through ``save(fig, stem) -> [paths]``; what cannot be drawn goes to ``skipped``."""
    from genbench.report import slug

    written: list[Path] = []
    for dataset in pd.unique(df[DATASET]):
        curves = training_curves_figure(fits, str(dataset), colors)
        if curves is None and fits:  # no fits.jsonl at all: an older run, nothing to say
            skipped.append(f"no training curves for {dataset}: no clean fit recorded its history (fits.jsonl)")
        elif curves is not None:
            written += save(curves, f"{slug(str(dataset))}__training-curves")
        cost = cost_figure(df, str(dataset), colors)
        if cost is None:
            skipped.append(f"no inference-cost plot for {dataset}: no ok reconstruction test row with infer_seconds")
        else:
            written += save(cost, f"{slug(str(dataset))}__cost__infer-seconds-vs-mae")
    return written
