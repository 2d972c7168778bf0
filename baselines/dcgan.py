"""DCGAN on the shared backbone, learned from corrupted data as AmbientGAN and inverted as CSGM.

**Model** (Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", ICLR 2016): the shared
:class:`~genbench.backbone.Generator` g(z), z ~ N(0, I_d), against a discriminator D, the shared
:class:`~genbench.backbone.ConvTrunk` (strided 4x4 convolutions, BN, LeakyReLU 0.2, no pooling)
with one output logit; weights ~ N(0, 0.02) (:func:`~genbench.backbone.dcgan_init`); Adam with
lr 2e-4 and beta1 0.5 for both; the non-saturating generator loss:

    L_D = -log sigmoid(D(y)) - log(1 - sigmoid(D(A(g(z)))))     (BCE with logits)
    L_G = -log sigmoid(D(A(g(z))))

**Learning from incomplete or indirect data** (Bora, Price & Dimakis, "AmbientGAN: Generative
models from lossy measurements", ICLR 2018): D never sees a clean image; it compares real
observations y = A(x) with generated ones A(g(z)), the operators drawn from the data's own
distribution. Per mini-batch of B real observations, the fake batch borrows the masks of a random
permutation of that batch, ``obs[perm].apply(g(z))``, so the operators' random state is never
touched; a projection's matrix is shared by all images, so ``apply`` is A g(z) itself. With the
identity this is a plain DCGAN.

What D is fed (both batches through the same code, :func:`discriminator_input`): image-shaped
observations as they are, (B, C, H, W), plus the mask as an extra channel when there is one,
(B, C + 1, H, W), so D can tell occluded entries from black pixels; a projection's vectors
(B, K) as the naive inverse A^T y, (B, C, H, W), so the convolutional D applies unchanged (A^T is
linear and fixed, so D sees an injective image of A g(z) when K <= D: no information is lost).

**Recovery** (Bora, Jalal, Price & Dimakis, "Compressed Sensing using Generative Models", ICML
2017): GAN inversion by minimising, for each image,

    E(z) = ||y - A(g(z))||^2 / (2 sigma^2) + ||z||^2 / 2

(the likelihood shared by every genbench model, sigma = 0.3, plus the prior) with Adam on z for
``inversion_steps`` steps from ``restarts`` random starts z ~ N(0, I), keeping the start with the
lowest final E per image. The generator is frozen (eval mode, no weight gradients). Random starts
make inference random (``deterministic_inference`` is False).

Validation mae on 28x28 MNIST (1000 training images, 300 validation images carved from the
training split, d = 10, default config, 60 epochs ~ ABP's fit time): 0.0737 on clean images
(40 epochs: 0.0806, 80: 0.0688; ABP 0.049, PCA 0.093); on the occluded pixels of p = 0.5 pixel
masks, 0.0894 trained on clean images and 0.0873 trained on the masked images (AmbientGAN).
Restarts matter little there (1, 2, 4: 0.0816, 0.0806, 0.0802 at 40 epochs), nor do 300 steps.

Limitation: on tiny data (200 8x8 digits, d = 4, seconds of training) AmbientGAN from p = 0.5
pixel masks does not beat the mean training image on the occluded pixels (mae ratio 0.95-1.06
over seeds with ``tiny_overrides``; 0.92-0.96 after 500 epochs), while the same GAN learned
from clean images does (0.62-0.69 on clean, 0.80-0.90 on masked test images).

Example::

    >>> from genbench.operators import PixelMask
    >>> op = PixelMask(p=0.5, seed=0)
    >>> model = DCGAN(DCGANConfig(latent_dim=8, n_epochs=5)).fit(op.observe(x_train))
    >>> x_hat = model.reconstruct(op.observe(x_test))   # (N, C, H, W) in [-1, 1]
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.backbone import ConvTrunk, Generator, dcgan_init, recalibrate_batchnorm
from genbench.model import (GeneratorConfig, GeneratorModel, autocast, check_finite, frozen, progress,
                            require, state_device)
from genbench.operators import Observations, gaussian_nll
from genbench.registry import register_model


@dataclass(frozen=True)
class DCGANConfig(GeneratorConfig):
    """DCGAN / AmbientGAN / CSGM hyper-parameters (Radford et al.'s optimiser settings)."""

    lr: float = 2e-4            # Adam, generator and discriminator (sigma, width: GeneratorConfig's)
    n_epochs: int = 60          # ~ABP's fit time (an epoch costs ~65% of ABP's)
    batch_size: int = 64
    inversion_steps: int = 100  # Adam steps on z per restart
    inversion_lr: float = 0.1
    restarts: int = 2           # random starts per image; the best final objective is kept

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("inversion_lr",), at_least_one=("restarts",),
                non_negative=("inversion_steps",))


