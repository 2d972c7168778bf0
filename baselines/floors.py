"""Trivial floors: what a recovery scores with no model at all. A row that does not beat them measures nothing.

- ``zero``: the blank image (every pixel black, 0 on the [0, 1] scale, -1 in the images' [-1, 1]), whatever
  was observed. On mnist5k it scores test ``mae`` 0.133, better than the mean image: digits are mostly
  background.
- ``mean-image``: the training mean image, whatever was observed. It learns the mean from the training
  observations of its protocol: the clean images under ``clean-train``; under ``learn-from-corrupted`` the
  per-pixel mean of the *observed* entries for masks (0 where a pixel is never observed) and the mean of
  the naive inverses (``A^T y``) for other operators.
- ``naive-inverse``: the operator's own guess from the observation alone (``Observations.naive_inverse``:
  zero-filled occlusions, i.e. mid-grey, observed pixels kept; ``A^T y`` for projections), clamped to
  [-1, 1]. Masks and projections only: for a complete observation (``identity``) it is the image itself.

They run once per seed like the classical references (no latent dim), learn nothing beyond a mean, cannot
sample and define no density (their likelihood and samples rows are ``unsupported``). Their
``capabilities.floor`` makes the report mark every other row that does not beat the best floor of its
column (``summary.md``: a dagger and a footnote; ``tables/aggregated.csv``: ``beats_floor``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import Tensor

from genbench.model import ReferenceMethod
from genbench.operators import BlockMask, Observations, PixelMask, RandomProjection
from genbench.registry import register_model

_FLOOR = replace(ReferenceMethod.capabilities, floor=True)


@register_model("zero", description="floor: the blank (all-black) image, whatever is observed")
class ZeroImage(ReferenceMethod):
    """The blank image: -1 everywhere."""

    capabilities = _FLOOR

    def recover(self, obs: Observations) -> Tensor:
        return torch.full((len(obs), *obs.image_shape), -1.0, device=obs.device)


@register_model("mean-image", description="floor: the training mean image, whatever is observed")
class MeanImage(ReferenceMethod):
    """The mean of the training observations (see the module docstring for corrupted ones)."""

    capabilities = replace(_FLOOR, learns=True)  # a clean-train fit sees the clean images

    def fit(self, obs: Observations) -> MeanImage:
        self._check_obs(obs, fitting=True)
        if isinstance(obs.op, (PixelMask, BlockMask)):
            mask = obs.mask.expand_as(obs.y).double()
            count = mask.sum(0)
            mean = (obs.y.double() * mask).sum(0) / count.clamp_min(1)
        else:
            mean = obs.naive_inverse().double().mean(0)
        self.mean_ = mean.float().clamp(-1.0, 1.0)
        self._set_fitted(obs)
        return self

    def recover(self, obs: Observations) -> Tensor:
        return self.mean_.to(obs.device).expand(len(obs), *self.mean_.shape).clone()

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "mean": self.mean_.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.mean_ = state["mean"].to(self.device_)


@register_model("naive-inverse", description="floor: the operator's naive inverse (zero-fill, A^T y), clamped")
class NaiveInverse(ReferenceMethod):
    """``Observations.naive_inverse()``: what the observation alone says."""

    capabilities = replace(_FLOOR, operators=(PixelMask, BlockMask, RandomProjection))

    def recover(self, obs: Observations) -> Tensor:
        return obs.naive_inverse()
