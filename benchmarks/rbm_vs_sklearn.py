"""Compare baselines.rbm.RBM with sklearn's BernoulliRBM under sklearn's update rule (PCD-1,
sampled negative visibles, no momentum / weight decay, zero visible-bias init) at equal hidden
units, epochs, batch size and learning rate: seconds per epoch, the speed-up (sklearn's time /
ours), held-out reconstruction MSE and pseudo-likelihood. The two fits alternate within one
process (which goes first alternates too), so both see the same machine load; times are medians
over the repeats (one seed each), errors means.

usage: python benchmarks/rbm_vs_sklearn.py [--data digits,mnist5k] [--batch-size 10] [--threads 1]
           [--repeats 5] [--epochs N] [--hidden H] [--lr 0.1] [--sklearn-dtype float64|float32]

Defaults: digits with 64 hidden units and 10 epochs, mnist5k with 100 and 20, batch 10
(sklearn's default), 1 thread for both (torch.set_num_threads and threadpoolctl).
Importable: :func:`recon_error`, :func:`pseudo_ll`, :func:`compare` (one data set -> dict).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.neural_network import BernoulliRBM
from threadpoolctl import threadpool_limits

if __name__ == "__main__":  # run as a script from anywhere: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from baselines.rbm import RBM, RBMConfig, RBMLayer
from genbench.data import DataConfig, load_data
from genbench.operators import Identity

SETUPS = {"digits": (64, 10), "mnist5k": (100, 20)}  # data -> (hidden units, epochs)


def recon_error(layer: RBMLayer, v: torch.Tensor) -> float:
    """Mean squared mean-field reconstruction error of v (N, D): v vs p(v | p(h | v))."""
    return (v - layer.visible_probs(layer.hidden_probs(v))).pow(2).mean().item()


def pseudo_ll(layer: RBMLayer, v: torch.Tensor, draws: int = 10) -> float:
    """Mean pseudo-likelihood of v (sklearn's ``score_samples``) over ``draws`` random flips."""
    g = torch.Generator().manual_seed(0)
    return float(np.mean([layer.pseudo_likelihood(v, torch.randint(0, v.shape[1], (len(v),), generator=g)).mean().item()
                          for _ in range(draws)]))


def sklearn_rule(hidden: int, epochs: int, batch: int, lr: float) -> RBMConfig:
    """Our config under scikit-learn's update rule."""
    return RBMConfig(latent_dim=hidden, lr=lr, n_epochs=epochs, batch_size=batch, cd_k=1, persistent=True,
                     sample_visibles=True, momentum=0.0, final_momentum=0.0, weight_decay=0.0,
                     visible_bias_init="zero")


def fit_ours(x_train: torch.Tensor, cfg: RBMConfig, seed: int) -> tuple[RBMLayer, float, float]:
    """Fit our RBM on images x_train (N, C, H, W) in [-1, 1]; the layer, wall-clock and process
    CPU seconds per epoch."""
    torch.manual_seed(seed)
    obs = Identity().observe(x_train)
    t0, c0 = time.perf_counter(), time.process_time()
    model = RBM(cfg).fit(obs)
    return model.layers_[0], (time.perf_counter() - t0) / cfg.n_epochs, (time.process_time() - c0) / cfg.n_epochs


def fit_sklearn(v_train: np.ndarray, cfg: RBMConfig, seed: int, threads: int) -> tuple[RBMLayer, float, float]:
    """Fit sklearn's BernoulliRBM on visibles v_train (N, D) in [0, 1] with cfg's hidden units,
    lr, batch size and epochs; the layer (float32), wall-clock and process CPU seconds per epoch."""
    sk = BernoulliRBM(n_components=cfg.latent_dim, learning_rate=cfg.lr, batch_size=cfg.batch_size,
                      n_iter=cfg.n_epochs, random_state=seed)
    with threadpool_limits(threads):
        t0, c0 = time.perf_counter(), time.process_time()
        sk.fit(v_train)
        seconds, cpu = (time.perf_counter() - t0) / cfg.n_epochs, (time.process_time() - c0) / cfg.n_epochs
    return RBMLayer(*(torch.from_numpy(a).float() for a in (sk.components_, sk.intercept_visible_,
                                                            sk.intercept_hidden_))), seconds, cpu


def compare(data: str, hidden: int, epochs: int, batch: int, lr: float = 0.1, threads: int = 1,
            repeats: int = 5, sklearn_dtype: str = "float64") -> dict[str, float]:
    """Both fits ``repeats`` times (seeds 0, 1, ...) after a one-epoch warm-up of each, at
    ``threads`` torch threads (set here and restored) and BLAS threads for sklearn. Returns the
    median seconds per epoch (``s_ours``, ``s_sklearn``), ``speedup`` = s_sklearn / s_ours, the
    same in process CPU time (``cpu_*``, ``cpu_speedup``: steadier when other jobs load the machine)
    and the mean test reconstruction MSE (``mse_*``) and pseudo-likelihood (``pll_*``)."""
    splits = load_data(DataConfig(name=data))
    v_train = ((splits.train.flatten(1) + 1) / 2).numpy().astype(sklearn_dtype)
    v_test = (splits.test.flatten(1) + 1) / 2
    cfg = sklearn_rule(hidden, epochs, batch, lr)
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        warm = sklearn_rule(hidden, 1, batch, lr)
        fit_ours(splits.train, warm, 0), fit_sklearn(v_train, warm, 0, threads)
        runs: dict[str, list[tuple[RBMLayer, float, float]]] = {"ours": [], "sklearn": []}
        for seed in range(repeats):
            order = ("ours", "sklearn") if seed % 2 == 0 else ("sklearn", "ours")
            for who in order:
                runs[who].append(fit_ours(splits.train, cfg, seed) if who == "ours"
                                 else fit_sklearn(v_train, cfg, seed, threads))
    finally:
        torch.set_num_threads(saved)
    out: dict[str, float] = {"n_train": len(v_train), "n_test": len(v_test), "n_visible": v_train.shape[1]}
    for who, fits in runs.items():
        out[f"s_{who}"] = statistics.median(s for _, s, _ in fits)
        out[f"cpu_{who}"] = statistics.median(c for _, _, c in fits)
        out[f"mse_{who}"] = statistics.fmean(recon_error(layer, v_test) for layer, _, _ in fits)
        out[f"pll_{who}"] = statistics.fmean(pseudo_ll(layer, v_test) for layer, _, _ in fits)
    out["speedup"], out["cpu_speedup"] = out["s_sklearn"] / out["s_ours"], out["cpu_sklearn"] / out["cpu_ours"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="digits,mnist5k", help="comma-separated data sets (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=10, help="mini-batch size of both (default: %(default)s)")
    parser.add_argument("--epochs", type=int, help="epochs (default: 10 digits, 20 mnist5k)")
    parser.add_argument("--hidden", type=int, help="hidden units (default: 64 digits, 100 mnist5k)")
    parser.add_argument("--lr", type=float, default=0.1, help="learning rate of both (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, help="torch and BLAS threads (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="seeds per data set (default: %(default)s)")
    parser.add_argument("--sklearn-dtype", choices=("float64", "float32"), default="float64",
                        help="dtype of sklearn's input, which it computes in (default: %(default)s)")
    args = parser.parse_args()
    for data in args.data.split(","):
        if data not in SETUPS and (args.hidden is None or args.epochs is None):
            parser.error(f"--data {data}: no default hidden units / epochs; give --hidden and --epochs")
        hidden, epochs = SETUPS.get(data, (args.hidden, args.epochs))
        hidden, epochs = args.hidden or hidden, args.epochs or epochs
        r = compare(data, hidden, epochs, args.batch_size, args.lr, args.threads, args.repeats, args.sklearn_dtype)
        print(f"{data}: train {r['n_train']} test {r['n_test']} D={r['n_visible']} hidden={hidden} epochs={epochs} "
              f"batch={args.batch_size} lr={args.lr} threads={args.threads} sklearn {args.sklearn_dtype}, "
              f"{args.repeats} seeds")
        print(f"  s/epoch (median)     ours {r['s_ours']:.4f}  sklearn {r['s_sklearn']:.4f}  "
              f"speed-up {r['speedup']:.2f}x")
        print(f"  CPU s/epoch (median) ours {r['cpu_ours']:.4f}  sklearn {r['cpu_sklearn']:.4f}  "
              f"speed-up {r['cpu_speedup']:.2f}x")
        print(f"  test recon MSE       ours {r['mse_ours']:.5f}  sklearn {r['mse_sklearn']:.5f}  "
              f"(ratio {r['mse_ours'] / r['mse_sklearn']:.3f})")
        print(f"  test pseudo-LL       ours {r['pll_ours']:.2f}  sklearn {r['pll_sklearn']:.2f}", flush=True)


if __name__ == "__main__":
    main()
