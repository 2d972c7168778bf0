"""What a model says about its own density, for the likelihood task (``tasks/likelihood.py``).

:meth:`genbench.model.LatentModel.density` returns a :class:`Density`, or None when the model defines no
density on images in [-1, 1] (``density_note`` says why: no model at all). One of three kinds:

- a **decoder** with the shared Gaussian observation model, y = A g(z) + N(0, sigma^2 I), z ~ N(0, I):
  ``decode`` (differentiable in z; the weights are not trained by it), ``latent_dim`` and ``sigma``; the
  task estimates log p(y) by annealed importance sampling (:mod:`genbench.ais`);
- an **exact** log-density ``exact(obs) -> (N,)`` (PCA's probabilistic reading);
- a **binary** log-likelihood ``binary(x, generator, n_steps=, n_runs=, n_samples=) -> (N,)`` of images
  x (N, C, H, W) in [-1, 1] binarised by the model (pixel > 0.5): the RBM and DBN model binary pixels, not
  a density on [-1, 1]; the task reports it under a metric of its own name, ``binary_nll``. The settings are
  the AIS of the partition function (steps, runs) and the samples of a bound.

``iwae(obs, k, generator) -> (N,)``: an importance-weighted lower bound where the model has an encoder (the
VAE); ``note`` goes into the rows' message where a choice was made for the model (the GAN's shared sigma,
PCA's own noise, a bound instead of the value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from genbench.operators import Observations


@dataclass(frozen=True)
class Density:
    """See the module docstring."""

    latent_dim: int | None = None
    decode: Callable[[Tensor], Tensor] | None = None
    sigma: float | None = None
    exact: Callable[[Observations], Tensor] | None = None
    iwae: Callable[[Observations, int, torch.Generator], Tensor] | None = None
    binary: Callable[..., Tensor] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        decoder = self.decode is not None and self.sigma is not None and self.latent_dim is not None
        if decoder + (self.exact is not None) + (self.binary is not None) != 1:
            raise ValueError("a Density is exactly one of: a decoder (decode, latent_dim, sigma), exact, binary")

    @property
    def continuous(self) -> bool:
        """True for a density on images in [-1, 1] (decoder or exact), False for a binary-pixel model."""
        return self.binary is None
