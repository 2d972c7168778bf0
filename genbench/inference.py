"""Inference of latents from observations, written once for every model on the shared backbone.

The models share one generative model: z ~ N(0, I_d), x = g(z) + eps with eps ~ N(0, sigma^2 I),
observed through an operator, y = A(x). Up to a constant, its negative log joint density per image is

    -log p(y, z) = ||y - A(g(z))||^2 / (2 sigma^2) + ||z||^2 / 2        (:func:`neg_log_joint`)

with the likelihood term :func:`~genbench.operators.gaussian_nll` (summed over the observed entries).
Two ways of inferring z for given observations minimise it with the generator frozen:

- :func:`langevin`: Langevin dynamics (or, without the noise, gradient descent) on z, from a given
  start: ABP's inferential back-propagation (Han et al., "Alternating Back-Propagation for Generator
  Network", AAAI 2017) in training and at test time, and the ``vae-refine`` refinement of the VAE's
  encoder mean;
- :func:`csgm_invert`: Adam on z from several random starts z ~ N(0, I), the best final objective
  kept per image: GAN inversion as in CSGM (Bora, Jalal, Price & Dimakis, "Compressed Sensing using
  Generative Models", ICML 2017).

:func:`langevin_restarts` runs :func:`langevin` from several starts per image and keeps, as
:func:`csgm_invert` does, the chain with the lowest final energy (:func:`best_of_restarts`, shared).

Only z receives gradients; callers also freeze the generator's weights
(:func:`~genbench.model.frozen`), so no weight-gradient graph is kept. ``amp``: the generator's
forward pass in bf16 autocast on CUDA; z and the energy stay float32.

Example::

    >>> z0 = torch.zeros(len(obs), g.latent_dim, device=obs.device)
    >>> with frozen(g):
    ...     z = langevin(g, obs, z0, sigma=0.3, steps=100, step_size=0.1, noise=False)
    ...     z_best, energy = csgm_invert(g, obs, sigma=0.3, steps=100, restarts=2, lr=0.1)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from genbench.model import autocast
from genbench.operators import Observations, gaussian_nll


def neg_log_joint(obs: Observations, x_hat: Tensor, z: Tensor, sigma: float) -> Tensor:
    """-log p(y, z) per image up to a constant, shape (B,), for observations ``obs`` (B images),
    their candidate images ``x_hat`` = g(z) (B, C, H, W) and latents ``z`` (B, d)::

        ||y - A(x_hat)||^2 / (2 sigma^2)  +  ||z||^2 / 2

    the shared likelihood over the observed entries plus the N(0, I) prior."""
    return gaussian_nll(obs, x_hat, sigma) + 0.5 * z.pow(2).sum(1)


def langevin(g: nn.Module, obs: Observations, z: Tensor, *, sigma: float, steps: int,
             step_size: float, noise: bool, amp: bool = False) -> Tensor:
    """``steps`` Langevin steps on z (B, d) targeting p(z | y), with step size delta::

        z <- z - (delta^2 / 2) * d/dz [-log p(y, z)] + delta * N(0, I)

    or, with ``noise=False``, the same steps without the noise (gradient descent on
    :func:`neg_log_joint`). Returns the last z (B, d), detached; draws ``steps`` normal blocks
    (B, d) from the global generator when ``noise``, none otherwise.
    """
    def energy(z: Tensor) -> Tensor:
        with autocast(z.device, amp):
            x_hat = g(z)
        return neg_log_joint(obs, x_hat.float(), z, sigma).sum()

    return langevin_steps(energy, z, steps=steps, step_size=step_size, noise=torch.randn_like if noise else None)


def langevin_steps(energy: Callable[[Tensor], Tensor], z: Tensor, *, steps: int, step_size: float,
                   noise: Callable[[Tensor], Tensor] | None) -> Tensor:
    """The Langevin update of :func:`langevin` on any ``energy(z)`` (a scalar: -log p summed over the
    batch) with ``noise(z)`` drawing the N(0, I) block (None: gradient descent). Written once; the stacked
    fits (genbench/stacked.py) call it with their own energy and per-member random streams."""
    half_step = 0.5 * step_size * step_size
    with torch.enable_grad():
        for _ in range(steps):
            z = z.detach().requires_grad_(True)
            (grad,) = torch.autograd.grad(energy(z), z)
            z = z - half_step * grad
            if noise is not None:
                z = z + step_size * noise(z)
    return z.detach()


def csgm_invert(g: nn.Module, obs: Observations, *, sigma: float, steps: int, restarts: int,
                lr: float, amp: bool = False) -> tuple[Tensor, Tensor]:
    """Best of ``restarts`` Adam runs (``steps`` steps, learning rate ``lr``) on
    E(z) = :func:`neg_log_joint` for each of the B observations.

    Returns z (B, d) and its objective E (B,). The restarts run as one batch of R * B latents;
    restart r starts from the r-th draw of randn(B, d), so the first r restarts of a run with
    more restarts are those of a run with r. ``g`` must have a ``latent_dim`` attribute (the
    shared :class:`~genbench.backbone.Generator` does).
    """
    n, d = len(obs), g.latent_dim
    z = torch.cat([torch.randn(n, d, device=obs.device) for _ in range(restarts)])  # (R * B, d)
    obs_r = obs[torch.arange(n, device=obs.device).repeat(restarts)]
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)

    def energy() -> Tensor:
        with autocast(z.device, amp):
            x_hat = g(z)
        return neg_log_joint(obs_r, x_hat.float(), z, sigma)  # (R * B,)

    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            energy().sum().backward()
            optimizer.step()
    with torch.no_grad():
        e = energy()
    return best_of_restarts(z.detach(), e, restarts)


def langevin_restarts(g: nn.Module, obs: Observations, starts: Tensor, *, sigma: float, steps: int,
                      step_size: float, noise: bool, amp: bool = False) -> Tensor:
    """:func:`langevin` from R starts per image, ``starts`` (R, B, d), run as one batch of R * B chains; per
    image, the chain whose last z has the lowest :func:`neg_log_joint` is kept (B, d). With R = 1 it is
    :func:`langevin` from ``starts[0]``, call for call (no energy is evaluated)."""
    r, n, d = starts.shape
    if r == 1:
        return langevin(g, obs, starts[0], sigma=sigma, steps=steps, step_size=step_size, noise=noise, amp=amp)
    obs_r = obs[torch.arange(n, device=obs.device).repeat(r)]
    z = langevin(g, obs_r, starts.reshape(r * n, d), sigma=sigma, steps=steps, step_size=step_size, noise=noise,
                 amp=amp)
    with torch.no_grad(), autocast(z.device, amp):
        x_hat = g(z)
    return best_of_restarts(z, neg_log_joint(obs_r, x_hat.float(), z, sigma), r)[0]


def best_of_restarts(z: Tensor, energy: Tensor, restarts: int) -> tuple[Tensor, Tensor]:
    """Per image, the restart with the lowest energy: ``z`` (R * B, d) and ``energy`` (R * B,), restart r's
    chains at rows r * B .. (r + 1) * B - 1 -> z (B, d) and its energy (B,)."""
    n = len(z) // restarts
    e = energy.view(restarts, n)
    best = e.argmin(0)  # (B,)
    rows = torch.arange(n, device=z.device)
    return z.view(restarts, n, -1)[best, rows], e[best, rows]
