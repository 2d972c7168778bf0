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
then runs ``infer_steps`` steps of ABP's :func:`~genbench.inference.langevin` on
:func:`~genbench.inference.neg_log_joint`, -log p(y, z) = ||y - A(g(z))||^2 / (2 sigma^2) + ||z||^2 / 2,
from that mean with step size ``infer_step_size``, the decoder frozen: the amortisation gap closed
by the same iterative inference ABP uses (gradient descent by default, ``infer_noise=False``;
Langevin with noise when True). It matters most where the
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

from genbench.backbone import ConvTrunk, Generator
from genbench.generator_model import FitState, GeneratorConfig, GeneratorModel
from genbench.inference import langevin
from genbench.model import Capabilities, check_finite, frozen, progress, require
from genbench.operators import ImageShape, Observations, gaussian_nll
from genbench.space import FloatRange, IntRange
from genbench.registry import register_model


@dataclass(frozen=True)
class VAEConfig(GeneratorConfig):
    """VAE hyper-parameters; defaults checked on a validation split of the embedded 28x28 MNIST
    training digits (fit ~ the ABP budget, ~150 s for 4000 digits on 2 CPU cores)."""

    renamed_fields = {"refine_steps": "infer_steps", "refine_step_size": "infer_step_size",
                      "refine_noise": "infer_noise"}

    lr: float = 3e-3                # Adam on encoder and decoder (sigma, width: GeneratorConfig's)
    n_epochs: int = 90              # ~ABP's fit time (an epoch costs ~40% of ABP's)
    infer_steps: int = 0            # > 0: ABP-style iterative inference from the encoder mean
    infer_step_size: float = 0.07   # Langevin / gradient step size delta (0.1 oscillates on 28x28)
    infer_noise: bool = False       # True: Langevin with noise; False: gradient descent on z

    # what the tuner searches (genbench.tuning; the default lies inside every range)
    search_space = {"lr": FloatRange(3e-4, 1e-2, log=True), "n_epochs": IntRange(30, 150, step=15)}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("infer_step_size",), non_negative=("infer_steps",))


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
                                          "(ABP's inference)", infer_steps=100, shares_fit_with="vae")
class VAE(GeneratorModel):
    """Variational auto-encoder: ConvTrunk encoder q(z | y), the shared Generator as decoder."""

    Config = VAEConfig
    capabilities = Capabilities()  # deterministic unless refined with noise (deterministic_inference)
    # infer_steps stays as registered: overriding it here would switch refinement on for "vae"
    dry_run_overrides = {"n_epochs": 1, "n_epochs_by_operator": {}}
    tiny_overrides = {"n_epochs": 40, "width": 8, "batch_size": 25, "lr": 1e-2}
    config: VAEConfig
    inference_fields = ("infer_steps", "infer_step_size", "infer_noise", "eval_batch_size")
    networks = ("encoder", "generator")
    loss_name = "VAE training loss (negative ELBO)"

    # -- learning: GeneratorModel's epoch loop with these hooks ------------------------------
    def _build_networks(self, image_shape: ImageShape, device: torch.device) -> dict[str, nn.Module]:
        """Encoder (image + mask channel -> (mu, logvar)) and decoder, freshly initialised on ``device``."""
        cfg = self.config
        encoder = ConvTrunk(image_shape, 2 * cfg.latent_dim, cfg.width, in_channels=image_shape[0] + 1,
                            device=device)
        return {"encoder": encoder, "generator": Generator(cfg.latent_dim, image_shape, cfg.width, device=device)}

    def _start_fit(self, obs: Observations) -> FitState:
        state = super()._start_fit(obs)
        state.encoder, state.g = self._fast(self.encoder_), self._fast(self.generator_)  # with --compile
        state.optimizer = self._adam([*self.encoder_.parameters(), *self.generator_.parameters()])
        return state

    def _train_step(self, state: FitState, obs_b: Observations, idx: Tensor) -> Tensor:
        """One Adam step on encoder and decoder for the batch-mean negative ELBO."""
        with self._autocast():  # bf16 forward passes with --amp on CUDA
            nll, kl = negative_elbo(state.encoder, state.g, obs_b, self.config.sigma)
        loss = (nll + kl).mean()
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        return loss.detach()

    def _calibration_inputs(self, name: str, obs: Observations) -> Tensor:
        """The encoder's BN statistics over the training inputs; the decoder's over draws
        z ~ q(z | y) of the training images (what it was trained on), from the calibrated encoder."""
        bs = self.config.eval_batch_size
        inputs = torch.cat([encoder_input(obs[b]) for b in self._batches(len(obs), bs)])
        if name == "encoder":
            return inputs
        with torch.no_grad():
            out = torch.cat([self.encoder_(inputs[b]) for b in self._batches(len(obs), bs)])
            mu, logvar = out.chunk(2, dim=1)
            return mu + (0.5 * logvar).exp() * torch.randn_like(mu)

    # -- inference --------------------------------------------------------------------------
    @torch.no_grad()
    def _iwae(self) -> Any:
        """The importance-weighted bound with the encoder as proposal (Burda et al. 2016)."""
        from genbench.iwae import vae_iwae

        return lambda obs, k, generator: vae_iwae(self, obs, k, generator)

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
        if cfg.infer_steps > 0:
            g = self._fast(self.generator_)
            with frozen(self.generator_):  # refinement needs gradients w.r.t. z only
                z = torch.cat([langevin(g, obs[b], z[b], sigma=cfg.sigma, steps=cfg.infer_steps,
                                        step_size=cfg.infer_step_size, noise=cfg.infer_noise,
                                        amp=cfg.amp)
                               for b in progress(self._batches(len(obs), cfg.eval_batch_size),
                                                 desc="vae refine")])
        check_finite(z, "VAE inferred latents")
        return z

    @property
    def infer_steps(self) -> int:
        return self.config.infer_steps

    @property
    def deterministic_inference(self) -> bool:
        return not (self.config.infer_steps > 0 and self.config.infer_noise)
