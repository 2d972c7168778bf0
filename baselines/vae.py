"""Variational auto-encoder on the shared backbone: Kingma & Welling, "Auto-Encoding Variational
Bayes", ICLR 2014.

Model: the same generator as ABP, x = g(z; W) + eps, eps ~ N(0, sigma^2 I), z ~ N(0, I_d),
observed through an operator A: y = A(x). An encoder q(z | y) = N(mu(y), diag(exp(logvar(y))))
amortises inference. Per image, the loss is the negative evidence lower bound

    L(y) = E_q[ ||y - A(g(z))||^2 / (2 sigma^2) ] + KL(q(z | y) || N(0, I))
    KL   = 1/2 sum_j (mu_j^2 + exp(logvar_j) - 1 - logvar_j)

with the expectation estimated by one reparameterised draw z = mu + exp(logvar / 2) * eps.
The first term is :func:`~genbench.operators.gaussian_nll`, the likelihood ABP uses, with the same
sigma (0.3), so reconstruction terms are comparable across models; learning from masks or
projections is that likelihood over what was observed: occluded entries contribute nothing.

Encoder: the shared :class:`~genbench.backbone.ConvTrunk` with ``C + 1`` input channels, fed the
operator's naive inverse (zero-fill for masks, A^T y for projections), (B, C, H, W), and the
observation mask, (B, 1, H, W) (all ones when every entry is observed), so it can tell an
occluded pixel from a black one. Its linear head outputs (B, 2 d) = (mu, logvar).

Inference on new observations (``infer``): one encoder pass in eval mode, z = mu(y) (the
amortised posterior mean: deterministic, independent of the batch). The ``vae-refine`` variant
then runs ``refine_steps`` steps of ABP's :func:`~genbench.abp.langevin` on
-log p(y, z) = ||y - A(g(z))||^2 / (2 sigma^2) + ||z||^2 / 2 from that mean, with the decoder
frozen: the amortisation gap closed by the same iterative inference ABP uses (gradient descent
by default, ``refine_noise=False``; Langevin with noise when True). It matters most where the
encoder meets inputs it was not trained on: a VAE trained on clean images and given masked
ones. Validation mae on 28x28 MNIST (1000 training images, 300 validation images carved from
the training split, d = 10, default config):

========================================  ==============  ================================
task                                      ``vae``         ``vae-refine`` (100 steps, 0.07)
========================================  ==============  ================================
clean images                              0.0570          0.0494
clean-trained, pixel mask p = 0.5 (*)     0.2489          0.0589
clean-trained, 10x10 block mask (*)       0.4755          0.1487
trained on pixel-masked images (*)        0.0682          0.0591
========================================  ==============  ================================

(*) scored on the occluded pixels. ABP's step size 0.1 oscillates on fully observed 28x28
images (0.0598 against 0.0496 at 0.07, on a 60-epoch model); 0.05 needs 200 steps on masks
(0.0645 after 100); 0.07 is good at both. Fitting costs ~40% of an ABP epoch per epoch, so the
default 90 epochs take about ABP's time.

Example::

    >>> from genbench.operators import PixelMask
    >>> op = PixelMask(p=0.5, seed=0)
    >>> model = VAE(VAEConfig(latent_dim=8, n_epochs=5)).fit(op.observe(x_train))
    >>> x_hat = model.reconstruct(op.observe(x_test))   # (N, C, H, W) in [-1, 1]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genbench.abp import langevin
from genbench.backbone import ConvTrunk, Generator, recalibrate_batchnorm
from genbench.model import (GeneratorConfig, GeneratorModel, check_finite, frozen, progress, require,
                            state_device)
from genbench.operators import Observations, gaussian_nll
from genbench.registry import register_model


@dataclass(frozen=True)
class VAEConfig(GeneratorConfig):
    """VAE hyper-parameters; defaults checked on a validation split of the embedded 28x28 MNIST
    training digits (fit ~ the ABP budget, ~150 s for 4000 digits on 2 CPU cores)."""

    lr: float = 3e-3                # Adam on encoder and decoder (sigma, width: GeneratorConfig's)
    n_epochs: int = 90              # ~ABP's fit time (an epoch costs ~40% of ABP's)
    refine_steps: int = 0           # > 0: ABP-style iterative inference from the encoder mean
    refine_step_size: float = 0.07  # Langevin / gradient step size delta (0.1 oscillates on 28x28)
    refine_noise: bool = False      # True: Langevin with noise; False: gradient descent on z

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("refine_step_size",), non_negative=("refine_steps",))


def encoder_input(obs: Observations) -> Tensor:
    """What the encoder sees, (B, C + 1, H, W): the naive inverse and the mask (ones if none)."""
    x0 = obs.naive_inverse()  # (B, C, H, W)
    mask = obs.mask if obs.mask is not None else x0.new_ones(x0.shape[0], 1, *x0.shape[2:])
    return torch.cat([x0, mask.to(x0.dtype)], dim=1)


def kl_to_standard_normal(mu: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row, (B, d) -> (B,)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).sum(1)


def negative_elbo(encoder: nn.Module, decoder: Callable[[Tensor], Tensor], obs: Observations,
                  sigma: float) -> tuple[Tensor, Tensor]:
    """The two terms of the negative ELBO per image, each (B,): the Gaussian NLL of y under one
    reparameterised draw z ~ q(z | y), and KL(q(z | y) || N(0, I)). The networks' outputs are
    cast to float32 (a no-op unless they ran under bf16 autocast, ``--amp``)."""
    mu, logvar = encoder(encoder_input(obs)).float().chunk(2, dim=1)  # (B, d) each
    z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
    x_hat = decoder(z).float()
    with torch.autocast(device_type=x_hat.device.type, enabled=False):  # A x_hat and the loss in float32
        return gaussian_nll(obs, x_hat, sigma), kl_to_standard_normal(mu, logvar)


@register_model("vae", description="Variational auto-encoder, encoder-mean inference (Kingma & Welling 2014)")
@register_model("vae-refine", description="VAE, encoder mean refined by 100 gradient steps on -log p(y, z) "
                                          "(ABP's inference)", refine_steps=100, shares_fit_with="vae")
class VAE(GeneratorModel):
    """Variational auto-encoder: ConvTrunk encoder q(z | y), the shared Generator as decoder."""

    Config = VAEConfig
    # refine_steps stays as registered: overriding it here would switch refinement on for "vae"
    dry_run_overrides = {"n_epochs": 1}
    tiny_overrides = {"n_epochs": 40, "width": 8, "batch_size": 25, "lr": 1e-2}
    config: VAEConfig
    inference_fields = ("refine_steps", "refine_step_size", "refine_noise", "eval_batch_size")

    def fit(self, obs: Observations) -> VAE:
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        cfg = self.config
        n = len(obs)
        encoder, g = self._networks(obs.image_shape, obs.device)
        encoder_fast, g_fast = self._fast(encoder), self._fast(g)  # torch.compile'd with --compile
        params = [*encoder.parameters(), *g.parameters()]
        optimizer = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.history_: list[float] = []
        encoder.train()
        g.train()
        for epoch in progress(range(cfg.n_epochs), desc="vae fit"):
            total = torch.zeros((), device=obs.device)
            perm = torch.randperm(n, device=obs.device)
            for batch in self._batches(n, cfg.batch_size):
                idx = perm[batch]
                with self._autocast():  # bf16 forward passes with --amp on CUDA
                    nll, kl = negative_elbo(encoder_fast, g_fast, obs[idx], cfg.sigma)
                loss = (nll + kl).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * len(idx)
            check_finite(total, f"VAE training loss (negative ELBO) at epoch {epoch + 1}")
            self.history_.append(total.item() / n)
        self.encoder_, self.generator_ = encoder, g
        self._recalibrate(obs)
        return self

    def _networks(self, image_shape: tuple[int, int, int],
                  device: torch.device) -> tuple[ConvTrunk, Generator]:
        """Encoder (image + mask channel -> (mu, logvar)) and decoder, freshly initialised on ``device``."""
        cfg = self.config
        encoder = ConvTrunk(image_shape, 2 * cfg.latent_dim, cfg.width, in_channels=image_shape[0] + 1,
                            device=device)
        return encoder, Generator(cfg.latent_dim, image_shape, cfg.width, device=device)

    def _recalibrate(self, obs: Observations) -> None:
        """Exact BN statistics for the final weights: the encoder's over the training inputs,
        the decoder's over draws z ~ q(z | y) of the training images (what it was trained on)."""
        bs = self.config.eval_batch_size
        inputs = torch.cat([encoder_input(obs[b]) for b in self._batches(len(obs), bs)])
        recalibrate_batchnorm(self.encoder_, inputs, bs)
        self.encoder_.eval()
        with torch.no_grad():
            out = torch.cat([self.encoder_(inputs[b]) for b in self._batches(len(obs), bs)])
            mu, logvar = out.chunk(2, dim=1)
            z = mu + (0.5 * logvar).exp() * torch.randn_like(mu)
        recalibrate_batchnorm(self.generator_, z, bs)
        self.generator_.eval()

    @torch.no_grad()
    def encode(self, obs: Observations) -> tuple[Tensor, Tensor]:
        """Posterior parameters (mu, logvar), each (N, d), of q(z | y): one eval-mode pass."""
        self._check_obs(obs)
        encoder = self._fast(self.encoder_)
        with self._autocast():
            out = torch.cat([encoder(encoder_input(obs[b])).float()
                             for b in self._batches(len(obs), self.config.eval_batch_size)])
        mu, logvar = out.chunk(2, dim=1)
        return mu, logvar

    def infer(self, obs: Observations) -> Tensor:
        cfg = self.config
        z, _ = self.encode(obs)
        if cfg.refine_steps > 0:
            g = self._fast(self.generator_)
            with frozen(self.generator_):  # refinement needs gradients w.r.t. z only
                z = torch.cat([langevin(g, obs[b], z[b], sigma=cfg.sigma, steps=cfg.refine_steps,
                                        step_size=cfg.refine_step_size, noise=cfg.refine_noise,
                                        amp=cfg.amp)
                               for b in progress(self._batches(len(obs), cfg.eval_batch_size),
                                                 desc="vae refine")])
        check_finite(z, "VAE inferred latents")
        return z

    @property
    def infer_steps(self) -> int:
        return self.config.refine_steps

    @property
    def deterministic_inference(self) -> bool:
        return not (self.config.refine_steps > 0 and self.config.refine_noise)

    def state_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder_.state_dict(), "generator": self.generator_.state_dict(),
                "image_shape": list(self.image_shape_), "history": torch.tensor(self.history_, device="cpu")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        encoder, g = self._networks(self.image_shape_, state_device(state["generator"]))
        encoder.load_state_dict(state["encoder"])
        g.load_state_dict(state["generator"])
        self.encoder_, self.generator_ = encoder.eval(), g.eval()
        self.device_ = next(g.parameters()).device
        self.history_ = state["history"].tolist()
