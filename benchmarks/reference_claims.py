#!/usr/bin/env python
"""The README's result claims, recomputed from a run folder with mean ± std over its seeds.

    python benchmarks/reference_claims.py RUN_DIR [RUN_DIR ...] [--out FILE.md]

Reads the runs' ``results.csv`` (pooled as the report pools them: ``genbench.report.load_runs``, which
refuses non-replicates) and writes one markdown page (default ``RUN_DIR/claims.md``) with every claim the
README makes about the reference results, each as a table of the numbers it rests on:

1. held-out reconstruction of every model (test ``mae``, clean-train), and ABP against PCA seed by seed;
2. learning from masks: the occluded pixels of the corrupted training images, recovered by models that
   learned only from those images (train-split ``mae``, learn-from-corrupted), and the held-out test split;
3. VAE against ABP on the masks, and ABP-GD (no Langevin noise) against ABP, seed by seed;
4. learning from projections, and which rows beat the trivial floors at each K (the K <= 50 failure);
5. sample quality (``fid``), held-out log-likelihood (``nll``, ``bdmc_gap``, ``iwae_nll``, ``binary_nll``) and
   out-of-domain detection (``ood_auroc``).

Cells read ``mean ± std (n)``: over the ``n`` seeds that finished the cell (``n`` is left out where every
seed of the run did), computed by the report's one aggregation (``genbench.summary.aggregate``), so a row
marked † (not better than the best trivial floor of its column: ``zero``, ``mean-image``, ``naive-inverse``)
or ‡ (degenerate by construction, never ranked) is marked exactly as in ``summary.md``. A paired comparison
("A − B") is the per-seed difference on the same data split (each seed draws its own split with
``data.vary_split``), its mean ± std over the seeds both finished, and in how many of them A was lower
(better). The floor counts compare each seed with the best floor of that same seed. Nothing here is typed
in by hand: a claim whose cells are missing shows "—" (or "no cells yet"), so the page can be written at any
point of a run.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

MASKS = ("salt-pepper-0.5", "salt-pepper-0.7", "salt-pepper-0.9", "block-10", "block-14")
PROJECTIONS = ("k-200", "k-100", "k-50", "k-20")
CLEAN, CORRUPTED = "clean-train", "learn-from-corrupted"
NO_CELLS = "_No cells yet._"


class Claims:
    """One dataset's results: the report's aggregate per cell and the per-seed values, looked up by cell."""

    def __init__(self, df: pd.DataFrame) -> None:
        from genbench.summary import aggregate, floor_models

        datasets = list(pd.unique(df["dataset"]))
        if len(datasets) != 1:
            raise ValueError(f"the claims are one dataset's; the table holds {len(datasets)}: {datasets}")
        self.seeds = sorted(int(s) for s in df["seed"].unique())  # every seed of the run, finished or not
        ok = df[df["status"] == "ok"]
        models = _ordered(list(pd.unique(ok["model"])))
        self.floors = [m for m in models if m in floor_models(models)]
        coded = set(ok.loc[ok["latent_dim"].notna(), "model"])
        self.learned = [m for m in models if m in coded]                   # with a latent code
        self.reference = [m for m in models if m not in coded and m not in self.floors]  # e.g. biharmonic
        self.dims = sorted(int(d) for d in ok["latent_dim"].dropna().unique())
        self._values: dict[tuple, dict[int, float]] = {}
        for row in ok[["task", "variant", "protocol", "split", "metric", "model", "latent_dim", "seed",
                       "value"]].itertuples(index=False):
            key = (row.task, row.variant, row.protocol, row.split, row.metric, row.model, _dim(row.latent_dim))
            seeds = self._values.setdefault(key, {})
            if int(row.seed) in seeds:
                raise ValueError(f"two rows of one cell and seed: {key}, seed {row.seed}")
            seeds[int(row.seed)] = float(row.value)
        self._agg = {(r["task"], r["variant"], r["protocol"], r["split"], r["metric"], r["model"], _dim(r["latent_dim"])): r
                     for r in aggregate(df).to_dict("records")}

    def _find(self, table: dict, task: str, variant: str, protocol: str, split: str, metric: str, model: str,
              d: int | None) -> Any:
        for dim in (d, None):  # a method without a latent code: any d
            found = table.get((task, variant, protocol, split, metric, model, dim))
            if found is not None:
                return found
        return None

    def values(self, task: str, variant: str, protocol: str, split: str, metric: str, model: str,
               d: int | None) -> dict[int, float]:
        """{seed: value} of one cell's ``ok`` rows."""
        return self._find(self._values, task, variant, protocol, split, metric, model, d) or {}

    def flagged(self, task: str, variant: str, protocol: str, split: str, metric: str, model: str,
                d: int | None) -> bool:
        """Whether the cell is degenerate by construction (the rows' ``flag``)."""
        agg = self._find(self._agg, task, variant, protocol, split, metric, model, d)
        return bool(agg and agg["flag"])

    def floor(self, task: str, variant: str, protocol: str, split: str, metric: str) -> dict[int, float]:
        """{seed: the best floor's value at that seed} of a column (the recovery errors: lower is better)."""
        best: dict[int, float] = {}
        for model in self.floors:
            for seed, value in self.values(task, variant, protocol, split, metric, model, None).items():
                best[seed] = min(best.get(seed, math.inf), value)
        return best

    # ------------------------------------------------------------------------------------ formatting
    def cell(self, task: str, variant: str, protocol: str, split: str, metric: str, model: str,
             d: int | None) -> str:
        """``mean ± std (n)`` of the report's aggregate, with its † and ‡."""
        from genbench.summary import DEGENERATE_MARK, FLOOR_MARK, metric_info

        agg = self._find(self._agg, task, variant, protocol, split, metric, model, d)
        if agg is None:
            return "—"
        info = metric_info(metric)
        text = info.format_pair(agg["mean"], agg["std"]) if agg["count"] > 1 else info.format(agg["mean"])
        if agg["count"] < len(self.seeds):
            text += f" ({agg['count']})"
        if agg["beats_floor"] is False:
            text += f" {FLOOR_MARK}"
        if agg["flag"]:
            text += f" {DEGENERATE_MARK}"
        return text

    def paired(self, a: dict[int, float], b: dict[int, float], metric: str) -> str:
        """``mean ± std`` of a − b over the seeds both have, and in how many a is lower."""
        from genbench.summary import metric_info

        seeds = sorted(set(a) & set(b))
        if not seeds:
            return "—"
        diff = pd.Series([round(a[s] - b[s], 12) for s in seeds], dtype=float)  # 0.14 - 0.14 is 0, not 1e-17
        info = metric_info(metric)
        text = info.format_pair(diff.mean(), diff.std()) if len(diff) > 1 else info.format(diff.mean())
        return f"{text}; lower in {sum(a[s] < b[s] for s in seeds)}/{len(seeds)}"


