"""An example plug-in model: a plain (deterministic) autoencoder on genbench's shared backbone.

A teaching file: everything a new model needs is here, in one file, and nothing in genbench
changes. Run it beside ABP (from the repository root)::

    python run_benchmarks.py --plugin examples/autoencoder.py --models autoencoder,abp --dry-run

Model: an encoder z = f(y) (the backbone's :class:`~genbench.backbone.ConvTrunk`, the mirror of
the generator) and the shared decoder x = g(z) (:class:`~genbench.backbone.Generator`, the very
network ABP, the VAE and the GAN use, so the comparison is about learning, not architecture).
Per observed image y = A(x) the loss is ABP's energy -log p(y, z) at the encoder's code::

    L(y) = ||y - A(g(f(y)))||^2 / (2 sigma^2)  +  prior_weight * ||f(y)||^2 / 2

The first term is genbench's one likelihood, :func:`~genbench.operators.gaussian_nll`: it sums
over the *observed* entries only, so the same loop learns from clean images (A = identity) and
from occluded ones (A = a mask), where an occluded pixel simply contributes nothing. The second
term keeps codes near N(0, I), so ``sample`` (decode z ~ N(0, I)) draws sensible images. It is the
VAE of ``baselines/vae.py`` without the posterior variance: no KL, no noise, ``infer`` is one pass.

Defaults are untuned (a starting point that runs on the embedded digits); see docs/adding_a_model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from baselines.vae import encoder_input  # shared: naive inverse + mask channel, (B, C + 1, H, W)
from genbench.backbone import ConvTrunk, Generator, recalibrate_batchnorm
from genbench.model import GeneratorConfig, GeneratorModel, check_finite, progress, require, state_device
from genbench.operators import BlockMask, Identity, Observations, PixelMask, gaussian_nll
from genbench.registry import register_model


# 1. The config: a frozen dataclass with every hyper-parameter. GeneratorConfig already has the
#    fields shared by every model on the backbone (latent_dim, sigma, width, lr, beta1, n_epochs,
#    batch_size, eval_batch_size), so a comparison can hold them equal; we change two defaults
#    and add one field. On the command line: --set model.autoencoder.prior_weight=0.1
@dataclass(frozen=True)
class AutoencoderConfig(GeneratorConfig):
    """Autoencoder hyper-parameters (untuned defaults that run on the embedded digits)."""

    lr: float = 3e-3
    n_epochs: int = 60
    prior_weight: float = 1.0  # weight of ||z||^2 / 2: 0 = a plain autoencoder, whose codes sample() ignores

    def __post_init__(self) -> None:
        super().__post_init__()  # checks latent_dim, sigma, lr, width ... (errors name the field)
        require(self, non_negative=("prior_weight",))


# 2. The model: a LatentModel (here GeneratorModel, which already decodes with generator_),
#    registered under the name the command line uses.
@register_model("autoencoder", description="Plain autoencoder on the shared backbone (example plug-in)")
class Autoencoder(GeneratorModel):
    """Deterministic autoencoder: ConvTrunk encoder f(y), the shared Generator as decoder."""

    Config = AutoencoderConfig
    config: AutoencoderConfig
    # Operators it learns from and recovers through. A projection would run too (the encoder
    # would see A^T y) but is untested: declare only what you checked. The runner writes
    # status=unsupported rows for the others; the contract test checks the refusal is clear.
    supported_operators = (Identity, PixelMask, BlockMask)
    # One epoch for --dry-run and the fast contract checks; seconds of real training on 200 8x8
    # digits for the contract's "beats the mean image" check.
    dry_run_overrides = {"n_epochs": 1}
    tiny_overrides = {"n_epochs": 40, "width": 8, "batch_size": 25, "lr": 1e-2}
    # Fields used only after fitting: configs that differ only in them share one fit.
    inference_fields = ("eval_batch_size",)

    # -- fit(obs) -> self: learn from observations through any supported operator -------------
    def fit(self, obs: Observations) -> Autoencoder:
        self._check_obs(obs, fitting=True)  # type, operator support, N > 0: errors that teach
        self._set_fitted(obs)               # image_shape_ and device_ (fitted state ends in "_")
        cfg = self.config
        encoder, g = self._networks(obs.image_shape, obs.device)  # built on the data's device
        optimizer = torch.optim.Adam([*encoder.parameters(), *g.parameters()], lr=cfg.lr,
                                     betas=(cfg.beta1, 0.999))
        self.history_: list[float] = []
        for epoch in progress(range(cfg.n_epochs), desc="autoencoder fit"):
            total = torch.zeros((), device=obs.device)
            perm = torch.randperm(len(obs), device=obs.device)  # global RNG: only the runner seeds
            for batch in self._batches(len(obs), cfg.batch_size):
                loss = self._loss(encoder, g, obs[perm[batch]]).mean()  # obs[idx] keeps its masks
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.detach() * (batch.stop - batch.start)
            check_finite(total, f"autoencoder loss at epoch {epoch + 1}")  # NaN raises, never hides
            self.history_.append(total.item() / len(obs))
        self.encoder_, self.generator_ = encoder, g
        self._recalibrate(obs)
        return self

    def _loss(self, encoder: nn.Module, g: nn.Module, obs: Observations) -> Tensor:
        """L(y) per image (B,): the shared likelihood over observed entries + the prior term."""
        z = encoder(encoder_input(obs))  # (B, d); the encoder also sees the mask
        return gaussian_nll(obs, g(z), self.config.sigma) + self.config.prior_weight * 0.5 * z.pow(2).sum(1)

    def _networks(self, image_shape: tuple[int, int, int],
                  device: torch.device) -> tuple[ConvTrunk, Generator]:
        cfg = self.config
        encoder = ConvTrunk(image_shape, cfg.latent_dim, cfg.width, in_channels=image_shape[0] + 1, device=device)
        return encoder, Generator(cfg.latent_dim, image_shape, cfg.width, device=device)

    def _recalibrate(self, obs: Observations) -> None:
        """Exact batch-norm statistics for the final weights, then eval mode: inference is then
        independent of the batch an image is in (a contract check)."""
        bs = self.config.eval_batch_size
        inputs = torch.cat([encoder_input(obs[b]) for b in self._batches(len(obs), bs)])
        recalibrate_batchnorm(self.encoder_, inputs, bs)
        self.encoder_.eval()
        with torch.no_grad():
            z = torch.cat([self.encoder_(inputs[b]) for b in self._batches(len(obs), bs)])
        recalibrate_batchnorm(self.generator_, z, bs)
        self.generator_.eval()

    # -- infer(obs) -> z: one encoder pass. decode, reconstruct and sample come from the base ----
    @torch.no_grad()
    def infer(self, obs: Observations) -> Tensor:
        self._check_obs(obs)  # also: fitted, and on images of the fitted shape
        z = torch.cat([self.encoder_(encoder_input(obs[b]))
                       for b in self._batches(len(obs), self.config.eval_batch_size)])
        check_finite(z, "autoencoder codes")
        return z  # (N, latent_dim)

    # -- persistence: tensors, numbers and strings only (torch.load(..., weights_only=True)) -----
    def state_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder_.state_dict(), "generator": self.generator_.state_dict(),
                "image_shape": list(self.image_shape_), "history": torch.tensor(self.history_, device="cpu")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        # build where torch.load(map_location=...) put the weights: a GPU checkpoint runs on the GPU
        encoder, g = self._networks(self.image_shape_, state_device(state["generator"]))
        encoder.load_state_dict(state["encoder"])
        g.load_state_dict(state["generator"])
        self.encoder_, self.generator_ = encoder.eval(), g.eval()
        self.device_ = next(g.parameters()).device
        self.history_ = state["history"].tolist()
