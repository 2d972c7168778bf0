"""ABP training against its own layers: how much of a training iteration is the convolution and matmul work.

One ABP iteration on a mini-batch of B images is l Langevin steps (forward pass, gradient w.r.t. z only)
and one learning step (forward pass, gradient w.r.t. the weights). :func:`layer_workload` replays exactly
those calls of the generator's Linear and ConvTranspose2d layers, alone, on inputs of the shapes they see
in training: per layer, l forward + input-gradient passes and one forward + weight-gradient pass (plus the
input gradient for every layer but the first, whose input z is detached in the learning step). Its time,
divided by the time of a real iteration (``ABP.fit`` without its end-of-fit BN recalibration), is the
*efficiency*: the share of an iteration spent in the layers' own arithmetic at their own speed. What is
left is BatchNorm, activations, the likelihood's element-wise terms, the optimiser, indexing and Python.

:func:`flops` counts the floating-point operations of either (``torch.utils.flop_counter``); the two counts
agree, which is the check that the workload is the iteration's layer work and nothing less.

Run as a script for one measurement::

    python benchmarks/efficiency.py [--threads 1] [--batch 50] [--repeats 5]
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
from genbench.backbone import Generator, recalibrate_batchnorm, using_conv_path  # noqa: E402
from genbench.operators import Identity, Observations  # noqa: E402


def _layer_inputs(g: Generator, batch: int) -> list[tuple[nn.Module, torch.Size]]:
    """The Linear / ConvTranspose2d layers of ``g`` in order, with the shape of the input each receives."""
    shapes: list[tuple[nn.Module, torch.Size]] = []
    hooks = [m.register_forward_pre_hook(lambda m, args: shapes.append((m, args[0].shape)))
             for m in g.modules() if isinstance(m, (nn.Linear, nn.ConvTranspose2d))]
    try:
        with torch.no_grad():
            g(torch.zeros(batch, g.latent_dim, device=next(g.parameters()).device))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def _call(layer: nn.Module, x: Tensor, w: Tensor) -> Tensor:
    if isinstance(layer, nn.Linear):
        return F.linear(x, w, layer.bias)
    return F.conv_transpose2d(x, w, layer.bias, layer.stride, layer.padding, layer.output_padding,
                              layer.groups, layer.dilation)


def layer_workload(g: Generator, batch: int, langevin_steps: int) -> Callable[[], None]:
    """A function that runs one training iteration's layer work of ``g`` at mini-batch ``batch`` (module
    docstring); the inputs and output gradients are drawn once, here."""
    work = []
    for i, (layer, shape) in enumerate(_layer_inputs(g, batch)):
        x = torch.randn(shape, device=layer.weight.device)
        with torch.no_grad():
            gy = torch.randn_like(_call(layer, x, layer.weight))
        work.append((i, layer, x, gy))

    def run() -> None:
        for i, layer, x, gy in work:
            w = layer.weight.detach()
            for _ in range(langevin_steps):  # Langevin: gradient w.r.t. the layer's input only
                xi = x.detach().requires_grad_(True)
                torch.autograd.grad(_call(layer, xi, w), xi, gy)
            w = w.clone().requires_grad_(True)  # learning: the weights' gradient (and the input's, past z)
            xi = x.detach().requires_grad_(i > 0)
            torch.autograd.grad(_call(layer, xi, w), [w, xi] if i > 0 else [w], gy)

    return run


def flops(fn: Callable[[], object]) -> int:
    """Floating-point operations of one call of ``fn`` (matmuls and convolutions, forward and backward), by
    ``torch.utils.flop_counter``'s formulas. (Its ``FlopCounterMode`` tracks modules with hooks that refuse
    ``autograd.grad`` on a leaf, which Langevin steps use; a plain dispatch mode counts the same ops.)"""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Count(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            out = func(*args, **(kwargs or {}))
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                Count.total += formula(*args, **(kwargs or {}), out_val=out)
            return out

    with Count():
        fn()
    return int(Count.total)


def _median_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(x: Tensor, config: ABPConfig, repeats: int = 5, seed: int = 0) -> dict[str, float]:
    """Efficiency of ``ABP(config).fit`` on images ``x`` (one epoch per timing) against its layer work:
    seconds per iteration of both, their ratio, and GFLOP/s of both. The two timings alternate. Both run on the
    native convolution path (the replay calls the native kernels; the im2col output layer, a run's default, is
    measured against them by benchmarks/conv_paths.py), whatever path the process had set."""
    with using_conv_path("native"):
        return _measure(x, config, repeats, seed)


def _measure(x: Tensor, config: ABPConfig, repeats: int, seed: int) -> dict[str, float]:
    config = ABPConfig(**{**config.__dict__, "n_epochs": 1})
    obs: Observations = Identity().observe(x)
    iterations = -(-len(x) // config.batch_size)
    torch.manual_seed(seed)
    model = ABP(config).fit(obs)
    g = model.generator_.train()
    workload = layer_workload(g, config.batch_size, config.langevin_steps)

    def fit() -> ABP:
        torch.manual_seed(seed)
        return ABP(config).fit(obs)

    def recal() -> None:
        recalibrate_batchnorm(model.generator_, model.z_train_, config.eval_batch_size)

    # the FLOPs of one real training iteration (ABP's own _train_step) and of the replayed layer work
    state = model._start_fit(obs)
    idx = torch.arange(config.batch_size, device=x.device)
    step_flops = flops(lambda: model._train_step(state, obs[idx], idx))
    work_flops = flops(workload)
    t_fit, t_work = [], []
    fit(), workload()  # warm-up
    for r in range(repeats):
        for which in (("fit", "work") if r % 2 == 0 else ("work", "fit")):
            t0 = time.perf_counter()
            fit() if which == "fit" else [workload() for _ in range(iterations)]
            (t_fit if which == "fit" else t_work).append(time.perf_counter() - t0)
    t_recal = _median_time(recal, repeats)
    step = (statistics.median(t_fit) - t_recal) / iterations
    layers = statistics.median(t_work) / iterations
    return {"iteration_s": step, "layers_s": layers, "efficiency": layers / step, "step_gflop": step_flops / 1e9,
            "workload_gflop": work_flops / 1e9, "step_gflops_per_s": step_flops / step / 1e9,
            "layers_gflops_per_s": work_flops / layers / 1e9, "iterations": iterations,
            "fit_range_s": (min(t_fit), max(t_fit)), "recal_s": t_recal}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--n", type=int, default=1000, help="training images (one epoch per timing)")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from genbench.data import DataConfig, load_data

    x = load_data(DataConfig(name="mnist5k", n_negative=1)).train[: args.n]
    r = measure(x, ABPConfig(batch_size=args.batch), repeats=args.repeats)
    print(f"{torch.get_num_threads()} threads, batch {args.batch}: iteration {1e3 * r['iteration_s']:.2f} ms, "
          f"its layer work alone {1e3 * r['layers_s']:.2f} ms -> efficiency {r['efficiency']:.3f}; "
          f"{r['step_gflop']:.3f} GFLOP per iteration (workload {r['workload_gflop']:.3f}); "
          f"{r['step_gflops_per_s']:.1f} vs {r['layers_gflops_per_s']:.1f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