def _ordered(models: list[str]) -> list[str]:
    """The default preset's model order (the README's), then any other model as the table has it."""
    from genbench.config import load_preset

    preset = [m for m in load_preset("default").get("models", []) if m in models]
    return preset + [m for m in models if m not in preset]


def _dim(latent_dim: Any) -> int | None:
    return None if pd.isna(latent_dim) else int(latent_dim)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    from genbench.summary import markdown_table

    return markdown_table(header, rows) if rows else NO_CELLS


def _by_dim(c: Claims, models: Sequence[str], task: str, variant: str, protocol: str, split: str,
            metric: str) -> str:
    rows = []
    for model in models:
        cells = [c.cell(task, variant, protocol, split, metric, model, d) for d in c.dims]
        if any(x != "—" for x in cells):
            rows.append([model, *cells])
    return _table(["model", *[f"d={d}" for d in c.dims]], rows)


def _by_variant(c: Claims, models: Sequence[str], task: str, variants: Sequence[str], protocol: str, split: str,
                metric: str = "mae") -> str:
    rows = []
    for model in models:
        for d in (c.dims if model in c.learned else [None]):
            cells = [c.cell(task, v, protocol, split, metric, model, d) for v in variants]
            if any(x != "—" for x in cells):
                rows.append([model if d is None else f"{model} (d={d})", *cells])
    return _table(["model", *variants], rows)


def _floor_counts(c: Claims, task: str, variants: Sequence[str], protocol: str, split: str,
                  metric: str = "mae") -> str:
    """In how many seeds each learned model's row beats the best floor of its column at the same seed (‡ rows:
    degenerate by construction, not counted)."""
    from genbench.summary import DEGENERATE_MARK

    rows = []
    for model in c.learned:
        for d in c.dims:
            cells = []
            for v in variants:
                vals, floor = c.values(task, v, protocol, split, metric, model, d), c.floor(task, v, protocol, split,
                                                                                              metric)
                seeds = sorted(set(vals) & set(floor))
                if c.flagged(task, v, protocol, split, metric, model, d):
                    cells.append(DEGENERATE_MARK)
                else:
                    cells.append(f"{sum(vals[s] < floor[s] for s in seeds)}/{len(seeds)}" if seeds else "—")
            if any(x not in ("—", DEGENERATE_MARK) for x in cells):
                rows.append([f"{model} (d={d})", *cells])
    return _table(["model", *variants], rows)


