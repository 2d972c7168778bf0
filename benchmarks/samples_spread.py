#!/usr/bin/env python
"""How much of a samples row is the draw? FID and friends of one fitted model over several sample draws.

    python benchmarks/samples_spread.py RUN_DIR [--draws 5] [--models vae,dcgan] [--out FILE.csv]

For every checkpoint in ``RUN_DIR/checkpoints`` of a model that can sample, the samples task is evaluated
``--draws`` times exactly as the run evaluates it (the run's data, feature net and task parameters from its
``config.json`` and ``checkpoints/features__*.pt``), each time with another sampling seed. The spread over
draws is the noise of the sample count alone; set it beside the spread over seeds (other fits) and the gaps
between models in the run's own table. Prints a markdown table (mean ± std over draws) and writes the rows as
CSV (``--out``, default ``benchmarks/results/samples_spread_<time>.csv``).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "classes_covered", "label_kl")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir")
    p.add_argument("--draws", type=int, default=5)
    p.add_argument("--models", default="")
    p.add_argument("--out")
    args = p.parse_args(argv)
    from genbench.config import build_run_config
    from genbench.data import DataConfig, load_data
    from genbench.operators import Identity
    from genbench.registry import get_model, get_task
    from genbench.results import config_hash
    from genbench.task import DataView, EvalContext

    run_dir = Path(args.run_dir)
    blob = json.loads((run_dir / "config.json").read_text())
    cfg = build_run_config(blob["config"])
    data_config = DataConfig(**blob["data_effective"])
    data = load_data(data_config)
    view = DataView({"train": data.train, "test": data.test}, {"train": data.train_labels, "test": data.test_labels},
                    config_hash(dataclasses.asdict(data_config)), folder=run_dir / "checkpoints")
    task = get_task("samples")(cfg.task.get("samples"))
    test = data.test if cfg.n_eval is None else data.test[: cfg.n_eval]
    wanted = set(filter(None, args.models.split(",")))
    if len(cfg.seeds) != 1:
        p.error(f"{run_dir} has seeds {cfg.seeds}: give a run of one seed (its feature net is that seed's)")
    seed = cfg.seeds[0]
    rows = []
    for checkpoint in sorted((run_dir / "checkpoints").glob("*.pt")):
        if checkpoint.name.startswith("features__"):
            continue
        extra = torch.load(checkpoint, weights_only=True).get("extra", {})
        name = extra.get("model") or checkpoint.name.split("__")[0]  # (older checkpoints did not record it)
        if (wanted and name not in wanted) or not get_model(name).cls.capabilities.samples:
            continue
        model = get_model(name).cls.load(checkpoint)
        for draw in range(args.draws):
            ctx = EvalContext(model=model, op=Identity(), observed={}, clean={"test": test},
                              generator=torch.Generator(), device=torch.device("cpu"), clock=time.perf_counter,
                              fit_seed=10_000 + draw, seed=seed, data=view)
            result = task.evaluate(ctx, "test")
            rows.append({"model": name, "latent_dim": model.config.latent_dim, "seed": seed, "draw": draw,
                         **{m: result.scores.get(m, float("nan")) for m in METRICS}})
            print(f"{checkpoint.name} draw {draw}: fid {result.scores['fid']:.3f}", file=sys.stderr, flush=True)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"samples_spread_{datetime.now():%Y%m%d-%H%M%S}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{args.draws} draws of {task.params['n_samples']} samples vs {len(test)} test images, {run_dir}")
    print("| model | d | seed | " + " | ".join(METRICS) + " |\n|---|---|---|" + "---|" * len(METRICS))
    for key in dict.fromkeys((r["model"], r["latent_dim"], r["seed"]) for r in rows):
        mine = [r for r in rows if (r["model"], r["latent_dim"], r["seed"]) == key]
        cells = []
        for m in METRICS:
            v = torch.tensor([r[m] for r in mine], dtype=torch.float64)
            cells.append(f"{v.mean():.3f} ± {v.std():.3f}" if len(v) > 1 else f"{v.mean():.3f}")
        print(f"| {key[0]} | {key[1]} | {key[2]} | " + " | ".join(cells) + " |")
    print(f"rows: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
