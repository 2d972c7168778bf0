"""The reference loops of ``benchmarks/run.py``: ABP, VAE and DCGAN training written with bare
PyTorch calls on the same networks (:class:`~genbench.backbone.Generator`,
:class:`~genbench.backbone.ConvTrunk`), the same optimiser settings, batches and loss terms as
``genbench.abp.ABP.fit``, ``baselines.vae.VAE.fit`` and ``baselines.dcgan.DCGAN.fit`` on fully
observed images (the identity operator), and nothing else: no ``Observations`` objects, no
per-epoch loss history or finiteness check, no progress bar.

Each loop draws its random numbers in the same order as ours (network initialisation, persistent
latents, per-epoch permutation, per-step noise), so under the same seed on the CPU it reaches the
same weights: :func:`max_param_diff` measures that, and the harness reports it beside the
timing as the proof that both sides did the same work.

The end-of-fit "precise BatchNorm" (exact population statistics of every BN layer's input, so
``eval()`` outputs match training) is part of each algorithm and is done here in one eval-mode
pass over all inputs (:func:`precise_bn`), where ours runs one forward pass per BN layer in
batches (:func:`genbench.backbone.recalibrate_batchnorm`).

Example::

    >>> g, z = abp_fit(x, latent_dim=10, width=32, sigma=0.3, langevin_steps=5, step_size=0.1,
    ...                noise=True, lr=3e-3, beta1=0.5, n_epochs=2, batch_size=50)
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from genbench.backbone import ConvTrunk, Generator, dcgan_init  # the same init as ours: not the timed work

Stage = Callable[[Tensor], Tensor]


def build(cls: type[nn.Module], *args: object, device: torch.device, **kwargs: object) -> nn.Module:
    """``cls(*args, **kwargs)`` made on ``device``: directly when the constructor takes a
    ``device`` (so the weights are drawn by the same generator ours uses), else moved there."""
    if "device" in inspect.signature(cls.__init__).parameters:
        return cls(*args, device=device, **kwargs)
    return cls(*args, **kwargs).to(device)


def generator_stages(g: Generator) -> list[Stage]:
    """The Generator as a flat list of layers: project, reshape to (B, C0, s0, s0), up."""
    return [*g.project, lambda h: h.view(-1, g.c0, g.s0, g.s0), *g.up]


def trunk_stages(net: ConvTrunk) -> list[Stage]:
    """The ConvTrunk as a flat list of layers: down, flatten, head."""
    return [*net.down, lambda h: h.flatten(1), net.head]


@torch.no_grad()
def precise_bn(net: nn.Module, stages: Sequence[Stage], x: Tensor) -> Tensor:
    """Set every BN layer's running statistics to the exact (float64) mean and biased variance of
    its input over all of ``x``, in one eval-mode pass; returns the net's eval-mode output."""
    net.eval()
    for stage in stages:
        if isinstance(stage, nn.modules.batchnorm._BatchNorm):
            xd = x.double()
            dims = [0, *range(2, x.dim())]
            mean = xd.mean(dims)
            var = (xd.pow(2).mean(dims) - mean.pow(2)).clamp_min(0.0)
            stage.running_mean.copy_(mean.to(stage.running_mean.dtype))
            stage.running_var.copy_(var.to(stage.running_var.dtype))
        x = stage(x)
    return x


def abp_fit(x: Tensor, *, latent_dim: int, width: int, sigma: float, langevin_steps: int, step_size: float,
            noise: bool, lr: float, beta1: float, n_epochs: int, batch_size: int) -> tuple[Generator, Tensor]:
    """ABP on images x (N, C, H, W): per batch, ``langevin_steps`` steps on the batch's persistent
    latents with the weights frozen,

        z <- z - (delta^2 / 2) * d/dz [||x - g(z)||^2 / (2 sigma^2) + ||z||^2 / 2] + delta * N(0, I),

    then one Adam step on mean_i ||x_i - g(z_i)||^2 / (2 sigma^2); precise BN over the final z.
    Returns the generator (eval mode) and the latents (N, d)."""
    n, dev = len(x), x.device
    g = build(Generator, latent_dim, tuple(x.shape[1:]), width, device=dev)
    params = list(g.parameters())
    optimizer = torch.optim.Adam(params, lr=lr, betas=(beta1, 0.999))
    z = torch.randn(n, latent_dim, device=dev)
    half_step = 0.5 * step_size * step_size
    two_var = 2.0 * sigma * sigma
    g.train()
    for _ in range(n_epochs):
        perm = torch.randperm(n, device=dev)
        for start in range(0, n, batch_size):
            idx = perm[start:start + batch_size]
            x_b = x[idx]
            z_b = z[idx]
            for p in params:
                p.requires_grad_(False)
            for _ in range(langevin_steps):
                z_b = z_b.detach().requires_grad_(True)
                energy = ((x_b - g(z_b)).pow(2).flatten(1).sum(1) / two_var).sum() + 0.5 * z_b.pow(2).sum()
                (grad,) = torch.autograd.grad(energy, z_b)
                z_b = z_b - half_step * grad
                if noise:
                    z_b = z_b + step_size * torch.randn_like(z_b)
            z_b = z_b.detach()
            for p in params:
                p.requires_grad_(True)
            z[idx] = z_b
            loss = ((x_b - g(z_b)).pow(2).flatten(1).sum(1) / two_var).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    precise_bn(g, generator_stages(g), z)
    return g, z


