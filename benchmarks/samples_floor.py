#!/usr/bin/env python
"""What do data themselves score? The floors and ceilings of the samples task, in its own feature space.

    python benchmarks/samples_floor.py [--dataset mnist5k] [--n-train 4000] [--n-test 1000] [--samples 1000]
        [--epochs 10] [--seeds 0,1] [--out FILE.csv]

For each seed: a feature net trained by the samples task's recipe (a LeNet on the training split, seeded
as the task seeds it; a run's own net may differ where its data settings do) and, against the test images (features scaled as the task scales them):

- ``train-images``: ``--samples`` training images drawn as if they were samples: what a model that had
  memorised the training set would score (the floor at this sample count);
- ``test-halves``: one half of the test images against the other (a floor at half the count: FID's bias);
- ``one-class``: training images of one class (the first label) only: a model that collapsed to one mode;
- ``noise``: uniform noise in [-1, 1]: a model that learned nothing.

Prints a markdown table (mean ± std over seeds) and writes the per-seed numbers as CSV (``--out``, default
``benchmarks/results/samples_floor_<time>.csv``), with the feature net's test accuracy and the seconds.
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

from genbench.data import load_data  # noqa: E402
from genbench.planning import derive_seed  # noqa: E402
from genbench.results import config_hash  # noqa: E402
from genbench.sample_quality import fid, kid, mode_coverage, prdc  # noqa: E402
from genbench.task import DataView  # noqa: E402

METRICS = ("fid", "kid", "precision", "recall", "density", "coverage", "classes_covered", "label_kl")


def floors(view: DataView, seed: int, n_samples: int, epochs: int) -> list[dict]:
    from genbench.features import feature_net

    t0 = time.perf_counter()
    net = feature_net(view.splits["train"], view.labels["train"], view.splits["test"], view.labels["test"],
                      epochs=epochs, seed=derive_seed(seed, "features", view.key))
    train_seconds = time.perf_counter() - t0
    test, train, labels = view.splits["test"], view.splits["train"], view.labels["train"]
    phi_test = net.embed(test)
    scale = phi_test.square().mean().sqrt()
    phi_test = phi_test / scale
    g = torch.Generator().manual_seed(seed)
    pools = {"train-images": train[torch.randperm(len(train), generator=g)[:n_samples]],
             "one-class": train[labels == labels[0]][:n_samples],
             "noise": torch.rand(n_samples, *test.shape[1:], generator=g) * 2 - 1}
    out = []
    half = len(test) // 2
    cases = {"test-halves": (phi_test[:half], phi_test[half:], test[half:])}
    cases.update({name: (phi_test, net.embed(x) / scale, x) for name, x in pools.items()})
    for name, (real, fake, images) in cases.items():
        row = {"seed": seed, "case": name, "n_real": len(real), "n_fake": len(fake), "fid": fid(real, fake),
               "kid": kid(real, fake, seed=seed), **prdc(real, fake),
               **mode_coverage(net.classify(images), view.labels["test"][: len(real)], net.n_classes),
               "test_accuracy": net.test_accuracy, "feature_seconds": train_seconds}
        out.append(row)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--n-train", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out")
    args = p.parse_args(argv)
    import dataclasses

    from genbench.config import RunConfig, build_run_config
    from genbench.planning import effective_data_config

    cfg = build_run_config({**RunConfig().to_dict(), "data": {"name": args.dataset, "n_train": args.n_train,
                                                             "n_test": args.n_test}})
    data_config = effective_data_config(cfg)
    data = load_data(data_config)
    if data.train_labels is None:
        p.error(f"{args.dataset} has no labels: the floors need the trained LeNet")
    view = DataView({"train": data.train, "test": data.test}, {"train": data.train_labels, "test": data.test_labels},
                    config_hash(dataclasses.asdict(data_config)))
    rows = [r for s in args.seeds.split(",") for r in floors(view, int(s), args.samples, args.epochs)]
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"samples_floor_{datetime.now():%Y%m%d-%H%M%S}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"{args.dataset}, {len(data.train)} train / {len(data.test)} test, {args.samples} samples, "
          f"LeNet {args.epochs} epochs, test accuracy "
          + ", ".join(f"{r['test_accuracy']:.3f}" for r in rows if r["case"] == "noise"))
    print("| case | " + " | ".join(METRICS) + " |\n|---|" + "---|" * len(METRICS))
    for case in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == case]
        cells = []
        for m in METRICS:
            v = torch.tensor([r[m] for r in mine], dtype=torch.float64)
            cells.append(f"{v.mean():.4g}" + (f" ± {v.std():.2g}" if len(v) > 1 else ""))
        print(f"| {case} | " + " | ".join(cells) + " |")
    print(f"per-seed rows: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
