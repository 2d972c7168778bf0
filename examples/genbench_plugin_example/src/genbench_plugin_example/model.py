"""A linear autoencoder, added to genbench from outside through the ``genbench.models`` entry point.

genbench imports this module (see ``pyproject.toml``: ``mine = "genbench_plugin_example.model"``)
the first time its registry is used; the decorator below then registers ``linear-ae``.

Model: z = E [y0, m] + c (a linear encoder of the naive inverse y0 and the mask m, flattened) and
x = tanh(W z + b) (a linear decoder, squashed into [-1, 1]), trained on the shared likelihood over
the observed entries plus the N(0, I) prior on z::

    L(y) = ||y - A(tanh(W z + b))||^2 / (2 sigma^2) + ||z||^2 / 2

(:func:`genbench.inference.neg_log_joint`, the energy ABP's inference minimises). It works on any
image size and, since nothing in the loss depends on the operator's type, through every operator
(its ``capabilities`` keep the default ``operators=(Operator,)``). See docs/adding_a_model.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from genbench.inference import neg_log_joint
from genbench.model import Capabilities, LatentModel, ModelConfig, check_finite, require, state_device
from genbench.operators import Observations
from genbench.registry import register_model


@dataclass(frozen=True)
class LinearAEConfig(ModelConfig):
    """Linear autoencoder hyper-parameters (untuned defaults)."""

    sigma: float = 0.3   # the likelihood std ABP, the VAE and the GAN use
    lr: float = 1e-2     # Adam
    n_epochs: int = 100
    batch_size: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("sigma", "lr"), at_least_one=("n_epochs", "batch_size"))


@register_model("linear-ae", description="Linear autoencoder (example entry-point plug-in)")
class LinearAE(LatentModel):
    """Linear encoder of (naive inverse, mask), linear decoder with tanh."""

    Config = LinearAEConfig
    config: LinearAEConfig
    capabilities = Capabilities()  # a latent code, learns, samples, deterministic, every operator
    dry_run_overrides = {"n_epochs": 1}
    tiny_overrides = {"n_epochs": 150, "batch_size": 50}

    def fit(self, obs: Observations) -> LinearAE:
        self._check_obs(obs, fitting=True)
        self._set_fitted(obs)
        cfg = self.config
        self.encoder_, self.decoder_ = self._networks(obs.device)
        optimizer = torch.optim.Adam([*self.encoder_.parameters(), *self.decoder_.parameters()], lr=cfg.lr)
        for epoch in range(cfg.n_epochs):
            perm = torch.randperm(len(obs), device=obs.device)
            for batch in self._batches(len(obs), cfg.batch_size):
                obs_b = obs[perm[batch]]
                z = self._encode(obs_b)
                loss = neg_log_joint(obs_b, self._decode(z), z, cfg.sigma).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            check_finite(loss.detach(), f"linear-ae loss at epoch {epoch + 1}")
        return self

    def _networks(self, device: torch.device) -> tuple[nn.Linear, nn.Linear]:
        c, h, w = self.image_shape_
        d = self.config.latent_dim
        return nn.Linear((c + 1) * h * w, d, device=device), nn.Linear(d, self.n_pixels, device=device)

    def _encode(self, obs: Observations) -> Tensor:
        y0 = obs.naive_inverse()  # (B, C, H, W): zero-fill for masks, A^T y for projections
        mask = obs.mask if obs.mask is not None else y0.new_ones(len(y0), 1, *y0.shape[2:])
        return self.encoder_(torch.cat([y0, mask], 1).flatten(1))  # (B, d)

    def _decode(self, z: Tensor) -> Tensor:
        return torch.tanh(self.decoder_(z)).view(-1, *self.image_shape_)  # (B, C, H, W)

    @torch.no_grad()
    def infer(self, obs: Observations) -> Tensor:
        self._check_obs(obs)
        z = self._encode(obs)
        check_finite(z, "linear-ae codes")
        return z

    @torch.no_grad()
    def decode(self, z: Tensor) -> Tensor:
        self._check_fitted()
        return self._decode(z.to(self.device_))

    def state_dict(self) -> dict[str, Any]:
        return {"encoder": self.encoder_.state_dict(), "decoder": self.decoder_.state_dict(),
                "image_shape": list(self.image_shape_)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.image_shape_ = tuple(int(s) for s in state["image_shape"])
        # build where torch.load(map_location=...) put the weights: a GPU checkpoint runs on the GPU
        self.encoder_, self.decoder_ = self._networks(state_device(state["decoder"]))
        self.encoder_.load_state_dict(state["encoder"])
        self.decoder_.load_state_dict(state["decoder"])
        self.device_ = self.decoder_.weight.device