def claims_markdown(df: pd.DataFrame, title: str = "Reference claims") -> str:
    from genbench.summary import DEGENERATE_MARK, FLOOR_MARK

    c = Claims(df)
    masks_models = [*c.learned, *c.reference, *c.floors]
    parts = [f"# {title}", "",
             f"Seeds {', '.join(map(str, c.seeds))}; cells `mean ± std (n)` over the seeds that finished them "
             f"(n left out when all did); {FLOOR_MARK} not better than the best trivial floor of its column; "
             f"{DEGENERATE_MARK} degenerate by construction (as in `summary.md`). Written by "
             "`python benchmarks/reference_claims.py` from `results.csv`.", ""]

    parts += ["## 1. Held-out reconstruction (test `mae`, clean-train)", "",
              _by_dim(c, [*c.learned, *c.floors], "reconstruction", "identity", CLEAN, "test", "mae"), "",
              "ABP against PCA, per seed (PCA − ABP; 'lower' counts the seeds where PCA's error is lower):", ""]
    rows = [[f"d={d}", c.paired(c.values("reconstruction", "identity", CLEAN, "test", "mae", "pca", d),
                                c.values("reconstruction", "identity", CLEAN, "test", "mae", "abp", d), "mae")]
            for d in c.dims]
    parts += [_table(["latent", "pca − abp"], [r for r in rows if r[1] != "—"]), ""]

    parts += ["## 2. Learning from masks", "",
              "The occluded pixels of the corrupted training images, by models that learned only from them "
              "(train `mae`, learn-from-corrupted):", "",
              _by_variant(c, masks_models, "inpainting", MASKS, CORRUPTED, "train"), "",
              "Held-out test images under the same fits (test `mae`, learn-from-corrupted):", "",
              _by_variant(c, masks_models, "inpainting", MASKS, CORRUPTED, "test"), "",
              "Clean-trained models on the same masks (test `mae`, clean-train):", "",
              _by_variant(c, masks_models, "inpainting", MASKS, CLEAN, "test"), ""]

    parts += ["## 3. VAE against ABP, and ABP without its Langevin noise (abp-gd), on the masks", "",
              "Per seed, train `mae` under learn-from-corrupted ('lower' counts the seeds where the first model's "
              "error is lower):", ""]
    rows = []
    for first, second in (("vae", "abp"), ("vae-refine", "abp"), ("vae-refine", "vae"), ("abp-gd", "abp")):
        for d in c.dims:
            cells = [c.paired(c.values("inpainting", v, CORRUPTED, "train", "mae", first, d),
                              c.values("inpainting", v, CORRUPTED, "train", "mae", second, d), "mae") for v in MASKS]
            if any(x != "—" for x in cells):
                rows.append([f"{first} − {second} (d={d})", *cells])
    parts += [_table(["pair", *MASKS], rows), ""]

    parts += ["## 4. Learning from projections", "",
              "Train `mae` under learn-from-corrupted (every model learned from the K shared projections only):", "",
              _by_variant(c, masks_models, "projection", PROJECTIONS, CORRUPTED, "train"), "",
              "Clean-trained models recovering test images from K projections (test `mae`, clean-train):", "",
              _by_variant(c, masks_models, "projection", PROJECTIONS, CLEAN, "test"), "",
              "Seeds in which each learn-from-corrupted row beats the best floor of its column at the same seed "
              f"(train `mae`; {DEGENERATE_MARK}: degenerate by construction, not counted):", "",
              _floor_counts(c, "projection", PROJECTIONS, CORRUPTED, "train"), ""]

    parts += ["## 5. Samples and likelihood", "", "FID of prior samples against test images (LeNet features):",
              "", _by_dim(c, c.learned, "samples", "prior", CLEAN, "test", "fid"), "",
              "Held-out negative log-likelihood (test `nll`, nats per image; AIS, PPCA's exact density for pca):",
              "", _by_dim(c, c.learned, "likelihood", "identity", CLEAN, "test", "nll"), "",
              "BDMC gap on data simulated from each model (nats per image):", "",
              _by_dim(c, c.learned, "likelihood", "identity", CLEAN, "simulated", "bdmc_gap"), "",
              "The VAE's IWAE bound (test `iwae_nll`) and the RBM/DBN's binarised-digit density (test `binary_nll`):",
              "", _by_dim(c, c.learned, "likelihood", "identity", CLEAN, "test", "iwae_nll"), "",
              _by_dim(c, c.learned, "likelihood", "identity", CLEAN, "test", "binary_nll"), "",
              "Out-of-domain detection, faces vs test digits by per-image nll (`ood_auroc`):", "",
              _by_dim(c, c.learned, "likelihood", "identity", CLEAN, "negative", "ood_auroc"), ""]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dirs", nargs="+", help="run folders (replicates) to pool")
    p.add_argument("--out", help="markdown file to write (default: the first run folder's claims.md)")
    p.add_argument("--title", default="Reference claims")
    args = p.parse_args(argv)
    from genbench.report import ReportInputError, load_runs

    try:
        df = load_runs([Path(d) for d in args.run_dirs])
    except ReportInputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from genbench.fsutil import write_text

    out = Path(args.out) if args.out else Path(args.run_dirs[0]) / "claims.md"
    try:
        text = claims_markdown(df, args.title)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_text(out, text + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