def vae_fit(x: Tensor, *, latent_dim: int, width: int, sigma: float, lr: float, beta1: float, n_epochs: int,
            batch_size: int) -> tuple[ConvTrunk, Generator]:
    """VAE on images x (N, C, H, W): the encoder sees x and a ones mask channel, one
    reparameterised draw per image, loss mean_i ||x_i - g(z_i)||^2 / (2 sigma^2) + KL_i, Adam on
    encoder and decoder; then precise BN of the encoder over the training inputs and of the
    decoder over one draw z ~ q(z | x) per training image. Returns (encoder, generator), eval mode."""
    n, dev = len(x), x.device
    image_shape = tuple(x.shape[1:])
    encoder = build(ConvTrunk, image_shape, 2 * latent_dim, width, in_channels=image_shape[0] + 1, device=dev)
    g = build(Generator, latent_dim, image_shape, width, device=dev)
    optimizer = torch.optim.Adam([*encoder.parameters(), *g.parameters()], lr=lr, betas=(beta1, 0.999))
    two_var = 2.0 * sigma * sigma
    encoder.train()
    g.train()
    for _ in range(n_epochs):
        perm = torch.randperm(n, device=dev)
        for start in range(0, n, batch_size):
            x_b = x[perm[start:start + batch_size]]
            enc_in = torch.cat([x_b, x_b.new_ones(x_b.shape[0], 1, *x_b.shape[2:])], dim=1)
            mu, logvar = encoder(enc_in).chunk(2, dim=1)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
            nll = (x_b - g(z)).pow(2).flatten(1).sum(1) / two_var
            kl = 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)
            loss = (nll + kl).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    enc_in = torch.cat([x, x.new_ones(n, 1, *x.shape[2:])], dim=1)
    mu, logvar = precise_bn(encoder, trunk_stages(encoder), enc_in).chunk(2, dim=1)
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    precise_bn(g, generator_stages(g), z)
    return encoder, g


def dcgan_fit(x: Tensor, *, latent_dim: int, width: int, lr: float, beta1: float, n_epochs: int,
              batch_size: int) -> tuple[Generator, ConvTrunk]:
    """DCGAN on images x (N, C, H, W): per batch one Adam step of D on BCE(D(x), 1) + BCE(D(g(z)), 0),
    then one of G on the non-saturating BCE(D(g(z)), 1); precise BN of G over max(N, 500) prior
    draws. Returns (generator, discriminator), eval mode.

    Ours draws a permutation of the batch for AmbientGAN's mask borrowing even on fully observed
    data; this loop draws it too (and discards it) only so both consume the same random stream."""
    n, dev = len(x), x.device
    image_shape = tuple(x.shape[1:])
    g = build(Generator, latent_dim, image_shape, width, device=dev)
    disc = build(ConvTrunk, image_shape, 1, width, in_channels=image_shape[0], device=dev)
    dcgan_init(g)
    dcgan_init(disc)
    opt_g = torch.optim.Adam(g.parameters(), lr=lr, betas=(beta1, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(beta1, 0.999))
    g.train()
    disc.train()
    for _ in range(n_epochs):
        perm = torch.randperm(n, device=dev)
        for start in range(0, n, batch_size):
            real = x[perm[start:start + batch_size]]
            b = real.shape[0]
            torch.randperm(b, device=dev)  # the random stream of ours (see the docstring)
            fake = g(torch.randn(b, latent_dim, device=dev))
            ones, zeros = torch.ones(b, 1, device=dev), torch.zeros(b, 1, device=dev)
            loss_d = (F.binary_cross_entropy_with_logits(disc(real), ones)
                      + F.binary_cross_entropy_with_logits(disc(fake.detach()), zeros))
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
            loss_g = F.binary_cross_entropy_with_logits(disc(fake), ones)
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
    precise_bn(g, generator_stages(g), torch.randn(max(n, 500), latent_dim, device=dev))
    disc.eval()
    return g, disc


def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    """max |a_p - b_p| over the parameters of two networks of the same architecture."""
    return max((pa.detach() - pb.detach()).abs().max().item() for pa, pb in zip(a.parameters(), b.parameters()))
