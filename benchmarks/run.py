#!/usr/bin/env python
"""genbench's performance benchmarks, side by side in one process.

    python benchmarks/run.py [--device cpu|cuda|auto] [--out FILE] [--repeats N] [--skip-quick]
                             [--tiny] [--sections A,B] [--seed S] [--threads N]

Every timing is the median of ``--repeats`` runs after one warm-up run, with CUDA synchronised
before each clock read; paired timings alternate which side runs first.

Sections (``--sections``: abp, vae-dcgan, rbm, inference, scaling, quick, likelihood, sweep, efficiency, stack;
row names in brackets):

1. ``abp`` [abp-train]: ``ABP.fit`` throughput (images/s) and its *efficiency* = time of the same work
   written with bare PyTorch calls (``benchmarks/bare.py``) / our time; target >= 0.9.
2. ``vae-dcgan`` [vae-train, dcgan-train]: the same for ``VAE.fit`` and ``DCGAN.fit``; target >= 0.95.
3. ``rbm`` [rbm-vs-sklearn]: ``baselines.rbm.RBM`` against ``sklearn.neural_network.BernoulliRBM``
   under scikit-learn's update rule (``compare`` of ``benchmarks/rbm_vs_sklearn.py``, one thread
   each, on the CPU): seconds per epoch and held-out reconstruction error; target >= 3x faster
   at equal or better error.
4. ``inference``: ``model.reconstruct`` seconds per image for every registered model with a
   latent code, after a short fit, with the model's own inference steps.
5. ``scaling``: ABP's 1-epoch fit time against N and against l (Langevin steps per learning
   iteration): least-squares line, slope and R^2.
6. [memory] (always, not a section of its own): peak resident memory of each section (and peak CUDA memory on a GPU).
7. ``quick`` [quick-preset]: wall time of ``python run_benchmarks.py`` (the quick preset) as a subprocess.
8. ``likelihood``: the likelihood task's cost per image at its default settings (``tasks/likelihood.py``):
   AIS on an ABP generator after a short fit (seconds per image, and per HMC gradient of one chain), the
   exact PPCA density, and the RBM's log Z by AIS (once per fitted model).
9. ``sweep``: cells per hour of one shortened sweep of the default preset's cell mix, run serially (this
   process's thread count) and with ``--workers <cores>`` (1 thread each), in subprocesses; the speed-up and
   the largest value difference between the two tables.
10. ``efficiency`` [abp-efficiency]: one ABP training iteration (l Langevin steps and a learning step, batch 50)
    against the same Linear / ConvTranspose2d calls replayed alone (``benchmarks/efficiency.py``): the share of an
    iteration that is the layers' own arithmetic at their own speed (target >= 0.6), with both FLOP rates and
    the FLOP counts of both (equal: the replay is the iteration's layer work).
11. ``stack`` [stack]: ABP fits per hour when M fits of one config train as one stacked ensemble (``--stack M``,
    ``genbench/stacked.py``) against M separate fits, for several M, on the device; the largest weight
    difference between the two (float rounding).

Writes ``--out`` (default ``benchmarks/results/<timestamp>.csv``, columns ``benchmark, what,
ours, reference, ratio, unit, device, notes``) and the same table as markdown beside it (.md),
printed to stdout with the machine it ran on; progress goes to stderr. ``--tiny`` runs every
section at toy sizes (8x8 digits, tiny nets; section 7 becomes ``run_benchmarks.py --dry-run``)
for the smoke test. Exit code: 0, or 1 when a section failed (its row says why).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make `benchmarks.bare` importable
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from benchmarks import bare  # noqa: E402
from benchmarks.harness import (Bench, Paired, clock, fit_line, machine, markdown, paired,  # noqa: E402
                                peak_memory, repeated, rss_mb, system_load, torch_threads, write_csv)
from genbench.abp import ABP, ABPConfig  # noqa: E402
from genbench.backbone import recalibrate_batchnorm  # noqa: E402
from genbench.data import DataConfig, load_data  # noqa: E402
from genbench.operators import Identity  # noqa: E402
from genbench.registry import available_models  # noqa: E402

SECTIONS = ("abp", "vae-dcgan", "rbm", "inference", "scaling", "quick", "likelihood", "sweep", "efficiency", "stack")
ABP_TARGET, GEN_TARGET, RBM_TARGET, LAYER_TARGET = 0.9, 0.95, 3.0, 0.6
RBM_THREADS = 1  # section 3 runs both RBMs on one thread, rbm_vs_sklearn.py's default


@dataclass(frozen=True)
class Sizes:
    """What every section runs: the full sizes (sections 1-6 sized for a few minutes on 2 idle CPU
    cores, from the parts' single timings) or toy ones."""

    data: DataConfig
    n_train: int                      # training images of sections 1, 2 and 4
    train_epochs: int                 # epochs of the timed fits of sections 1 and 2
    net: dict[str, Any]               # overrides of the ABP / VAE / DCGAN configs (none: defaults)
    abp: dict[str, Any]               # extra ABP overrides
    rbm_data: str                     # section 3's data set (all of its training / test images)
    rbm: tuple[int, int, int, float]  # hidden units, batch, epochs, lr
    n_infer: int                      # test images reconstructed in section 4
    infer_epochs: int | None          # n_epochs of section 4's short fits (None: each dry_run_overrides)
    scaling_ns: tuple[int, ...]
    scaling_ls: tuple[int, ...]
    quick_args: tuple[str, ...]       # arguments of run_benchmarks.py in section 7
    n_ais: int                        # test images of section 8's AIS
    ais: dict[str, Any]               # section 8's likelihood-task parameters (none: the task's defaults)
    sweep_args: tuple[str, ...] = ()  # section 9's sweep (run serially and with --workers)
    efficiency_n: int = 1000          # section 10's training images (one epoch per timing)
    stack_n: int = 500                # section 11's training images per fit (one epoch)
    stack_sizes: tuple[int, ...] = (1, 2, 4)  # section 11's M on the CPU (a GPU adds 8 and 32)


FULL = Sizes(data=DataConfig(name="mnist5k", n_negative=1), n_train=1000, train_epochs=2, net={}, abp={},
             rbm_data="mnist5k", rbm=(100, 10, 3, 0.1), n_infer=200, infer_epochs=2, scaling_ns=(1000, 2000, 4000),
             scaling_ls=(5, 10, 20), quick_args=(), n_ais=4, ais={},
             # the default preset's cell mix (learned models, clean and learn-from-corrupted fits, 2 seeds), shortened:
             # the quick preset's data sizes and latent dim (10), fewer epochs: about 7 minutes for both runs on 2 cores
             sweep_args=("--models", "abp,abp-gd,vae,dcgan,pca,rbm", "--tasks", "reconstruction,inpainting",
                         "--set", "task.inpainting.fractions=[0.7]", "--set", "task.inpainting.blocks=[10]",
                         "--seeds", "0,1", "--set", "model.abp.n_epochs=4", "--set", "model.abp-gd.n_epochs=4",
                         "--set", "model.vae.n_epochs=8", "--set", "model.dcgan.n_epochs=3", "--set",
                         "model.rbm.n_epochs=5"))
TINY = Sizes(data=DataConfig(name="digits", n_train=128, n_test=32, n_negative=1), n_train=64, train_epochs=1,
             net={"latent_dim": 4, "width": 8, "batch_size": 16}, abp={"langevin_steps": 2},
             rbm_data="digits", rbm=(16, 16, 1, 0.1), n_infer=16, infer_epochs=None, scaling_ns=(32, 64, 128),
             scaling_ls=(1, 2, 4),
             quick_args=("--dry-run", "--dataset", "digits", "--models", "abp,pca", "--tasks", "reconstruction"),
             n_ais=2, ais={"steps": 3, "chains": 2, "rbm_steps": 20, "rbm_runs": 4},
             sweep_args=("--dry-run", "--dataset", "digits", "--models", "abp,pca", "--tasks", "reconstruction",
                         "--seeds", "0,1"), efficiency_n=64, stack_n=32, stack_sizes=(1, 2))


# ------------------------------------------------------------------------------- 1-2: training efficiency
def _verdict(ratio: float, target: float) -> str:
    return f"target >= {target:g}: {'met' if ratio >= target else 'NOT met'}"


def bench_abp(ctx: Bench) -> None:
    """ABP.fit against bare.abp_fit on the same images, epochs and config; then the BN
    recalibration alone (part of both fits)."""
    s = ctx.sizes
    cfg = ABPConfig(n_epochs=s.train_epochs, **s.net, **s.abp)
    x = ctx.x_train[:s.n_train]
    obs = Identity().observe(x)
    kw = dict(latent_dim=cfg.latent_dim, width=cfg.width, sigma=cfg.sigma, langevin_steps=cfg.langevin_steps,
              step_size=cfg.step_size, noise=cfg.langevin_noise, lr=cfg.lr, beta1=cfg.beta1,
              n_epochs=cfg.n_epochs, batch_size=cfg.batch_size)
    p = paired(ctx, lambda: ABP(cfg).fit(obs), lambda: bare.abp_fit(x, **kw))
    model, (g, z) = p.out_ours, p.out_ref
    same = (f"same seed: max|W_ours - W_bare| = {bare.max_param_diff(model.generator_, g):.1e}, "
            f"max|z_ours - z_bare| = {(model.z_train_ - z).abs().max().item():.1e}")
    ctx.log(f"abp-train: {p.describe()}; efficiency {p.efficiency:.3f} ({same})")

    t_bn_ours = repeated(ctx, lambda: recalibrate_batchnorm(model.generator_, model.z_train_, cfg.eval_batch_size))
    t_bn_ref = repeated(ctx, lambda: bare.precise_bn(g, bare.generator_stages(g), z))
    loop = (p.t_ref - t_bn_ref) / (p.t_ours - t_bn_ours)
    images = len(x) * cfg.n_epochs
    ctx.add("abp-train", f"ABP.fit, N={len(x)}, {cfg.n_epochs} epochs, batch {cfg.batch_size}, "
            f"l={cfg.langevin_steps}, width {cfg.width}, d={cfg.latent_dim}", images / p.t_ours, images / p.t_ref,
            p.efficiency, "images/s", f"ratio = efficiency = bare time / our time, "
            f"{_verdict(p.efficiency, ABP_TARGET)}; {p.describe()}; without the BN recalibration: {loop:.3f}; {same}")
    ctx.add("abp-train", f"BN recalibration at the end of fit (N={len(x)})", t_bn_ours, t_bn_ref,
            t_bn_ref / t_bn_ours, "s", "included in both times above; ours: recalibrate_batchnorm (per BN layer a pass "
            f"that stops at that layer, batches of {cfg.eval_batch_size}); bare: one eval-mode pass over all latents")


def _generator_row(ctx: Bench, name: str, cls: str, cfg: Any, n: int, p: Paired, same: str) -> None:
    ctx.log(f"{name}: {p.describe()}; efficiency {p.efficiency:.3f} ({same})")
    images = n * cfg.n_epochs
    ctx.add(name, f"{cls}.fit, N={n}, {cfg.n_epochs} epochs, batch {cfg.batch_size}, width {cfg.width}, "
            f"d={cfg.latent_dim}", images / p.t_ours, images / p.t_ref, p.efficiency, "images/s",
            f"ratio = efficiency = bare time / our time, {_verdict(p.efficiency, GEN_TARGET)}; {p.describe()}; {same}")


def bench_vae_dcgan(ctx: Bench) -> None:
    """VAE.fit and DCGAN.fit against bare.vae_fit and bare.dcgan_fit."""
    from baselines.dcgan import DCGAN, DCGANConfig
    from baselines.vae import VAE, VAEConfig

    s = ctx.sizes
    x = ctx.x_train[:s.n_train]
    obs = Identity().observe(x)
    vc = VAEConfig(n_epochs=s.train_epochs, **s.net)
    p = paired(ctx, lambda: VAE(vc).fit(obs), lambda: bare.vae_fit(
        x, latent_dim=vc.latent_dim, width=vc.width, sigma=vc.sigma, lr=vc.lr, beta1=vc.beta1,
        n_epochs=vc.n_epochs, batch_size=vc.batch_size))
    (enc, g) = p.out_ref
    _generator_row(ctx, "vae-train", "VAE", vc, len(x), p,
                   f"same seed: max|W_ours - W_bare| = {bare.max_param_diff(p.out_ours.generator_, g):.1e} "
                   f"(decoder), {bare.max_param_diff(p.out_ours.encoder_, enc):.1e} (encoder)")

    dc = DCGANConfig(n_epochs=s.train_epochs, **s.net)
    p = paired(ctx, lambda: DCGAN(dc).fit(obs), lambda: bare.dcgan_fit(
        x, latent_dim=dc.latent_dim, width=dc.width, lr=dc.lr, beta1=dc.beta1, n_epochs=dc.n_epochs,
        batch_size=dc.batch_size))
    (g, disc) = p.out_ref
    _generator_row(ctx, "dcgan-train", "DCGAN", dc, len(x), p,
                   f"same seed: max|W_ours - W_bare| = {bare.max_param_diff(p.out_ours.generator_, g):.1e} "
                   f"(generator), {bare.max_param_diff(p.out_ours.discriminator_, disc):.1e} (discriminator)")


# ---------------------------------------------------------------------------------------- 3: RBM vs sklearn
def bench_rbm(ctx: Bench) -> None:
    """baselines.rbm.RBM vs sklearn's BernoulliRBM: ``compare`` of benchmarks/rbm_vs_sklearn.py
    (sklearn's update rule, alternating fits after a warm-up, one seed per repeat, on the CPU)."""
    from benchmarks.rbm_vs_sklearn import compare

    hidden, batch, epochs, lr = ctx.sizes.rbm
    r = compare(ctx.sizes.rbm_data, hidden, epochs, batch, lr, threads=RBM_THREADS, repeats=ctx.repeats)
    ctx.log(f"rbm-vs-sklearn: ours {r['s_ours']:.3f} s/epoch, sklearn {r['s_sklearn']:.3f} s/epoch; "
            f"test mse {r['mse_ours']:.5f} vs {r['mse_sklearn']:.5f}")
    setup = (f"{ctx.sizes.rbm_data}, {r['n_train']} training images, {hidden} hidden, batch {batch}, {epochs} epochs, "
             f"lr {lr}, {RBM_THREADS} thread each")
    on = "" if ctx.device.type == "cpu" else "; both on the CPU whatever --device"
    ctx.add("rbm-vs-sklearn", f"training time per epoch ({setup})", r["s_ours"], r["s_sklearn"], r["speedup"],
            "s/epoch", f"ratio = sklearn time / our time (x faster), {_verdict(r['speedup'], RBM_TARGET)}; median "
            f"of {ctx.repeats} seeds; in process CPU time {r['cpu_speedup']:.2f}x; sklearn's rule: PCD-1, sampled "
            f"negative visibles, no momentum / weight decay (rbm_vs_sklearn.compare){on}")
    ctx.add("rbm-vs-sklearn", f"test reconstruction MSE ({r['n_test']} images)", r["mse_ours"], r["mse_sklearn"],
            r["mse_ours"] / r["mse_sklearn"], "mse", f"ratio = ours / sklearn (<= 1: equal or better); mean of "
            f"{ctx.repeats} seeds; test pseudo-likelihood ours {r['pll_ours']:.2f}, sklearn {r['pll_sklearn']:.2f}")


# --------------------------------------------------------------------------------------- 4: inference cost
def bench_inference(ctx: Bench) -> None:
    """Seconds per image of model.reconstruct on n_infer test images, after a short fit."""
    s = ctx.sizes
    train_obs = Identity().observe(ctx.x_train[:s.n_train])
    test_obs = Identity().observe(ctx.x_test[:s.n_infer])
    models = available_models()
    fitted: dict[str, Any] = {}
    # every registered model with a latent code (plug-ins too); a model that reuses another's fit
    # (vae-refine) after the one it reuses
    names = sorted((n for n, sp in models.items() if sp.capabilities.latent_code),
                   key=lambda n: models[n].shares_fit_with is not None)
    for name in names:
        spec = models[name]
        fields = {f.name for f in dataclasses.fields(spec.cls.Config)}
        if s.infer_epochs is None:  # toy sizes: one step of everything
            overrides = dict(spec.cls.dry_run_overrides)
        else:
            overrides = {"n_epochs": s.infer_epochs} if "n_epochs" in fields else {}
        overrides.update({k: v for k, v in s.net.items() if k in fields and k != "batch_size"})
        base = spec.shares_fit_with
        if base in fitted:  # e.g. vae-refine: vae's weights, other inference settings
            model = fitted[base].with_config(spec.make_config(**overrides))
            fit_note = f"fit shared with {base}"
        else:
            t_fit, model = clock(lambda: spec.build(**overrides).fit(train_obs), ctx.device, ctx.seed)
            fit_note = f"fit {t_fit:.2f} s"
        fitted[name] = model
        t = repeated(ctx, lambda: model.reconstruct(test_obs), warmup=lambda: model.reconstruct(test_obs[:4]))
        epochs = f", {overrides['n_epochs']} epochs" if "n_epochs" in overrides else ""
        ctx.log(f"inference {name}: {1e3 * t / len(test_obs):.3f} ms/image, infer_steps={model.infer_steps}")
        ctx.add("inference", f"{name}: reconstruct, {len(test_obs)} test images in one call", 1e3 * t / len(test_obs),
                unit="ms/image", notes=f"infer_steps={model.infer_steps}; after a short fit on "
                f"{len(train_obs)} images{epochs} ({fit_note}); median of {ctx.repeats}")


# ------------------------------------------------------------------------------------------ 5: ABP scaling
def bench_scaling(ctx: Bench) -> None:
    """ABP 1-epoch fit time at several N (default l) and several l (smallest N): linear fits."""
    s = ctx.sizes
    n0, l0 = s.scaling_ns[0], ABPConfig(**s.abp).langevin_steps
    times: dict[tuple[int, int], float] = {}
    for n, l in [(n, l0) for n in s.scaling_ns] + [(n0, l) for l in s.scaling_ls]:
        if (n, l) in times:
            continue
        cfg = ABPConfig(n_epochs=1, **s.net, **{**s.abp, "langevin_steps": l})
        obs = Identity().observe(ctx.x_train[:n])
        times[n, l] = statistics.median(clock(lambda: ABP(cfg).fit(obs), ctx.device, ctx.seed)[0]
                                        for _ in range(ctx.repeats))
        ctx.log(f"scaling N={n} l={l}: {times[n, l]:.3f} s")
        ctx.add("scaling", f"ABP 1-epoch fit, N={n}, l={l}", times[n, l], unit="s",
                notes=f"ABP.fit with n_epochs=1 (includes setup and BN recalibration); median of {ctx.repeats}")
    for axis, xs, key, unit in (("N", s.scaling_ns, lambda v: (v, l0), "s per 1000 images"),
                                ("l", s.scaling_ls, lambda v: (n0, v), f"s per Langevin step (1 epoch, N={n0})")):
        scale = 1000.0 if axis == "N" else 1.0
        slope, intercept, r2 = fit_line([v / scale for v in xs], [times[key(v)] for v in xs])
        fixed = f"l={l0}" if axis == "N" else f"N={n0}"
        ctx.add("scaling", f"time vs {axis} ({fixed}, {axis} in {list(xs)}): slope", slope, unit=unit,
                notes=f"least squares; intercept {intercept:.3f} s")
        ctx.add("scaling", f"time vs {axis} ({fixed}): R^2 of the line", r2, unit="R^2",
                notes="1 = exactly linear")


# ----------------------------------------------------------------------------------------- 7: quick preset
def bench_quick(ctx: Bench) -> None:
    """Wall time of run_benchmarks.py (the quick preset; --tiny: a dry run) in a subprocess."""
    with tempfile.TemporaryDirectory(prefix="genbench-bench-") as out:
        cmd = [sys.executable, str(ROOT / "run_benchmarks.py"), *ctx.sizes.quick_args,
               "--device", ctx.device.type, "--out", out]
        ctx.log(f"quick-preset: {' '.join(cmd[1:])}")
        with open(Path(out) / "log.txt", "w") as log:
            t0 = time.perf_counter()
            env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # this run's thread count
            code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            wall = time.perf_counter() - t0
        tail = (Path(out) / "log.txt").read_text(errors="replace").strip().splitlines()[-3:]
    ctx.log(f"quick-preset: {wall:.1f} s, exit code {code}")
    what = "quick preset" if not ctx.sizes.quick_args else "dry run"
    ctx.add("quick-preset", f"python run_benchmarks.py {' '.join(ctx.sizes.quick_args)}".strip() + f" ({what}), "
            "end to end", wall, unit="s",
            notes=f"subprocess wall time (OMP_NUM_THREADS={torch.get_num_threads()}), exit code {code}"
            + ("" if code == 0 else f" (last lines: {' | '.join(tail)})"))
    ctx.memory_rows.append(dict(benchmark="memory", what="quick-preset: peak RSS (child process)",
                                ours=rss_mb(resource.RUSAGE_CHILDREN), reference=None, ratio=None, unit="MiB",
                                device=ctx.device.type, notes="getrusage(RUSAGE_CHILDREN) ru_maxrss"))
    if code != 0:
        raise RuntimeError(f"run_benchmarks.py exited with code {code}")


# -------------------------------------------------------------------------------------- 9: sweep throughput
def bench_sweep(ctx: Bench) -> None:
    """Cells per hour of one sweep run serially (this process's thread count) and with ``--workers`` (one
    1-thread worker per core), each in a subprocess; the two tables are compared value by value."""
    import pandas as pd

    cores = os.cpu_count() or 1
    walls, tables = {}, {}
    for label, extra, threads in (("serial", (), torch.get_num_threads()),
                                  (f"--workers {cores}", ("--workers", str(cores)), 1)):
        with tempfile.TemporaryDirectory(prefix="genbench-bench-") as out:
            cmd = [sys.executable, str(ROOT / "run_benchmarks.py"), *ctx.sizes.sweep_args, *extra,
                   "--device", ctx.device.type, "--out", out]
            ctx.log(f"sweep ({label}): {' '.join(cmd[1:])}")
            env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
            t0 = time.perf_counter()
            code = subprocess.run(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
            walls[label] = time.perf_counter() - t0
            if code != 0:
                raise RuntimeError(f"the sweep ({label}) exited with code {code}")
            (run_dir,) = [p for p in Path(out).iterdir() if p.is_dir()]
            df = pd.read_csv(run_dir / "results.csv")
            keys = ["model", "latent_dim", "seed", "task", "variant", "protocol", "split", "metric"]
            tables[label] = df.sort_values(keys).reset_index(drop=True)
    n_cells = len(tables["serial"].drop_duplicates(["model", "latent_dim", "seed", "task", "variant", "protocol"]))
    (serial, workers), (a, b) = walls.values(), tables.values()
    diff = float((a["value"] - b["value"]).abs().max())
    ctx.log(f"sweep: {n_cells} cells, serial {serial:.1f} s, workers {workers:.1f} s")
    for label, wall in walls.items():
        ctx.add("sweep", f"{n_cells} cells of the default mix, {label}", 3600 * n_cells / wall, unit="cells/h",
                notes=f"{wall:.1f} s wall")
    ctx.add("sweep", f"--workers {cores} vs serial (2-thread) speed-up", serial / workers, unit="x",
            notes=f"largest |value difference| {diff:.3g} (thread counts differ: float rounding)")


# ------------------------------------------------------------------------------------------ 8: likelihood
def bench_likelihood(ctx: Bench) -> None:
    """Seconds per image of the likelihood task's estimators at its default settings."""
    from baselines.pca import PCA, PCAConfig
    from baselines.rbm import RBM, RBMConfig
    from genbench.ais import ais_log_likelihood
    from tasks.likelihood import Likelihood

    s = ctx.sizes
    p = {**Likelihood.default_params, **s.ais}
    train_obs = Identity().observe(ctx.x_train[:s.n_train])
    test_obs = Identity().observe(ctx.x_test[:s.n_ais])
    model = ABP(ABPConfig(n_epochs=1, **s.net, **s.abp)).fit(train_obs)
    density = model.density()
    def ais(obs: Any) -> Any:
        return ais_log_likelihood(density.decode, obs, latent_dim=density.latent_dim, sigma=density.sigma,
                                  n_steps=p["steps"], n_chains=p["chains"],
                                  generator=torch.Generator().manual_seed(ctx.seed))

    t = repeated(ctx, lambda: ais(test_obs), warmup=lambda: ais(test_obs[:1]))
    per_image = t / len(test_obs)
    grads = ((p["steps"] - 1) * 10 + 1) * p["chains"]  # AISConfig.leapfrog_steps = 10
    ctx.log(f"likelihood: AIS {per_image:.2f} s/image at T={p['steps']}, K={p['chains']}")
    ctx.add("likelihood", f"AIS on ABP (d={model.config.latent_dim}), T={p['steps']} steps, K={p['chains']} chains, "
            f"{len(test_obs)} test images", per_image, unit="s/image",
            notes=f"{grads} gradient evaluations of one latent per image: {1e6 * t / (grads * len(test_obs)):.1f} "
            f"us each; one split of the task = n_images={p['n_images']} images: {per_image * p['n_images']:.0f} s")
    pca = PCA(PCAConfig(latent_dim=model.config.latent_dim)).fit(train_obs)
    exact = pca.density().exact
    t = repeated(ctx, lambda: exact(test_obs))
    ctx.add("likelihood", "exact PPCA log-likelihood", 1e3 * t / len(test_obs), unit="ms/image")
    rbm = RBM(RBMConfig(latent_dim=model.config.latent_dim, n_epochs=1)).fit(train_obs)
    binary = rbm.density().binary
    kw = dict(n_steps=p["rbm_steps"], n_runs=p["rbm_runs"], n_samples=p["dbn_samples"])

    def log_z_and_score() -> None:
        rbm.__dict__.pop("_log_z_memo", None)  # time the log Z estimate, not the memo
        rbm.density().binary(test_obs.y, torch.Generator().manual_seed(ctx.seed), **kw)

    t = repeated(ctx, log_z_and_score)
    binary(test_obs.y, torch.Generator().manual_seed(ctx.seed), **kw)
    t_score = repeated(ctx, lambda: binary(test_obs.y, torch.Generator().manual_seed(ctx.seed), **kw))
    ctx.add("likelihood", f"RBM log Z by AIS ({p['rbm_steps']} steps, {p['rbm_runs']} runs, "
            f"{rbm.config.latent_dim} hidden), once per fit", t - t_score, unit="s",
            notes=f"then {1e3 * t_score / len(test_obs):.3f} ms/image")


# -------------------------------------------------------------------------------- 10: layer efficiency
def bench_efficiency(ctx: Bench) -> None:
    """An ABP training iteration against its own layer work replayed alone (benchmarks/efficiency.py)."""
    from benchmarks.efficiency import measure

    s = ctx.sizes
    cfg = ABPConfig(**s.net, **s.abp)
    r = measure(ctx.x_train[:s.efficiency_n], cfg, repeats=ctx.repeats, seed=ctx.seed)
    ctx.log(f"abp-efficiency: iteration {1e3 * r['iteration_s']:.2f} ms, layers alone {1e3 * r['layers_s']:.2f} ms, "
            f"efficiency {r['efficiency']:.3f}")
    ctx.add("abp-efficiency", f"ABP training iteration vs its Linear/ConvTranspose2d work alone (batch {cfg.batch_size}, "
            f"l={cfg.langevin_steps}, width {cfg.width}, d={cfg.latent_dim}, {r['iterations']} iterations a timing)",
            1e3 * r["iteration_s"], 1e3 * r["layers_s"], r["efficiency"], "ms/iteration",
            f"ratio = efficiency = layer time / iteration time, {_verdict(r['efficiency'], LAYER_TARGET)}; "
            f"{r['step_gflop']:.3f} GFLOP per iteration (replay {r['workload_gflop']:.3f}); iteration "
            f"{r['step_gflops_per_s']:.1f} GFLOP/s, layers alone {r['layers_gflops_per_s']:.1f} GFLOP/s; fit times "
            f"{r['fit_range_s'][0]:.2f}-{r['fit_range_s'][1]:.2f} s less the BN recalibration {r['recal_s']:.3f} s")


# ------------------------------------------------------------------------------------ 11: stacked fits
def bench_stack(ctx: Bench) -> None:
    """Fits per hour of M ABP fits as one stacked ensemble vs M separate fits (one epoch each), per M."""
    from genbench.stacked import fit_stacked

    s = ctx.sizes
    cfg = ABPConfig(n_epochs=1, **s.net, **s.abp)
    obs = Identity().observe(ctx.x_train[:s.stack_n])
    sizes = s.stack_sizes + ((8, 32) if ctx.device.type == "cuda" else ())
    rounding = ""
    if ctx.device.type == "cpu":  # the scale of pure float rounding: one separate fit at 1 and at 2 threads
        fits = []
        for threads in (1, 2):
            with torch_threads(threads):
                fits.append(clock(lambda: ABP(cfg).fit(obs), ctx.device, ctx.seed)[1])
        rounding = (f"; for scale, one separate fit at 1 vs 2 threads: "
                    f"{bare.max_param_diff(fits[0].generator_, fits[1].generator_):.1e}")
    for m in sizes:
        def stacked() -> list[ABP]:
            return fit_stacked(cfg, [obs] * m, [torch.Generator(ctx.device).manual_seed(i) for i in range(m)])

        def separate() -> list[ABP]:
            out = []
            for i in range(m):
                torch.manual_seed(i)
                out.append(ABP(cfg).fit(obs))
            return out

        p = paired(ctx, stacked, separate)
        diff = max(bare.max_param_diff(a.generator_, b.generator_) for a, b in zip(p.out_ours, p.out_ref))
        ctx.log(f"stack M={m}: {p.describe()}")
        ctx.add("stack", f"{m} ABP fits of one config, 1 epoch on {len(obs)} images each: stacked vs separate",
                3600 * m / p.t_ours, 3600 * m / p.t_ref, p.t_ref / p.t_ours, "fits/h",
                f"ratio = separate time / stacked time (> 1: stacking pays); {p.describe()} ('bare' = separate "
                f"fits); max|W_stacked - W_separate| = {diff:.1e} (float rounding{rounding})")


RUNNERS: dict[str, tuple[str, Callable[[Bench], None]]] = {
    "abp": ("1 abp-train", bench_abp), "vae-dcgan": ("2 vae/dcgan-train", bench_vae_dcgan),
    "rbm": ("3 rbm-vs-sklearn", bench_rbm), "inference": ("4 inference", bench_inference),
    "scaling": ("5 scaling", bench_scaling), "quick": ("7 quick-preset", bench_quick),
    "likelihood": ("8 likelihood", bench_likelihood), "sweep": ("9 sweep", bench_sweep),
    "efficiency": ("10 abp-efficiency", bench_efficiency), "stack": ("11 stack", bench_stack)}



# --------------------------------------------------------------------------------------------------- main
def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="Sections: " + ", ".join(SECTIONS))
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto picks CUDA when available (default)")
    p.add_argument("--out", metavar="FILE", help="CSV to write (default benchmarks/results/<timestamp>.csv); "
                                                 "the markdown table goes beside it (.md)")
    p.add_argument("--repeats", type=int, default=3, metavar="N", help="timed runs per measurement (median; "
                                                                        "after one warm-up), default 3")
    p.add_argument("--skip-quick", action="store_true",
                   help="skip the end-to-end subprocess runs: section 7 (the quick preset, ~4.5 min on 2 cores) and "
                   "section 9 (a sweep, serial and with --workers)")
    p.add_argument("--tiny", action="store_true", help="toy sizes (8x8 digits, tiny nets): a smoke run")
    p.add_argument("--sections", default=",".join(SECTIONS), metavar="A,B",
                   help=f"sections to run (default all): {','.join(SECTIONS)}")
    p.add_argument("--seed", type=int, default=0, help="seed of every timed run (default 0)")
    p.add_argument("--threads", type=int, metavar="N", help="torch intra-op threads (default: torch's own, "
                                                            "i.e. OMP_NUM_THREADS or the cores)")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"unknown section(s) {unknown}; choose from {list(SECTIONS)}")
    if args.threads is not None and args.threads < 1:
        p.error(f"--threads must be >= 1, got {args.threads}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda was given but torch sees no CUDA GPU; use --device cpu or auto")
    return args


