#!/usr/bin/env python
"""Where ABP's inference starts: the same fits scored from z = 0 and from a prior draw, beside ABP.

    python benchmarks/init_study.py REFERENCE_RUN PRIOR_RUN [--model abp-gd] [--label TEXT] [--out FILE.md]

``REFERENCE_RUN`` is a run at the default ``infer_init: zero`` (the three-seed reference run);
``PRIOR_RUN`` re-scores its fits of ``--model`` with ``infer_init: prior`` and nothing else changed::

    python run_benchmarks.py --preset default --models abp-gd --tasks reconstruction,inpainting \\
        --latent-dims 10,20 --seeds 0,1,2 --fits-from REFERENCE_RUN --set model.abp-gd.infer_init=prior

Prints (and with ``--out`` writes) one markdown table per latent dim: for every (task, variant, protocol,
split) of the prior run, ``mae`` as mean ± std over the seeds both runs finished for ``--model`` from z = 0
and from the prior draw, their per-seed difference (second − zero; "lower in" counts the seeds where the
second run is better), and ABP's own row of the reference run (Langevin inference from z = 0) for scale.
Both runs' rows come from the runner; nothing is typed in by hand. ``--label`` names the second run's start in
the headers (default "from a prior draw"; e.g. "restarts=2" for a run re-scored with ``restarts=2``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import pandas as pd  # noqa: E402

KEYS = ["task", "variant", "protocol", "split"]


def _ok(df: pd.DataFrame, model: str) -> pd.DataFrame:
    df = df[(df["status"] == "ok") & (df["metric"] == "mae") & (df["model"] == model)]
    return df[["latent_dim", *KEYS, "seed", "value"]]


def _ms(values: pd.Series) -> str:
    if len(values) == 0:
        return "—"
    return f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values.mean():.4f} (1)"


def tables(reference: pd.DataFrame, prior: pd.DataFrame, model: str, label: str = "from a prior draw") -> str:
    zero, after, abp = _ok(reference, model), _ok(prior, model), _ok(reference, "abp")
    both = zero.merge(after, on=["latent_dim", *KEYS, "seed"], suffixes=("_zero", "_prior"))
    if both.empty:
        raise ValueError(f"the two runs share no {model} cell and seed")
    from genbench.summary import markdown_table

    out = []
    for d, rows in both.groupby("latent_dim", sort=True):
        body = []
        for key, cell in rows.groupby(KEYS, sort=False):
            diff = cell["value_prior"] - cell["value_zero"]
            ref = abp[(abp["latent_dim"] == d) & (abp[KEYS] == pd.Series(key, index=KEYS)).all(axis=1)]
            body.append([*key, len(cell), _ms(cell["value_zero"]), _ms(cell["value_prior"]),
                         f"{diff.mean():+.4f}; lower in {int((diff < 0).sum())}/{len(cell)}",
                         _ms(ref[ref["seed"].isin(cell["seed"])]["value"])])
        out.append(f"### d = {int(d)}\n\n" + markdown_table(
            ["task", "variant", "protocol", "split", "seeds", f"{model} from z = 0", f"{model} {label}",
             "second − zero", "abp (Langevin, z = 0)"], body))
    return "\n\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("reference")
    p.add_argument("prior")
    p.add_argument("--model", default="abp-gd")
    p.add_argument("--label", default="from a prior draw", help="the second run's start, for the headers")
    p.add_argument("--out", help="write the tables to this markdown file too")
    args = p.parse_args(argv)
    from genbench.report import ReportInputError, load_runs

    try:
        reference, prior = (load_runs([Path(d)]) for d in (args.reference, args.prior))
        text = tables(reference, prior, args.model, args.label)
    except (ReportInputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(text)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
