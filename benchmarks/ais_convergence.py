#!/usr/bin/env python
"""How many annealing steps does AIS need? The convergence study behind the likelihood task's defaults.

    python benchmarks/ais_convergence.py CHECKPOINT.pt [CHECKPOINT.pt ...] [--steps 30,100,300,1000]
        [--leapfrog 10] [--chains 8] [--images 10] [--test-images 10] [--seed 0] [--out FILE.csv]

For each checkpoint of a decoder model (``checkpoints/*.pt`` of a run folder: abp, abp-gd, vae, dcgan)
and each number of annealing steps T, with the same chains, leapfrog steps and seed:

- ``bdmc_gap``: bidirectional Monte Carlo (:func:`genbench.ais.bdmc`) on ``--images`` images simulated
  from the model: mean(reverse-AIS upper bound - forward-AIS lower bound), nats per image. It bounds the
  error of forward AIS on data like the model's own; it shrinks towards 0 as T grows.
- ``lower`` / ``upper``: the two bounds' means on those images.
- ``test_log_p``: forward AIS on the first ``--test-images`` test images of the run's data (the
  curve log p vs T: it rises towards the true value, a lower bound at every T).
- ``seconds``: wall time of the BDMC (both directions) and of the test-image AIS.

Prints a markdown table and writes it as CSV (``--out``, default ``benchmarks/results/ais_convergence_<time>.csv``).
The model is rebuilt from the checkpoint and the data from the run's ``config.json``
(the checkpoint's folder's parent).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from genbench.ais import ais_log_likelihood, bdmc  # noqa: E402
from genbench.data import load_data  # noqa: E402
from genbench.operators import Identity  # noqa: E402
from genbench.planning import effective_data_config  # noqa: E402
from genbench.registry import MODELS  # noqa: E402
from genbench.rundir import build_saved_config, read_run_config  # noqa: E402


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoints", nargs="+", type=Path)
    ap.add_argument("--steps", type=_ints, default=[30, 100, 300, 1000])
    ap.add_argument("--leapfrog", type=int, default=10)
    ap.add_argument("--chains", type=int, default=8)
    ap.add_argument("--images", type=int, default=10, help="simulated images for BDMC")
    ap.add_argument("--test-images", type=int, default=10, help="test images for the log p vs T curve (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    rows = []
    for path in args.checkpoints:
        run_dir = path.resolve().parent.parent
        cfg = build_saved_config(read_run_config(run_dir), run_dir)
        name = path.name.split("__")[0]  # display only: the class comes from the registry entry of that name
        spec = MODELS.get(name)
        model = spec.cls.load(path)
        density = model.density()
        if density is None or density.decode is None:
            print(f"{path.name}: no decoder density ({model.density_note or 'exact'}); skipped", file=sys.stderr)
            continue
        data = load_data(effective_data_config(cfg))
        test = data.test[: max(args.test_images, 1)]
        obs = Identity(args.seed).observe(test) if args.test_images else None
        for steps in args.steps:
            settings = dict(latent_dim=density.latent_dim, sigma=density.sigma, n_steps=steps,
                            n_chains=args.chains, leapfrog_steps=args.leapfrog)
            t0 = time.perf_counter()
            res = bdmc(density.decode, Identity(args.seed), args.images, image_shape=tuple(test.shape[1:]),
                       generator=torch.Generator().manual_seed(args.seed), **settings)
            t1 = time.perf_counter()
            test_log_p = float("nan")
            if obs is not None:
                test_log_p = float(ais_log_likelihood(density.decode, obs, generator=torch.Generator().manual_seed(
                    args.seed + 1), **settings).log_p.mean())
            t2 = time.perf_counter()
            row = {"checkpoint": path.name, "model": name, "latent_dim": density.latent_dim, "sigma": density.sigma,
                   "steps": steps, "leapfrog": args.leapfrog, "chains": args.chains, "images": args.images,
                   "lower": round(float(res.lower.mean()), 3), "upper": round(float(res.upper.mean()), 3),
                   "bdmc_gap": round(res.gap, 3), "test_log_p": round(test_log_p, 3),
                   "bdmc_seconds": round(t1 - t0, 1), "test_seconds": round(t2 - t1, 1)}
            rows.append(row)
            print(" ".join(f"{k}={v}" for k, v in row.items()), file=sys.stderr, flush=True)
    if not rows:
        return 1
    out = args.out or ROOT / "benchmarks" / "results" / f"ais_convergence_{datetime.now():%Y%m%d-%H%M%S}.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(str(r[c]) for c in cols) + " |")
    print(f"\nwritten {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
