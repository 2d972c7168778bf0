"""Where the generator's CPU time goes, and what other convolution paths would give (and change).

The shared Generator's two ConvTranspose2d layers dominate ABP's training and every Langevin / AIS step
on the CPU. oneDNN (PyTorch's default CPU path) is slow for their *forward* pass: the hidden layer
(64 -> 32 channels, 7 -> 14 pixels) runs 2.4x faster in channels_last memory layout, and the output layer
(32 -> 1 channel, 14 -> 28 pixels) about 5x faster on PyTorch's own im2col path
(``aten.slow_conv_transpose2d``). Both change the summation order, so numbers move by float rounding
(which a fit amplifies: a separate fit at 1 and at 2 threads differs as much). This script measures,
in one process and alternating the variants:

1. each layer alone: forward, forward + input gradient (a Langevin / AIS step), forward + input and weight
   gradients (a learning step), per path, with the largest difference to the default path;
2. whole workloads with the Generator's forward switched: a 1-epoch ABP fit (batch 50) and one latent-gradient
   step of 256 and 500 latents (AIS's and inference's batches).

    python benchmarks/conv_paths.py [--threads 1] [--repeats 5]

Measured on 2026-12-05, 1 thread, median of 3 (speed-ups over the default path):

=====================  ==========================  ===================  ===================
variant                ABP fit, 1 epoch of 1000    latent grad, B=256   latent grad, B=500
=====================  ==========================  ===================  ===================
output im2col          1.21x idle / 1.29x busy     1.27x / 1.40x        1.38x / 1.36x
hidden channels_last   1.15x / 1.35x               1.19x / 0.96x        1.21x / 1.29x
both                   1.15x / 1.35x               1.13x / 1.13x        1.13x / 1.14x
=====================  ==========================  ===================  ===================

("idle": an earlier version of this measurement on the idle machine; "busy": this script while a 2-worker
sweep used both cores.) The output layer on the im2col path is the one change that pays everywhere: it is
``--conv-path im2col`` (genbench/backbone.py), off by default while the three-seed reference run
(results/reference/mnist5k-default-3seeds) is computed on the native path: one table is one code's numbers
(docs/speed.md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from genbench.abp import ABP, ABPConfig  # noqa: E402
from genbench.backbone import Generator  # noqa: E402
from genbench.operators import Identity  # noqa: E402


def _im2col(layer: nn.ConvTranspose2d, h: Tensor) -> Tensor:
    return torch.ops.aten.slow_conv_transpose2d(h.contiguous(), layer.weight, list(layer.kernel_size), layer.bias,
                                                list(layer.stride), list(layer.padding), list(layer.output_padding),
                                                list(layer.dilation))


def generator_forward(hidden_channels_last: bool, output_im2col: bool) -> Callable[[Generator, Tensor], Tensor]:
    """A forward of :class:`~genbench.backbone.Generator` with the chosen paths (the same weights and layers)."""
    def forward(self: Generator, z: Tensor) -> Tensor:
        h = self.project(z).view(-1, self.c0, self.s0, self.s0)
        for m in self.up:
            if isinstance(m, nn.ConvTranspose2d) and m.out_channels <= 4 and output_im2col:
                h = _im2col(m, h)
            elif isinstance(m, nn.ConvTranspose2d) and hidden_channels_last:
                h = m(h.contiguous(memory_format=torch.channels_last))
            else:
                h = m(h)
        return h.contiguous()
    return forward


VARIANTS = {"default": (False, False), "output im2col": (False, True), "hidden channels_last": (True, False),
            "both": (True, True)}


def _median(fn: Callable[[], object], repeats: int, inner: int = 10) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
    return statistics.median(times)


def layers(repeats: int, batch: int = 50) -> None:
    g = Generator(10, (1, 28, 28), 32)
    for layer in [m for m in g.up if isinstance(m, nn.ConvTranspose2d)]:
        c_in, s = layer.in_channels, 7 if layer.in_channels == 64 else 14
        torch.manual_seed(0)
        x0, gy = torch.randn(batch, c_in, s, s), torch.randn(batch, layer.out_channels, 2 * s, 2 * s)
        ref = None
        for name, (cl, im2col) in VARIANTS.items():
            if cl and im2col:
                continue
            x = x0.contiguous(memory_format=torch.channels_last) if cl else x0
            w = layer.weight.detach().clone().requires_grad_(True)
            xi = x.clone().requires_grad_(True)

            def fwd() -> Tensor:
                if im2col:
                    return torch.ops.aten.slow_conv_transpose2d(xi, w, [4, 4], None, [2, 2], [1, 1], [0, 0], [1, 1])
                return F.conv_transpose2d(xi, w, None, 2, 1)

            times = [_median(fwd, repeats), _median(lambda: torch.autograd.grad(fwd(), xi, gy), repeats),
                     _median(lambda: torch.autograd.grad(fwd(), (xi, w), gy), repeats)]
            outs = [fwd().detach(), *torch.autograd.grad(fwd(), (xi, w), gy)]
            ref = ref or outs
            diffs = ", ".join(f"{(a - b).abs().max().item():.0e}" for a, b in zip(outs, ref))
            print(f"{c_in}->{layer.out_channels} {name:>22}: forward {1e3 * times[0]:.2f} ms, +input grad "
                  f"{1e3 * times[1]:.2f}, +input and weight grads {1e3 * times[2]:.2f}; max diff (y, dx, dw) {diffs}")


def workloads(repeats: int) -> None:
    from genbench.data import DataConfig, load_data

    obs = Identity().observe(load_data(DataConfig(name="mnist5k", n_negative=1)).train[:1000])
    original = Generator.forward
    results: dict[str, dict[str, list[float]]] = {name: {} for name in VARIANTS}
    try:
        g = Generator(10, (1, 28, 28), 32).eval().requires_grad_(False)
        for r in range(repeats):
            for name, paths in (VARIANTS.items() if r % 2 == 0 else reversed(VARIANTS.items())):
                Generator.forward = generator_forward(*paths)
                torch.manual_seed(0)
                t0 = time.perf_counter()
                ABP(ABPConfig(n_epochs=1)).fit(obs)
                results[name].setdefault("ABP fit, 1 epoch of 1000", []).append(time.perf_counter() - t0)
                for b in (256, 500):
                    y, z0 = obs.y[:b], torch.randn(b, 10)

                    def step() -> Tensor:
                        z = z0.clone().requires_grad_(True)
                        return torch.autograd.grad(((y - g(z)) ** 2).sum(), z)[0]

                    results[name].setdefault(f"latent gradient, batch {b}", []).append(_median(step, 1, 5))
    finally:
        Generator.forward = original
    base = {k: statistics.median(v) for k, v in results["default"].items()}
    for name, rows in results.items():
        shown = ", ".join(f"{k} {statistics.median(v):.3f} s ({base[k] / statistics.median(v):.2f}x)"
                          for k, v in rows.items())
        print(f"{name:>22}: {shown}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} thread(s), torch {torch.__version__}")
    layers(args.repeats)
    workloads(args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