def discriminator_input(obs: Observations) -> Tensor:
    """What D sees of observations: (B, C, H, W) y or A^T y, plus the mask channel if any."""
    x0 = obs.naive_inverse()  # y itself for identity / masks, A^T y for projections
    return x0 if obs.mask is None else torch.cat([x0, obs.mask.to(x0.dtype)], dim=1)


def ambient_fake(obs: Observations, x_fake: Tensor) -> Observations:
    """Generated images (B, C, H, W) observed through the operators of ``obs`` (B images):
    A_i(x_fake_i) with the i-th observation's mask (differentiable in x_fake)."""
    return replace(obs, y=obs.apply(x_fake))


def csgm_invert(g: torch.nn.Module, obs: Observations, *, sigma: float, steps: int, restarts: int,
                lr: float, amp: bool = False) -> tuple[Tensor, Tensor]:
    """Best of ``restarts`` Adam runs on E(z) = ||y - A(g(z))||^2 / (2 sigma^2) + ||z||^2 / 2.

    Returns z (B, d) and its objective E (B,). The restarts run as one batch of R * B latents;
    restart r starts from the r-th draw of randn(B, d), so the first r restarts of a run with
    more restarts are those of a run with r. Only z receives gradients. ``amp``: g's forward
    pass in bf16 autocast on CUDA; z and E stay float32.
    """
    n, d = len(obs), g.latent_dim
    z = torch.cat([torch.randn(n, d, device=obs.device) for _ in range(restarts)])  # (R * B, d)
    obs_r = obs[torch.arange(n, device=obs.device).repeat(restarts)]
    z.requires_grad_(True)
    optimizer = torch.optim.Adam([z], lr=lr)

    def energy() -> Tensor:
        with autocast(z.device, amp):
            x_hat = g(z)
        return gaussian_nll(obs_r, x_hat.float(), sigma) + 0.5 * z.pow(2).sum(1)  # (R * B,)

    with torch.enable_grad():
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            energy().sum().backward()
            optimizer.step()
    with torch.no_grad():
        e = energy().view(restarts, n)
    best = e.argmin(0)  # (B,)
    rows = torch.arange(n, device=obs.device)
    return z.detach().view(restarts, n, d)[best, rows], e[best, rows]


@register_model("dcgan", description="DCGAN (Radford et al. 2016); AmbientGAN on corrupted data, "
                                     "CSGM inversion (Bora et al. 2017, 2018)")
