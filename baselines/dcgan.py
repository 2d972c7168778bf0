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

(:func:`~genbench.inference.neg_log_joint`: the likelihood shared by every genbench model,
sigma = 0.3, plus the prior) with Adam on z (:func:`~genbench.inference.csgm_invert`) for
``infer_steps`` steps of learning rate ``infer_step_size`` from ``restarts`` random starts
z ~ N(0, I), keeping the start with the lowest final E per image. The generator is frozen (eval
mode, no weight gradients). Random starts make inference random (``deterministic_inference``
is False).

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
from torch import Tensor, nn

from genbench.backbone import ConvTrunk, Generator, dcgan_init
from genbench.generator_model import FitState, GeneratorConfig, GeneratorModel
from genbench.inference import csgm_invert
from genbench.model import Capabilities, check_finite, frozen, progress, require
from genbench.operators import ImageShape, Observations
from genbench.space import FloatRange, IntRange
from genbench.registry import register_model


@dataclass(frozen=True)
class DCGANConfig(GeneratorConfig):
    """DCGAN / AmbientGAN / CSGM hyper-parameters (Radford et al.'s optimiser settings)."""

    renamed_fields = {"inversion_steps": "infer_steps", "inversion_lr": "infer_step_size"}

    lr: float = 2e-4              # Adam, generator and discriminator (sigma, width: GeneratorConfig's)
    n_epochs: int = 60            # ~ABP's fit time (an epoch costs ~65% of ABP's)
    batch_size: int = 64
    infer_steps: int = 100        # Adam steps on z per restart
    infer_step_size: float = 0.1  # Adam's learning rate on z
    restarts: int = 2             # random starts per image; the best final objective is kept

    # what the tuner searches (genbench.tuning; the default lies inside every range)
    search_space = {"lr": FloatRange(5e-5, 1e-3, log=True), "n_epochs": IntRange(20, 100, step=20),
                    "infer_step_size": FloatRange(0.03, 0.3, log=True), "restarts": IntRange(1, 4)}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("infer_step_size",), at_least_one=("restarts",),
                non_negative=("infer_steps",))


def discriminator_input(obs: Observations) -> Tensor:
    """What D sees of observations: (B, C, H, W) y or A^T y, plus the mask channel if any."""
    x0 = obs.naive_inverse()  # y itself for identity / masks, A^T y for projections
    return x0 if obs.mask is None else torch.cat([x0, obs.mask.to(x0.dtype)], dim=1)


def ambient_fake(obs: Observations, x_fake: Tensor) -> Observations:
    """Generated images (B, C, H, W) observed through the operators of ``obs`` (B images):
    A_i(x_fake_i) with the i-th observation's mask (differentiable in x_fake)."""
    return replace(obs, y=obs.apply(x_fake))


@register_model("dcgan", description="DCGAN (Radford et al. 2016); AmbientGAN on corrupted data, "
                                     "CSGM inversion (Bora et al. 2017, 2018)")
