"""Deblurring: recover images seen through a Gaussian blur plus white noise. A new operator and its task
in one file (the pattern for extending genbench with an observation process).

Operator :class:`GaussianBlur`: y = k_s * x + e, a per-channel convolution with a normalised Gaussian
kernel of standard deviation ``s`` pixels (truncated at 3 s, zero padding, same size), and noise
e ~ N(0, noise_std^2) drawn from the operator's own seeded generator (:meth:`Operator.noise`), so every
model sees the same noisy observations. It is linear: the adjoint of a zero-padded "same" convolution with
a symmetric kernel is the same convolution, so A^T = A (checked by the adjoint property test over every
registered operator); the naive inverse is A^T y, a doubly blurred image. The likelihood every model uses,
||y - A(x_hat)||^2 / (2 sigma^2), needs nothing more: ABP, the VAE and the GAN learn from blurred data with
no change.

Task ``deblurring``: variants ``blur-<s>`` for ``sigmas`` (default 1 and 2 pixels on 28x28; scaled with the
image side), both protocols, scored over the whole image with the recovery metrics. It is not in the
presets (opt in with ``--tasks deblurring``); the report draws its sweep over the blur level from the
``level`` column, like any task's.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from genbench.operators import ImageShape, Operator
from genbench.registry import register_operator, register_task
from genbench.task import CLEAN_TRAIN, LEARN_FROM_CORRUPTED, RecoveryTask, Variant, number_list


@register_operator("gaussian-blur", example=lambda image_shape, seed: GaussianBlur(1.0, 0.05, seed=seed))
class GaussianBlur(Operator):
    """y = Gaussian blur of std ``blur`` pixels (per channel, zero padding) + N(0, ``noise_std``^2) noise."""

    name = "gaussian-blur"

    def __init__(self, blur: float = 1.0, noise_std: float = 0.05, seed: int = 0) -> None:
        if not blur > 0:
            raise ValueError(f"GaussianBlur: the blur std must be > 0 pixels, got {blur}")
        if not noise_std >= 0:
            raise ValueError(f"GaussianBlur: noise_std must be >= 0, got {noise_std}")
        super().__init__(seed)
        self.blur, self.noise_std = float(blur), float(noise_std)
        radius = max(1, math.ceil(3 * self.blur))
        t = torch.arange(-radius, radius + 1, dtype=torch.float32, device="cpu")
        k1 = torch.exp(-0.5 * (t / self.blur) ** 2)
        k1 = k1 / k1.sum()
        self.register_buffer("kernel", torch.outer(k1, k1)[None, None])  # (1, 1, 2r+1, 2r+1)

    def check_image_shape(self, image_shape: ImageShape) -> None:
        if min(image_shape[1:]) < 2:
            raise ValueError(f"GaussianBlur needs images of at least 2x2 pixels, got {image_shape[1:]}")

    def apply(self, x_hat: Tensor, mask: Tensor | None = None) -> Tensor:
        c = x_hat.shape[1]
        pad = self.kernel.shape[-1] // 2
        weight = self.kernel.to(x_hat.dtype).expand(c, 1, -1, -1)
        return F.conv2d(x_hat, weight, padding=pad, groups=c)  # (B, C, H, W)

    def adjoint(self, y: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.apply(y)  # symmetric kernel, zero padding: A is self-adjoint

    def noise(self, y: Tensor) -> Tensor:
        if self.noise_std == 0:
            return y
        eps = torch.randn(y.shape, generator=self._generator, device=self._host)
        return y + self.noise_std * eps.to(y.device, y.dtype)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "blur": self.blur, "noise_std": self.noise_std, "seed": self.seed}


@register_task("deblurring")
class Deblurring(RecoveryTask):
    """Gaussian blur + noise; scored over the whole image."""

    name = "deblurring"
    default_params = {"sigmas": None, "noise_std": 0.05}

    def variants(self, image_shape: ImageShape) -> list[Variant]:
        side = min(image_shape[1:])
        sigmas = self.params["sigmas"]
        if sigmas is None:
            sigmas = [round(s * side / 28, 2) for s in (1.0, 2.0)]
        sigmas = number_list(sigmas, "task.deblurring.sigmas", float)
        if not sigmas:
            raise ValueError("task.deblurring.sigmas is empty: give at least one blur std (pixels)")
        for s in sigmas:
            if not 0 < s <= side:
                raise ValueError(f"task.deblurring.sigmas: a blur std must be in (0, {side}] pixels, got {s}")
        noise = self.params["noise_std"]
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or noise < 0:
            raise ValueError(f"task.deblurring.noise_std must be a number >= 0, got {noise!r}")
        both = (CLEAN_TRAIN, LEARN_FROM_CORRUPTED)
        return [Variant(f"blur-{s:g}", _blur(s, float(noise)), protocols=both, level=s, level_name="blur std",
                        level_unit="px") for s in sigmas]


def _blur(blur: float, noise_std: float):
    return lambda shape, seed: GaussianBlur(blur, noise_std, seed=seed)
