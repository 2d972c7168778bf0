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

The epoch loop (shuffle, mini-batches, the NaN check, ``history_``, batch-norm recalibration) and
``state_dict`` / ``load_state_dict`` come from :class:`~genbench.generator_model.GeneratorModel`,
the base of ABP, the VAE and the GAN: this file writes only what is its own, the networks, one
optimisation step per mini-batch and the inputs its batch-norm statistics are taken over.

Defaults are untuned (a starting point that runs on the embedded digits); see docs/adding_a_model.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from baselines.vae import encoder_input  # shared: naive inverse + mask channel, (B, C + 1, H, W)
from genbench.backbone import ConvTrunk, Generator
from genbench.generator_model import FitState, GeneratorConfig, GeneratorModel
from genbench.model import Capabilities, check_finite, require
from genbench.operators import BlockMask, Identity, ImageShape, Observations, PixelMask, gaussian_nll
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


# 2. The model: a LatentModel (here GeneratorModel, which already has the epoch loop, decode and
#    the state dict), registered under the name the command line uses.
@register_model("autoencoder", description="Plain autoencoder on the shared backbone (example plug-in)")
class Autoencoder(GeneratorModel):
    """Deterministic autoencoder: ConvTrunk encoder f(y), the shared Generator as decoder."""

    Config = AutoencoderConfig
    config: AutoencoderConfig
    # What it can do: a latent code, learning, sampling (the defaults) and the operators it learns
    # from and recovers through. A projection would run too (the encoder would see A^T y) but is
    # untested: declare only what you checked. The runner writes status=unsupported rows for the
    # others; the contract test checks the refusal is clear.
    capabilities = Capabilities(operators=(Identity, PixelMask, BlockMask))
    # One epoch for --dry-run and the fast contract checks; seconds of real training on 200 8x8
    # digits for the contract's "beats the mean image" check.
    dry_run_overrides = {"n_epochs": 1}
    tiny_overrides = {"n_epochs": 40, "width": 8, "batch_size": 25, "lr": 1e-2}
    # Fields used only after fitting: configs that differ only in them share one fit.
    inference_fields = ("eval_batch_size",)
    # The fitted networks, saved by name (self.encoder_, self.generator_).
    networks = ("encoder", "generator")
    loss_name = "autoencoder loss"

    # -- fit(obs) -> self is GeneratorModel's loop; these are its hooks ---------------------------
    def _build_networks(self, image_shape: ImageShape, device: torch.device) -> dict[str, nn.Module]:
        cfg = self.config  # built on the data's device (and, on load, where the weights were loaded)
        encoder = ConvTrunk(image_shape, cfg.latent_dim, cfg.width, in_channels=image_shape[0] + 1, device=device)
        return {"encoder": encoder, "generator": Generator(cfg.latent_dim, image_shape, cfg.width, device=device)}

    def _start_fit(self, obs: Observations) -> FitState:
        state = super()._start_fit(obs)  # the networks, as self.encoder_ and self.generator_
        state.optimizer = self._adam([*self.encoder_.parameters(), *self.generator_.parameters()])
        return state

    def _train_step(self, state: FitState, obs_b: Observations, idx: Tensor) -> Tensor:
        """One Adam step on the mini-batch (obs[idx] keeps its masks); returns the batch-mean loss."""
        loss = self._loss(obs_b).mean()
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        state.optimizer.step()
        return loss.detach()  # the loop sums it, checks it is finite (NaN raises) and records it

    def _loss(self, obs: Observations) -> Tensor:
        """L(y) per image (B,): the shared likelihood over observed entries + the prior term."""
        z = self.encoder_(encoder_input(obs))  # (B, d); the encoder also sees the mask
        prior = self.config.prior_weight * 0.5 * z.pow(2).sum(1)
        return gaussian_nll(obs, self.generator_(z), self.config.sigma) + prior

    def _calibration_inputs(self, name: str, obs: Observations) -> Tensor:
        """What each network's batch-norm statistics are recomputed over after training (then eval
        mode, so inference is independent of the batch an image is in, a contract check): the
        encoder's inputs, then the codes the calibrated encoder gives them."""
        bs = self.config.eval_batch_size
        inputs = torch.cat([encoder_input(obs[b]) for b in self._batches(len(obs), bs)])
        if name == "encoder":
            return inputs
        with torch.no_grad():
            return torch.cat([self.encoder_(inputs[b]) for b in self._batches(len(obs), bs)])

    # -- infer(obs) -> z: one encoder pass. decode, reconstruct and sample come from the base ----
    @torch.no_grad()
    def infer(self, obs: Observations) -> Tensor:
        self._check_obs(obs)  # type, operator support, fitted, images of the fitted shape
        z = torch.cat([self.encoder_(encoder_input(obs[b]))
                       for b in self._batches(len(obs), self.config.eval_batch_size)])
        check_finite(z, "autoencoder codes")
        return z  # (N, latent_dim)
