#!/usr/bin/env python
"""How far did a change move a table? Two runs' shared cells against the seed-to-seed spread.

    python benchmarks/compare_tables.py BEFORE_RUN AFTER_RUN [--metrics mae,psnr] [--out FILE.csv]

For a change that alters float rounding only (a kernel, a memory layout, a thread count), "same numbers" is
not the test; the test is that the table moves by less than what it already varies by. This reads both
runs' ``results.csv`` (``ok`` rows), pairs the rows of the cells and seeds both hold (model, latent dim, seed,
task, variant, protocol, split, metric; the config hashes may differ: another task setting that leaves the
cell's operator alone), and prints one markdown row per (model, latent dim, task, variant, protocol, split,
metric): the mean of each run over the shared seeds, the largest |after − before| of one seed, the sample std
over seeds of BEFORE (the spread a reader already sees), their ratio, and the shift of the mean over seeds
against the same std. A fit amplifies any rounding (Adam's first steps, Langevin noise), so a rounding-only
change can move one seed's value by about the seed spread; what a reader of mean ± std sees is the mean's
shift. ``--out`` keeps the rows as CSV.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

KEYS = ["model", "latent_dim", "task", "variant", "protocol", "split", "metric"]


def compare(before: pd.DataFrame, after: pd.DataFrame, metrics: list[str] | None = None) -> pd.DataFrame:
    """One row per cell (:data:`KEYS`) of both tables: ``seeds``, ``before``, ``after`` (means over the shared
    seeds), ``max_abs_diff`` (of one seed), ``seed_std`` (of ``before``), ``ratio`` (max_abs_diff / seed_std) and
    ``mean_ratio`` (|after − before| / seed_std)."""
    def ok(df: pd.DataFrame) -> pd.DataFrame:
        df = df[df["status"] == "ok"]
        df = df if metrics is None else df[df["metric"].isin(metrics)]
        return df[[*KEYS, "seed", "value"]].astype({"latent_dim": "Int64"})

    both = ok(before).merge(ok(after), on=[*KEYS, "seed"], suffixes=("_before", "_after"))
    if both.empty:
        return pd.DataFrame(columns=[*KEYS, "seeds", "before", "after", "max_abs_diff", "seed_std", "ratio",
                                     "mean_ratio"])
    both["diff"] = (both["value_after"] - both["value_before"]).abs()
    out = both.groupby(KEYS, dropna=False, sort=False).agg(
        seeds=("seed", "nunique"), before=("value_before", "mean"), after=("value_after", "mean"),
        max_abs_diff=("diff", "max"), seed_std=("value_before", "std")).reset_index()
    out["ratio"] = out["max_abs_diff"] / out["seed_std"]
    out["mean_ratio"] = (out["after"] - out["before"]).abs() / out["seed_std"]
    return out


def markdown(rows: pd.DataFrame) -> str:
    from genbench.summary import markdown_table

    def g(x: float) -> str:
        return "nan" if pd.isna(x) else f"{x:.4g}"

    body = [[r.model, "" if pd.isna(r.latent_dim) else int(r.latent_dim), r.task, r.variant, r.protocol, r.split,
             r.metric, r.seeds, g(r.before), g(r.after), g(r.max_abs_diff), g(r.seed_std), g(r.ratio),
             g(r.mean_ratio)] for r in rows.itertuples(index=False)]
    return markdown_table(["model", "d", "task", "variant", "protocol", "split", "metric", "seeds", "before",
                           "after", "max abs diff (a seed)", "seed std", "ratio", "mean shift / seed std"], body)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--metrics", default="", help="comma-separated metrics (default: all)")
    p.add_argument("--out", help="CSV of the rows")
    args = p.parse_args(argv)
    from genbench.report import ReportInputError, load_runs

    try:
        before, after = (load_runs([Path(d)]) for d in (args.before, args.after))
    except ReportInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rows = compare(before, after, [m for m in args.metrics.split(",") if m] or None)
    if rows.empty:
        print("error: the two runs share no cell and seed", file=sys.stderr)
        return 2
    print(markdown(rows))
    one, mean = rows["ratio"].dropna(), rows["mean_ratio"].dropna()
    print(f"\n{len(rows)} cells; one seed's |after - before| / seed std: largest {one.max():.3g}, median "
          f"{one.median():.3g}; the mean's shift / seed std: largest {mean.max():.3g}, median {mean.median():.3g}"
          if len(one) else f"\n{len(rows)} cells; no seed std (one seed)")
    if args.out:
        rows.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