def run_sections(ctx: Bench, sections: Sequence[str], done: Callable[[], None] = lambda: None) -> list[str]:
    """Run the named sections in order, each inside a peak-memory probe, calling ``done`` after
    each; a section that raises becomes a FAILED row and the others go on. Returns the failed ones."""
    failed = []
    for key in SECTIONS:
        if key not in sections:
            continue
        label, run = RUNNERS[key]
        ctx.log(f"section {label}")
        try:
            with peak_memory(ctx, label.split(" ", 1)[1]):
                run(ctx)
        except Exception as exc:  # one broken section must not hide the others
            traceback.print_exc(file=sys.stderr)
            failed.append(key)
            ctx.add(label.split(" ", 1)[1], "FAILED", None, notes=f"{type(exc).__name__}: {exc}")
        done()
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device("cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
                          else "cpu")
    sizes = TINY if args.tiny else FULL
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    out = Path(args.out) if args.out else ROOT / "benchmarks" / "results" / f"{stamp}.csv"
    sections = [s for s in args.sections if not (s in ("quick", "sweep") and args.skip_quick)]
    command = " ".join(argv if argv is not None else sys.argv[1:])
    threads, load_start = torch.get_num_threads(), system_load()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    try:
        splits = load_data(sizes.data)
        ctx = Bench(device, sizes, args.repeats, args.seed, splits.train.to(device), splits.test.to(device))
        ctx.log(f"device {device}, {torch.get_num_threads()} threads, {'tiny' if args.tiny else 'full'} sizes, "
                f"{args.repeats} repeats; data {sizes.data.name} {tuple(splits.train.shape)}; sections {sections}")

        def write() -> str:  # after every section, so an interrupted run keeps what finished
            header = [f"Run {stamp}: `python benchmarks/run.py {command}`",
                      f"({'tiny' if args.tiny else 'full'} sizes, median of {args.repeats} after one warm-up, "
                      f"seed {args.seed}, {time.perf_counter() - ctx.started:.0f} s in all)", "",
                      *machine(device, load_start)]
            rows = ctx.rows + ctx.memory_rows
            text = markdown(rows, header)
            write_csv(rows, out)
            out.with_suffix(".md").write_text(text)
            return text

        failed = run_sections(ctx, sections, write)
        text = write()
    finally:
        torch.set_num_threads(threads)
    print(text)
    ctx.log(f"wrote {out} and {out.with_suffix('.md')}" + (f"; FAILED sections: {failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
