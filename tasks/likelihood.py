"""Held-out log-likelihood: how likely are train, test and out-of-domain images under the model?

For every model that defines a density on images in [-1, 1] (``LatentModel.density()``):

- a **decoder** with the shared Gaussian observation model, p(y) = ∫ N(y; A g(z), sigma^2 I) N(z; 0, I) dz
  (ABP, ABP-GD, the VAE, the GAN): annealed importance sampling from the prior to the posterior with HMC
  transitions (Wu, Burda, Salakhutdinov & Grosse, ICLR 2017; :mod:`genbench.ais`), ``chains`` chains per
  image, the weights averaged in log space. The estimate is a stochastic lower bound; it is **validated**
  on data simulated from the model itself by bidirectional Monte Carlo (Grosse, Ghahramani & Adams 2015):
  the ``simulated`` split's ``bdmc_gap`` is the mean gap (nats per image) between the reverse-AIS upper
  bound and the forward-AIS lower bound at the same settings. For the VAE also ``iwae_nll``, the
  importance-weighted bound (Burda et al. 2016) with the encoder as proposal, which must not beat AIS.
- an **exact** density (PCA: probabilistic PCA, Tipping & Bishop 1999, with its own noise variance).

Models of binary pixels (RBM, DBN) define no density on this space: their continuous metrics are
``unsupported`` with a message, and ``binary_nll`` is theirs: -log p of the binarised image (pixel > 0.5),
the top RBM's partition function by AIS (Salakhutdinov & Murray 2008, :mod:`baselines.rbm_ais`; exact for
the RBM given log Z, an importance-weighted lower bound on log p for the DBN, so its ``binary_nll`` is an
upper bound). Reference methods have no density: their rows are ``unsupported``.

Metrics per split: ``nll`` (nats per image, -log p(y)), ``bpd`` (bits per dimension on the 0..255 pixel
scale: (nll + D ln 127.5) / (D ln 2), the density rescaled from [-1, 1] to [0, 255]; a continuous
density, not a discrete likelihood), ``binary_nll`` (nats per binarised image). The train-test gap of
``nll`` is the overfitting measure. On the ``negative`` split also ``ood_auroc`` / ``ood_aupr``
(:mod:`genbench.ood`) ranked by the per-image nll (``binary_nll`` for the binary models).

Parameters (``--set task.likelihood.<name>=...``): ``n_images`` (images per split, default 30),
``steps`` (annealing steps, default 1000: the BDMC gap is below 1 nat per image on the embedded digits,
docs/likelihood.md), ``chains`` (default 4), ``bdmc_images`` (simulated images, default 10), ``iwae_k``
(default 1000); for the binary models ``rbm_steps`` (AIS steps of log Z,
default 10000) and ``rbm_runs`` (default 100), within 0.1 nats of the exact log Z on the suite's RBMs
(:mod:`baselines.rbm_ais`), and ``dbn_samples`` (samples of the DBN's bound, default 100).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch

from genbench.ais import ais_log_likelihood, bdmc
from genbench.metrics import Metric
from genbench.ood import OOD_METRICS, ood_scores
from genbench.operators import Identity, ImageShape
from genbench.planning import derive_seed
from genbench.registry import register_metric, register_task
from genbench.task import CLEAN_TRAIN, EvalContext, SplitResult, Task, Variant

NLL, BPD, IWAE_NLL, BDMC_GAP, BINARY_NLL = "nll", "bpd", "iwae_nll", "bdmc_gap", "binary_nll"
SIMULATED = "simulated"

for _metric in (
    Metric(NLL, "negative log-likelihood of an image, nats (AIS lower bound on log p, or exact)",
           unit="nats per image", decimals=2, needs="model", plot=True),
    Metric(BPD, "negative log-likelihood in bits per dimension on the 0..255 pixel scale", unit="bits/dim",
           decimals=3, needs="model"),
    Metric(IWAE_NLL, "negative importance-weighted bound (encoder proposal), nats; never below the AIS nll",
           unit="nats per image", decimals=2, needs="model"),
    Metric(BINARY_NLL, "negative log-likelihood of the binarised image (pixel > 0.5) under a binary-pixel "
                       "model (RBM: AIS log Z; DBN: upper bound), nats", unit="nats per image", decimals=2,
           needs="model", plot=True),
    Metric(BDMC_GAP, "BDMC gap on data simulated from the model: upper - lower bound, nats per image",
           unit="nats per image", decimals=3, needs="model"),
):
    register_metric(_metric)


@register_task("likelihood")
class Likelihood(Task):
    """Held-out log-likelihood (AIS checked by BDMC; exact for PCA; binarised for RBM/DBN), OOD AUROC."""

    name = "likelihood"
    splits = {CLEAN_TRAIN: ("train", "test", "negative", SIMULATED)}
    metrics = (NLL, BPD, IWAE_NLL, BINARY_NLL)
    default_params = {"n_images": 30, "steps": 1000, "chains": 4, "bdmc_images": 10, "iwae_k": 1000,
                      "rbm_steps": 10000, "rbm_runs": 100, "dbn_samples": 100}
    dry_run_caps = {"n_images": 16, "steps": 10, "chains": 2, "bdmc_images": 4, "iwae_k": 20, "rbm_steps": 100,
                    "rbm_runs": 10, "dbn_samples": 10}

    def variants(self, image_shape: ImageShape) -> list[Variant]:
        for key in self.default_params:
            value = self.params[key]
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"task.likelihood.{key} must be a positive integer, got {value!r}")
        return [Variant("identity", lambda shape, seed: Identity(seed), protocols=(CLEAN_TRAIN,))]

    def metrics_for(self, split: str) -> tuple[str, ...]:
        if split == SIMULATED:
            return (BDMC_GAP,)
        return self.metric_names() + (OOD_METRICS if split == "negative" else ())

    def evaluate(self, ctx: EvalContext, split: str) -> SplitResult:
        """The estimate is a property of the fit (vae-refine shares vae's density): computed once per fit and
        split, seeded by the fit (``ctx.fit_seed``), and reused by every cell on that fit."""
        key = (self.name, split, tuple(sorted(self.params.items())))
        reused = key in ctx.fit_cache
        if not reused:
            generator = torch.Generator().manual_seed(derive_seed(ctx.fit_seed, self.name, split))
            ctx.fit_cache[key] = self._estimate(ctx, split, generator)
        result = ctx.fit_cache[key]
        if reused and result.scores:
            note = "estimated once for the fit this model shares (same density)"
            result = dataclasses.replace(result, notes={m: "; ".join(filter(None, (result.notes.get(m), note)))
                                                        for m in result.scores})
        return result

    def _estimate(self, ctx: EvalContext, split: str, generator: torch.Generator) -> SplitResult:
        density = ctx.model.density()
        wanted = self.metrics_for(split)
        name = type(ctx.model).__name__
        if density is None:
            why = f"{name} defines no density" + (f": {ctx.model.density_note}" if ctx.model.density_note else "")
            return SplitResult({}, 0, unsupported={m: why for m in wanted})
        if split == SIMULATED:
            return self._bdmc(ctx, density, wanted, generator)
        p = self.params
        obs = ctx.observed[split][: p["n_images"]]
        dims = math.prod(obs.image_shape)
        t0 = ctx.clock()
        scores: dict[str, float] = {}
        notes: dict[str, str] = {}
        iwae_nll = None
        if density.binary is not None:
            nll = -density.binary(obs.y, generator, n_steps=p["rbm_steps"], n_runs=p["rbm_runs"],
                                  n_samples=p["dbn_samples"]).double().cpu()
            scores[BINARY_NLL] = float(nll.mean())
            notes[BINARY_NLL] = density.note
            unsupported = {m: f"{name} defines no density on images in [-1, 1]: {density.note}"
                           for m in (NLL, BPD, IWAE_NLL)}
        else:
            if density.exact is not None:
                log_p = density.exact(obs)
            else:
                log_p = ais_log_likelihood(density.decode, obs, latent_dim=density.latent_dim, sigma=density.sigma,
                                           n_steps=p["steps"], n_chains=p["chains"], generator=generator).log_p
            nll = -log_p.double().cpu()
            scores[NLL] = float(nll.mean())
            scores[BPD] = float((nll.mean() + dims * math.log(127.5)) / (dims * math.log(2)))
            if density.note:
                notes[NLL] = notes[BPD] = density.note
            unsupported = {BINARY_NLL: f"{name} is a density on continuous pixels (see nll), not on binary ones"}
            if density.iwae is not None:
                iwae_nll = -density.iwae(obs, p["iwae_k"], generator).double().cpu()
                scores[IWAE_NLL] = float(iwae_nll.mean())
            elif density.exact is not None:
                unsupported[IWAE_NLL] = "exact density: no bound needed"
            else:
                unsupported[IWAE_NLL] = f"{name} has no encoder to propose from"
        seconds = ctx.clock() - t0
        intervals = _intervals(scores, nll, iwae_nll, dims, derive_seed(ctx.fit_seed, self.name, split, "bootstrap"))
        ctx.fit_cache[(self.name, "per-image nll", split)] = nll
        if split == "negative":
            scores.update(ood_scores(ctx.fit_cache[(self.name, "per-image nll", "test")], nll))
        return SplitResult(scores, len(obs), seconds / len(obs), 0, unsupported=unsupported, notes=notes,
                           intervals=intervals)

    def _bdmc(self, ctx: EvalContext, density: Any, wanted: tuple[str, ...],
              generator: torch.Generator) -> SplitResult:
        if density.decode is None:
            kind = "exact density" if density.exact is not None else "binary model, log Z by AIS"
            return SplitResult({}, 0, unsupported={m: f"{kind}: no decoder AIS to validate" for m in wanted})
        p = self.params
        t0 = ctx.clock()
        result = bdmc(density.decode, ctx.op, p["bdmc_images"], latent_dim=density.latent_dim,
                      image_shape=tuple(ctx.observed["test"].image_shape), sigma=density.sigma,
                      n_steps=p["steps"], n_chains=p["chains"], generator=generator, device=ctx.device)
        seconds = ctx.clock() - t0
        return SplitResult({BDMC_GAP: float(result.gap)}, p["bdmc_images"], seconds / p["bdmc_images"], 0,
                           notes={BDMC_GAP: density.note} if density.note else {})


def _intervals(scores: dict[str, float], nll: torch.Tensor, iwae_nll: torch.Tensor | None, dims: int,
               seed: int) -> dict[str, tuple[float, float]]:
    """Bootstrap intervals over the images of the per-image means (nll, bits/dim, IWAE), one resample set."""
    from genbench.uncertainty import bootstrap_weights, ratio_interval

    weights = bootstrap_weights(len(nll), seed)
    ones = np.ones(len(nll))
    out = {}
    for name, values in ((BINARY_NLL, nll), (NLL, nll), (IWAE_NLL, iwae_nll)):
        if name in scores and values is not None:
            out[name] = ratio_interval(values.numpy(), ones, weights)
    if NLL in out:
        out[BPD] = tuple((v + dims * math.log(127.5)) / (dims * math.log(2)) for v in out[NLL])
    return out