class DCGAN(GeneratorModel):
    """DCGAN on the shared Generator; AmbientGAN learning, CSGM recovery."""

    Config = DCGANConfig
    dry_run_overrides = {"n_epochs": 1, "inversion_steps": 1, "restarts": 1}
    # beats the mean image on clean tiny digits, not from pixel masks (see the module docstring)
    tiny_overrides = {"n_epochs": 200, "width": 64, "batch_size": 25, "lr": 1e-3,
                      "inversion_steps": 50, "restarts": 2}
    tiny_limits = {"pixel-mask": "AmbientGAN from 50% pixel masks on 200 8x8 digits reaches 0.95-1.06 "
                                 "of the mean image's error in seconds (0.0873 on 28x28 MNIST)"}
    config: DCGANConfig
    inference_fields = ("inversion_steps", "inversion_lr", "restarts", "eval_batch_size")

    def fit(self, obs: Observations) -> DCGAN:
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        cfg = self.config
        n, dev = len(obs), obs.device
        self.disc_channels_ = obs.image_shape[0] + (obs.mask is not None)  # + the mask channel
        g, disc = self._networks(obs.image_shape, self.disc_channels_, dev)
        dcgan_init(g)
        dcgan_init(disc)
        g_fast, disc_fast = self._fast(g), self._fast(disc)  # torch.compile'd with --compile
        opt_g = torch.optim.Adam(g.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=(cfg.beta1, 0.999))
        self.history_: list[list[float]] = []  # per epoch: [mean L_D, mean L_G]
        g.train()
        disc.train()
        for epoch in progress(range(cfg.n_epochs), desc="dcgan fit"):
            total = torch.zeros(2, device=dev)
            perm = torch.randperm(n, device=dev)
            for batch in self._batches(n, cfg.batch_size):
                real = obs[perm[batch]]
                b = len(real)
                ones, zeros = torch.ones(b, 1, device=dev), torch.zeros(b, 1, device=dev)
                with self._autocast():  # bf16 forward passes with --amp on CUDA; the losses in float32
                    fake = ambient_fake(real[torch.randperm(b, device=dev)],
                                        g_fast(torch.randn(b, cfg.latent_dim, device=dev)).float())
                    fake_in = discriminator_input(fake)
                    loss_d = (F.binary_cross_entropy_with_logits(disc_fast(discriminator_input(real)).float(), ones)
                              + F.binary_cross_entropy_with_logits(disc_fast(fake_in.detach()).float(), zeros))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                with self._autocast():
                    loss_g = F.binary_cross_entropy_with_logits(disc_fast(fake_in).float(), ones)  # non-saturating
                opt_g.zero_grad(set_to_none=True)
                loss_g.backward()
                opt_g.step()
                total += torch.stack([loss_d.detach(), loss_g.detach()]) * b
            check_finite(total, f"DCGAN losses (discriminator, generator) at epoch {epoch + 1}")
            self.history_.append((total / n).tolist())
        # exact BN statistics over the prior draws the generator was trained on
        recalibrate_batchnorm(g, torch.randn(max(n, 500), cfg.latent_dim, device=dev), cfg.eval_batch_size)
        self.generator_, self.discriminator_ = g.eval(), disc.eval()
        return self

    def _networks(self, image_shape: tuple[int, int, int], disc_channels: int,
                  device: torch.device) -> tuple[Generator, ConvTrunk]:
        """Generator and discriminator (``disc_channels`` input channels -> one logit) on ``device``."""
        cfg = self.config
        return (Generator(cfg.latent_dim, image_shape, cfg.width, device=device),
                ConvTrunk(image_shape, 1, cfg.width, in_channels=disc_channels, device=device))

    def invert(self, obs: Observations) -> tuple[Tensor, Tensor]:
        """CSGM latents (N, d) and their objectives E (N,), batch by batch (see the module doc)."""
        self._check_obs(obs)
        cfg = self.config
        g = self._fast(self.generator_)
        with frozen(self.generator_):  # inversion needs gradients w.r.t. z only
            out = [csgm_invert(g, obs[b], sigma=cfg.sigma, steps=cfg.inversion_steps,
                               restarts=cfg.restarts, lr=cfg.inversion_lr, amp=cfg.amp)
                   for b in progress(self._batches(len(obs), cfg.eval_batch_size), desc="dcgan invert")]
        z, e = torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
        check_finite(z, "DCGAN inverted latents")
        return z, e

    def infer(self, obs: Observations) -> Tensor:
        return self.invert(obs)[0]

    @property
    def infer_steps(self) -> int:
        return self.config.inversion_steps * self.config.restarts

    @property
    def deterministic_inference(self) -> bool:
        return False  # random restarts

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator_.state_dict(), "discriminator": self.discriminator_.state_dict(),
                "disc_channels": self.disc_channels_, "image_shape": list(self.image_shape_),
                "history": torch.tensor(self.history_, device="cpu")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        self.disc_channels_ = int(state["disc_channels"])
        g, disc = self._networks(self.image_shape_, self.disc_channels_, state_device(state["generator"]))
        g.load_state_dict(state["generator"])
        disc.load_state_dict(state["discriminator"])
        self.generator_, self.discriminator_ = g.eval(), disc.eval()
        self.device_ = next(g.parameters()).device
        self.history_ = state["history"].tolist()
