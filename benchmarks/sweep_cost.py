"""What a sweep costs, from its own run folder: worker-hours by model, fit kind and task, measured where the run
has finished and priced from its finished seeds where it has not, and the wall time that gives on N workers.

The run's cells and fits come from the planner (the run's saved config, as ``--resume`` plans them), so a cell
or fit not run yet is counted too. Measured seconds are the run's own: a fit's ``fit_seconds`` (once per fit,
however many cells share it) and each cell's ``eval_seconds`` (summed over its splits). An unfinished cell is
priced at the mean of the same cell at the seeds that finished (then at any latent dim), an unfinished fit at
the mean of its (model, latent dim, kind of fit) at other seeds (then at any latent dim); what has no such price is counted apart.

``--scale MODEL:KIND=FACTOR`` asks "what if": multiply the seconds of MODEL's (``*``: every model's) ``clean``
fits, ``corrupted`` (learn-from-corrupted) fits, ``fit`` (both) or ``eval``, e.g. ``abp:corrupted=0.5`` for
``n_epochs_corrupted = n_epochs / 2`` (a fit's time is linear in its epochs). Factors are the user's
assumptions; the table says which were applied.

Example::

    python benchmarks/sweep_cost.py results/reference/mnist5k-default-3seeds --workers 2 \\
        --scale abp:corrupted=0.5 --scale abp-gd:corrupted=0.5
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CELL = ["model", "latent_dim", "seed", "task", "variant", "protocol"]
KINDS = ("clean", "corrupted", "fit", "eval")


def _cell(c) -> tuple:
    return (c.model, -1 if c.latent_dim is None else c.latent_dim, c.seed, c.task, c.variant, c.protocol)


def measured(run_dir: Path) -> tuple[dict, dict, dict]:
    """Per cell (its key): eval seconds (sum over splits) and fit seconds; the plan's cells and each one's fit."""
    from genbench.planning import fit_keys
    from genbench.runner import Runner

    runner = Runner.resume(run_dir, log=lambda line: None)
    cells = runner.cells()
    learners = _learners(cells)  # once: a registry lookup per cell, not per cell pair
    fit_of = {_cell(c): (k, c.protocol != "clean-train" and c.model in learners)
              for c, k in zip(cells, fit_keys(cells, runner.config))}
    df = pd.read_csv(run_dir / "results.csv", low_memory=False)
    df = df[df.status == "ok"]
    df["latent_dim"] = df.latent_dim.fillna(-1).astype(int)
    per_split = df.groupby(CELL + ["split"], dropna=False).agg(eval=("eval_seconds", "first"),
                                                              fit=("fit_seconds", "first")).reset_index()
    cell = per_split.groupby(CELL, dropna=False).agg(eval=("eval", "sum"), fit=("fit", "first"))
    evals = {tuple(k): v for k, v in cell["eval"].items()}
    fits = {}
    for key, seconds in cell["fit"].items():
        if tuple(key) in fit_of and not math.isnan(seconds):
            fits[fit_of[tuple(key)][0]] = seconds
    return fit_of, evals, fits


def _learners(cells) -> set[str]:
    from genbench.registry import get_model

    return {c.model for c in cells if get_model(c.model).capabilities.learns}


def price(fit_of: dict, evals: dict, fits: dict) -> pd.DataFrame:
    """One row per (model, part) with measured and estimated worker-seconds and the counts."""
    by_cell = defaultdict(list)  # same cell at other seeds, then at any latent dim
    for (m, d, s, t, v, p), sec in evals.items():
        by_cell[(m, d, t, v, p)].append(sec)
        by_cell[(m, None, t, v, p)].append(sec)
    fit_owner = {}
    for key, (fk, corrupted) in fit_of.items():
        fit_owner.setdefault(fk, (key, corrupted))
    by_fit = defaultdict(list)
    for fk, sec in fits.items():
        (m, d, s, t, v, p), corrupted = fit_owner[fk]
        by_fit[(m, d, corrupted)].append(sec)
        by_fit[(m, None, corrupted)].append(sec)
    rows = []
    for key, (fk, corrupted) in fit_of.items():
        m, d, s, t, v, p = key
        if key in evals:
            rows.append((m, f"eval {t}", evals[key], 0.0, 0))
        else:
            known = by_cell.get((m, d, t, v, p)) or by_cell.get((m, None, t, v, p))
            rows.append((m, f"eval {t}", 0.0, sum(known) / len(known) if known else 0.0, 0 if known else 1))
    for fk, (key, corrupted) in fit_owner.items():
        m, d = key[0], key[1]
        part = "fit corrupted" if corrupted else "fit clean"
        if fk in fits:
            rows.append((m, part, fits[fk], 0.0, 0))
        else:
            known = by_fit.get((m, d, corrupted)) or by_fit.get((m, None, corrupted))
            rows.append((m, part, 0.0, sum(known) / len(known) if known else 0.0, 0 if known else 1))
    return pd.DataFrame(rows, columns=["model", "part", "measured", "estimated", "unpriced"])


def scaled(table: pd.DataFrame, scales: list[tuple[str, str, float]]) -> pd.Series:
    total = table.measured + table.estimated
    for model, kind, factor in scales:
        hit = (table.model == model) if model != "*" else pd.Series(True, index=table.index)
        part = {"clean": table.part == "fit clean", "corrupted": table.part == "fit corrupted",
                "fit": table.part.str.startswith("fit"), "eval": table.part.str.startswith("eval")}[kind]
        total = total.where(~(hit & part), total * factor)
    return total


def _scale(text: str) -> tuple[str, str, float]:
    try:
        target, factor = text.split("=")
        model, kind = target.split(":")
        if kind not in KINDS or float(factor) < 0:
            raise ValueError
        return model, kind, float(factor)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale expects MODEL:KIND=FACTOR with KIND one of {', '.join(KINDS)} "
                                         f"and FACTOR >= 0, e.g. abp:corrupted=0.5; got {text!r}") from None


def report(run_dir: Path, workers: int, scales: list[tuple[str, str, float]]) -> str:
    table = price(*measured(run_dir))
    hours = table.assign(total=table.measured + table.estimated, scaled=scaled(table, scales))
    parts = list(dict.fromkeys(["fit clean", "fit corrupted"] + [p for p in hours.part if p.startswith("eval")]))
    grid = hours.pivot_table(index="model", columns="part", values="total", aggfunc="sum", sort=False)
    grid = grid.reindex(columns=parts).fillna(0.0) / 3600
    per_model = hours.groupby("model", sort=False).agg(total=("total", "sum"), estimated=("estimated", "sum"),
                                                       unpriced=("unpriced", "sum"), scaled=("scaled", "sum"))
    grand = per_model.total.sum()
    out = [f"# What `{run_dir}` costs", "",
           "Worker-hours (seconds of one worker process) per model and part: each fit once (`fit clean`, `fit "
           "corrupted`: the learn-from-corrupted fits), each cell's evaluation by task. Measured in the run where it "
           "finished, estimated from its finished seeds where it has not (`est. h`); `unpriced`: cells and fits with "
           f"no finished seed to price them from (counted as 0). Wall time = worker-hours / {workers} workers "
           "(perfect packing). Measured under whatever else ran beside the run. Written by "
           "`python benchmarks/sweep_cost.py`.", "",
           "| model | " + " | ".join(parts) + " | total h | share | est. h | unpriced |",
           "|---|" + "---|" * (len(parts) + 4)]
    for model, r in per_model.iterrows():
        out.append(f"| {model} | " + " | ".join(f"{grid.loc[model, p]:.2f}" for p in parts) +
                   f" | {r.total / 3600:.2f} | {r.total / grand:.1%} | {r.estimated / 3600:.2f} | {int(r.unpriced)} |")
    col = grid.sum() * 3600
    out.append("| all | " + " | ".join(f"{col[p] / 3600:.2f}" for p in parts) +
               f" | {grand / 3600:.2f} | 100% | {per_model.estimated.sum() / 3600:.2f} | {int(per_model.unpriced.sum())} |")
    out.append("| share | " + " | ".join(f"{col[p] / grand:.1%}" for p in parts) + " | | | | |")
    measured_h = hours.measured.sum() / 3600
    out += ["", f"- {len(hours[hours.part.str.startswith('eval')])} cells, "
            f"{len(hours[hours.part.str.startswith('fit')])} fits; worker-hours measured {measured_h:.2f}, "
            f"estimated {per_model.estimated.sum() / 3600:.2f}, total {grand / 3600:.2f}",
            f"- wall time on {workers} workers: **{grand / 3600 / workers:.2f} h**"]
    if scales:
        applied = ", ".join(f"{m}:{k} x{f:g}" for m, k, f in scales)
        new = per_model.scaled.sum()
        out.append(f"- with {applied}: {new / 3600:.2f} worker-hours, **{new / 3600 / workers:.2f} h** on {workers} "
                   f"workers ({grand / new:.2f}x)")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scale", type=_scale, action="append", default=[], metavar="MODEL:KIND=FACTOR")
    parser.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be >= 1")
    text = report(args.run_dir, args.workers, args.scale)
    print(text, end="")
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