class DCGAN(GeneratorModel):
    """DCGAN on the shared Generator; AmbientGAN learning, CSGM recovery."""

    Config = DCGANConfig
    capabilities = Capabilities(deterministic_inference=False)  # random restarts
    dry_run_overrides = {"n_epochs": 1, "n_epochs_by_operator": {}, "infer_steps": 1, "restarts": 1}
    # beats the mean image on clean tiny digits, not from pixel masks (see the module docstring)
    tiny_overrides = {"n_epochs": 200, "width": 64, "batch_size": 25, "lr": 1e-3,
                      "infer_steps": 50, "restarts": 2}
    tiny_limits = {"pixel-mask": "AmbientGAN from 50% pixel masks on 200 8x8 digits reaches 0.95-1.06 "
                                 "of the mean image's error in seconds (0.0873 on 28x28 MNIST)"}
    config: DCGANConfig
    inference_fields = ("infer_steps", "infer_step_size", "restarts", "eval_batch_size")
    networks = ("generator", "discriminator")
    loss_name = "DCGAN losses (discriminator, generator)"
    loss_parts = ("discriminator", "generator")  # the two losses of each epoch's history, in order

    # -- learning: GeneratorModel's epoch loop with these hooks ------------------------------
    def _build_networks(self, image_shape: ImageShape, device: torch.device) -> dict[str, nn.Module]:
        """Generator and discriminator (``disc_channels_`` input channels -> one logit) on ``device``."""
        cfg = self.config
        return {"generator": Generator(cfg.latent_dim, image_shape, cfg.width, device=device),
                "discriminator": ConvTrunk(image_shape, 1, cfg.width, in_channels=self.disc_channels_,
                                           device=device)}

    def _start_fit(self, obs: Observations) -> FitState:
        self.disc_channels_ = obs.image_shape[0] + (obs.mask is not None)  # + the mask channel
        state = super()._start_fit(obs)
        dcgan_init(self.generator_)
        dcgan_init(self.discriminator_)
        state.g, state.disc = self._fast(self.generator_), self._fast(self.discriminator_)  # --compile
        state.opt_g = self._adam(self.generator_.parameters())
        state.opt_d = self._adam(self.discriminator_.parameters())
        return state

    def _train_step(self, state: FitState, real: Observations, idx: Tensor) -> Tensor:
        """One discriminator step, then one non-saturating generator step; returns [L_D, L_G]."""
        b, dev, g, disc = len(real), real.device, state.g, state.disc
        ones, zeros = torch.ones(b, 1, device=dev), torch.zeros(b, 1, device=dev)
        with self._autocast():  # bf16 forward passes with --amp on CUDA; the losses in float32
            fake = ambient_fake(real[torch.randperm(b, device=dev)],
                                g(torch.randn(b, self.config.latent_dim, device=dev)).float())
            fake_in = discriminator_input(fake)
            loss_d = (F.binary_cross_entropy_with_logits(disc(discriminator_input(real)).float(), ones)
                      + F.binary_cross_entropy_with_logits(disc(fake_in.detach()).float(), zeros))
        state.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        state.opt_d.step()
        with self._autocast():
            loss_g = F.binary_cross_entropy_with_logits(disc(fake_in).float(), ones)  # non-saturating
        state.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        state.opt_g.step()
        return torch.stack([loss_d.detach(), loss_g.detach()])

    def _calibration_inputs(self, name: str, obs: Observations) -> Tensor | None:
        """The generator's BN statistics over prior draws (what it was trained on); D's are left."""
        if name != "generator":
            return None
        return torch.randn(max(len(obs), 500), self.config.latent_dim, device=obs.device)

    # -- inference --------------------------------------------------------------------------
    def invert(self, obs: Observations) -> tuple[Tensor, Tensor]:
        """CSGM latents (N, d) and their objectives E (N,), batch by batch (see the module doc)."""
        self._check_obs(obs)
        cfg = self.config
        g = self._fast(self.generator_)
        with frozen(self.generator_):  # inversion needs gradients w.r.t. z only
            out = [csgm_invert(g, obs[b], sigma=cfg.sigma, steps=cfg.infer_steps,
                               restarts=cfg.restarts, lr=cfg.infer_step_size, amp=cfg.amp)
                   for b in progress(self._batches(len(obs), cfg.eval_batch_size), desc="dcgan invert")]
        z, e = torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])
        check_finite(z, "DCGAN inverted latents")
        return z, e

    def infer(self, obs: Observations) -> Tensor:
        return self.invert(obs)[0]

    def _density_note(self) -> str:
        return (f"the GAN has no observation noise of its own: its density uses the shared sigma "
                f"{self.config.sigma} (GeneratorConfig.sigma)")

    @property
    def infer_steps(self) -> int:
        return self.config.infer_steps * self.config.restarts

    # -- persistence: GeneratorModel's, plus the discriminator's input channels -------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "disc_channels": self.disc_channels_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.disc_channels_ = int(state["disc_channels"])
        super().load_state_dict(state)
