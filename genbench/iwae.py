"""The importance-weighted bound on a VAE's log-likelihood, with its encoder as the proposal: Burda,
Grosse & Salakhutdinov, "Importance Weighted Autoencoders", ICLR 2016.

The density is genbench's shared Gaussian observation model (:mod:`genbench.ais`): z ~ N(0, I_d),
y = A g(z) + N(0, sigma^2 I_n) over the n observed scalars of an image (mask sum x channels for
masks, K for projections, C * H * W for the identity). With the encoder's q(z | y) = N(mu, diag(e^logvar))
and k draws z_i = mu + e^{logvar / 2} eps_i, eps_i ~ N(0, I)::

    L_k(y) = log (1/k) sum_i w_i,   log w_i = log p(y | z_i) + log N(z_i; 0, I) - log q(z_i | y),
    log p(y | z) = -||y - A g(z)||^2 / (2 sigma^2) - n / 2 log(2 pi sigma^2)   (normalised)

E[L_1] = ELBO <= E[L_k] <= E[L_{k+1}] -> log p(y) as k grows (for a q covering the posterior), and
L_k = log p(y) exactly for every k when q is the exact posterior (all weights equal p(y)). It is a
stochastic lower bound: a cross-check that must lie below a converged AIS estimate.

Randomness and batching: one CPU ``torch.Generator`` per image, seeded by one draw from the caller's
``generator``, gives that image's k x d normals (moved to the latents' device), so the result of an
image depends neither on ``batch_size`` nor on the device; ``batch_size`` bounds the latents decoded
at once (images x draws; an image's k draws are split when k > batch_size).

Example::

    >>> g = torch.Generator().manual_seed(0)
    >>> log_p = vae_iwae(model, Identity().observe(x_test), k=1000, generator=g)   # (N,) nats
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from genbench.ais import gaussian_log_likelihood
from genbench.operators import Observations

__all__ = ["iwae_log_likelihood", "vae_iwae"]

Encoder = Callable[[Observations], tuple[Tensor, Tensor]]  # obs (B, ...) -> (mu, logvar), each (B, d)
Decoder = Callable[[Tensor], Tensor]                        # z (B, d) -> x_hat (B, C, H, W)

_LOG_2PI = math.log(2 * math.pi)


def iwae_log_likelihood(encode: Encoder, decode: Decoder, obs: Observations, *, sigma: float, k: int,
                        generator: torch.Generator, batch_size: int = 4096) -> Tensor:
    """The k-sample importance-weighted bound L_k(y) per image (module docstring), (N,) in nats,
    in y's dtype. ``encode(obs) -> (mu, logvar)`` (each (B, d)) and ``decode(z) -> x_hat``
    (B, C, H, W) are called without gradients; ``batch_size`` latents are decoded at a time."""
    _check(obs, sigma=sigma, k=k, batch_size=batch_size, generator=generator)
    seeds = torch.randint(0, 2 ** 62, (len(obs),), generator=generator).tolist()
    per_batch = max(1, batch_size // k)
    with torch.no_grad():
        parts = [_batch(encode, decode, obs[i:i + per_batch], seeds[i:i + per_batch], sigma, k, batch_size)
                 for i in range(0, len(obs), per_batch)]
    log_p = torch.cat(parts)
    if not bool(torch.isfinite(log_p).all()):
        raise FloatingPointError("IWAE bound is NaN or infinite: check the encoder's logvar and the decoder")
    return log_p.to(obs.y.dtype)


def vae_iwae(model: Any, obs: Observations, k: int, generator: torch.Generator, *,
             batch_size: int = 4096) -> Tensor:
    """:func:`iwae_log_likelihood` of a fitted genbench VAE (:class:`baselines.vae.VAE`): its
    ``encode`` (eval mode, (mu, logvar)), ``decode`` and ``config.sigma``; (N,) nats per image."""
    obs = obs.to(model.device_)
    return iwae_log_likelihood(model.encode, lambda z: model.decode(z).float(), obs, sigma=model.config.sigma,
                               k=k, generator=generator, batch_size=batch_size)


def _batch(encode: Encoder, decode: Decoder, obs: Observations, seeds: list[int], sigma: float, k: int,
           batch_size: int) -> Tensor:
    """L_k for a batch of B images: (B,) float64."""
    mu, logvar = encode(obs)
    mu, logvar = mu.double(), logvar.double()
    _check_posterior(mu, logvar, len(obs))
    d = mu.shape[1]
    eps = torch.stack([torch.randn(k, d, generator=torch.Generator().manual_seed(s), dtype=torch.float64)
                       for s in seeds]).to(mu.device)                          # (B, k, d)
    z = mu[:, None] + (0.5 * logvar).exp()[:, None] * eps                      # (B, k, d)
    log_prior = -0.5 * (z.pow(2).sum(-1) + d * _LOG_2PI)
    log_q = -0.5 * (eps.pow(2) + logvar[:, None] + _LOG_2PI).sum(-1)
    log_lik = _log_likelihood(decode, obs, z, sigma, batch_size)               # (B, k)
    return torch.logsumexp(log_lik + log_prior - log_q, 1) - math.log(k)


def _log_likelihood(decode: Decoder, obs: Observations, z: Tensor, sigma: float, batch_size: int) -> Tensor:
    """log p(y_b | z_bi) for z (B, k, d): (B, k) float64, ``batch_size`` latents per decode call."""
    b, k, d = z.shape
    rows = torch.arange(b, device=obs.device).repeat_interleave(k)             # image of each latent
    flat = z.reshape(b * k, d)
    out = []
    for start in range(0, b * k, batch_size):
        idx = slice(start, start + batch_size)
        x_hat = decode(flat[idx].to(obs.y.dtype))
        if x_hat.shape[1:] != tuple(obs.image_shape):
            raise ValueError(f"decode must map latents (B, d) to images (B, C, H, W) = (B, "
                             f"{', '.join(map(str, obs.image_shape))}), got shape {tuple(x_hat.shape)}")
        out.append(gaussian_log_likelihood(obs[rows[idx]], x_hat.to(obs.y.dtype), sigma).double())
    return torch.cat(out).view(b, k)


def _check(obs: Observations, *, sigma: float, k: int, batch_size: int, generator: torch.Generator) -> None:
    if not isinstance(obs, Observations):
        raise TypeError(f"iwae_log_likelihood needs Observations (y with its operator), got {type(obs).__name__}")
    if isinstance(k, bool) or not isinstance(k, int) or isinstance(batch_size, bool) or not isinstance(batch_size, int):
        raise TypeError(f"iwae_log_likelihood: k and batch_size are counts (int), got {k!r} and {batch_size!r}")
    for name, value in (("sigma", sigma), ("k", k), ("batch_size", batch_size)):
        if not value > 0:
            raise ValueError(f"iwae_log_likelihood: {name} must be positive, got {value}")
    if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
        raise ValueError(f"iwae_log_likelihood draws on the CPU and moves the draws: pass a CPU "
                         f"torch.Generator, got {generator!r}")


def _check_posterior(mu: Tensor, logvar: Tensor, n: int) -> None:
    if mu.dim() != 2 or mu.shape != logvar.shape or mu.shape[0] != n:
        raise ValueError(f"encode must return (mu, logvar), each (B, d) with B = {n}, got shapes "
                         f"{tuple(mu.shape)} and {tuple(logvar.shape)}")
