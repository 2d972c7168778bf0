"""Observation operators: how an image x is seen, and the one likelihood every model uses.

Every task in genbench is "an image x was observed through an operator A; recover x":

========================  =================================================================
operator                  observation y = A(x)
========================  =================================================================
:class:`Identity`         y = x (held-out reconstruction)
:class:`PixelMask`        salt-and-pepper: the image is cut into c x c cells, each occluded
                          with probability p; y = m * x (occluded entries are 0)
:class:`BlockMask`        one s x s square per image at a uniform random position is occluded
:class:`RandomProjection` y = A vec(x), A of shape (K, D) with white-noise rows
                          A_kj ~ N(0, 1/K) (CSGM's scaling: E||A v||^2 = ||v||^2)
========================  =================================================================

An operator ``observe``\\ s a batch once, which yields an :class:`Observations` object: the
observed data ``y = noise(A(x))`` together with the per-image mask (for masks) and the operator
itself. The built-in operators are noiseless (:meth:`Operator.noise` returns its input); a
subclass that adds measurement noise overrides that one hook, drawing from the operator's own
generator, while ``apply`` stays the noiseless A that the likelihood compares with y.
Models learn from and recover from ``Observations``; they never branch on the operator type:
they call :func:`gaussian_nll` (the likelihood term ``||y - A(x_hat)||^2 / (2 sigma^2)`` over the
observed entries), ``obs.apply(x_hat)`` or ``obs.naive_inverse()``.

Every operator here is linear and has its adjoint, ``adjoint(y, mask)`` = A^T y (checked by the
property test <A x, y> = <x, A^T y> in tests/test_operators.py, as deepinv's ``LinearPhysics``
does); the naive inverse of a linear operator is A^T y (zero-fill for a mask). Each registers
itself with :func:`~genbench.registry.register_operator` under its ``name``, with a small example
instance that the contract tests observe tiny digits through (every registered model is checked
through every registered operator).

Randomness: each operator owns a CPU ``torch.Generator`` seeded from ``seed``; masks, matrices
and noise are drawn on the CPU and then moved, so the same seed gives the same masks on any
device. Successive ``observe`` calls draw fresh masks (train, then test); :meth:`Operator.reset`
rewinds to the seed.

Example::

    >>> op = PixelMask(p=0.5, seed=0)
    >>> obs = op.observe(torch.zeros(4, 1, 8, 8))
    >>> obs.y.shape, obs.mask.shape
    (torch.Size([4, 1, 8, 8]), torch.Size([4, 1, 8, 8]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor, nn

from genbench.registry import register_operator

ImageShape = tuple[int, int, int]


def check_images(x: Tensor, name: str = "x") -> None:
    """Raise a ValueError unless ``x`` is a float batch of images (N, C, H, W)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must have shape (N, C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a float tensor in [-1, 1], got dtype {x.dtype}")


class Operator(nn.Module):
    """Base class: an observation process y = A(x) with its own random state.

    Subclasses implement :meth:`apply` and, if linear, :meth:`adjoint` (the naive inverse is then
    A^T y); :meth:`draw_mask` if they occlude; :meth:`noise` if the measurement is noisy (observe
    = apply + noise); :meth:`naive_inverse` if A^T y is not a good image-shaped guess. ``name`` is
    the short identifier used in result tables and the operator registry.

    Example (a noisy projection; deepinv's ``physics/forward.py`` splits its physics the same way)::

        class NoisyProjection(RandomProjection):
            name = "noisy-projection"

            def noise(self, y):
                eps = torch.randn(y.shape, generator=self._generator, device=self._host)
                return y + 0.1 * eps.to(y.device)
    """

    name: str = "operator"

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.seed = int(seed)
        self._generator = torch.Generator().manual_seed(self.seed)

    @property
    def _host(self) -> torch.device:
        """Where masks and matrices are drawn: the CPU of the generator, whatever the data's device."""
        return self._generator.device

    # -- randomness -------------------------------------------------------------------------
    def reset(self, stream: int = 0) -> None:
        """Rewind the random state: ``stream`` 0 is the seed itself, other streams give
        independent, reproducible mask sequences (the runner uses one stream per data split).
        Fixed parts such as a projection matrix are not redrawn."""
        self._generator.manual_seed(self.seed + 1_000_003 * int(stream))

    def draw_mask(self, n: int, image_shape: ImageShape) -> Tensor | None:
        """Per-image mask of observed entries, (n, 1, H, W) float in {0, 1}; None = all observed."""
        return None

    # -- observing -------------------------------------------------------------------------
    def observe(self, x: Tensor) -> Observations:
        """Observe a batch of clean images once: draw masks, compute y. Not differentiable."""
        check_images(x)
        self.check_image_shape(tuple(x.shape[1:]))
        mask = self.draw_mask(x.shape[0], tuple(x.shape[1:]))
        if mask is not None:
            mask = mask.to(x.device)
        self.to(x.device)
        with torch.no_grad():
            y = self.noise(self.apply(x, mask))
        return Observations(y=y, op=self, mask=mask, image_shape=tuple(x.shape[1:]))

    def check_image_shape(self, image_shape: ImageShape) -> None:
        """Raise a ValueError when this operator cannot observe images of this shape."""

    def apply(self, x_hat: Tensor, mask: Tensor | None = None) -> Tensor:
        """A(x_hat), noiseless and differentiable in x_hat. ``mask`` is the (B, 1, H, W) mask of the batch."""
        raise NotImplementedError

    def noise(self, y: Tensor) -> Tensor:
        """The measurement noise model, applied once by :meth:`observe`: y = noise(A(x)).
        Noiseless by default (returns ``y`` itself); an override draws from ``self._generator``
        (on ``self._host``, then moved to y's device), so that :meth:`reset` replays it."""
        return y

    def adjoint(self, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """A^T y, image-shaped (B, C, H, W), for a linear operator: <A x, y> = <x, A^T y>."""
        raise NotImplementedError(f"{type(self).__name__} defines no adjoint (is it linear?)")

    def naive_inverse(self, y: Tensor, mask: Tensor | None, image_shape: ImageShape) -> Tensor:
        """An image-shaped guess from y alone: A^T y by default (zero-fill for masks)."""
        return self.adjoint(y, mask)

    @property
    def shared_null_space(self) -> bool:
        """True when every image is observed through one and the same linear map with a nontrivial null
        space (a shared projection with K < D): what lies in that null space is never observed for any
        image, so a model that cannot learn it from elsewhere learns nothing of it
        (:meth:`genbench.task.Task.degenerate`). False for per-image masks and the identity."""
        return False

    def describe(self) -> dict[str, Any]:
        """Parameters that identify this operator, for configs and result tables."""
        return {"name": self.name, "seed": self.seed}

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.describe().items() if k != "name")


@register_operator("identity", example=lambda image_shape, seed: Identity(seed=seed))
class Identity(Operator):
    """y = x: every entry is observed (A = A^T = I)."""

    name = "identity"

    def apply(self, x_hat: Tensor, mask: Tensor | None = None) -> Tensor:
        return x_hat

    def adjoint(self, y: Tensor, mask: Tensor | None = None) -> Tensor:
        return y


class _Mask(Operator):
    """Shared behaviour of occlusion masks: y = m * x; self-adjoint (A^T y = m * y), so the
    naive inverse A^T y is the zero-fill, which y already is."""

    def apply(self, x_hat: Tensor, mask: Tensor | None = None) -> Tensor:
        return x_hat * self._need(mask, "apply")

    def adjoint(self, y: Tensor, mask: Tensor | None = None) -> Tensor:
        return y * self._need(mask, "adjoint")

    def naive_inverse(self, y: Tensor, mask: Tensor | None, image_shape: ImageShape) -> Tensor:
        return y  # = adjoint(y, mask): the occluded entries of an observation are already 0

    def _need(self, mask: Tensor | None, call: str) -> Tensor:
        if mask is None:
            raise ValueError(f"{type(self).__name__}.{call} needs the batch's mask (from Observations)")
        return mask


@register_operator("pixel-mask", example=lambda image_shape, seed: PixelMask(p=0.5, seed=seed))
class PixelMask(_Mask):
    """Salt-and-pepper occlusion: the image is cut into ``cell`` x ``cell`` cells (the last row
    and column of cells may be cropped) and each cell is occluded independently with
    probability ``p``, the same cells for every channel. The ABP paper uses 3x3 cells on 64x64
    faces; ``cell=1`` suits 28x28 digits.
    """

    name = "pixel-mask"

    def __init__(self, p: float = 0.5, cell: int = 1, seed: int = 0) -> None:
        if not 0.0 < p < 1.0:
            raise ValueError(f"PixelMask: occlusion fraction p must be in (0, 1), got {p}")
        if cell < 1:
            raise ValueError(f"PixelMask: cell size must be >= 1 pixel, got {cell}")
        super().__init__(seed)
        self.p = float(p)
        self.cell = int(cell)

    def check_image_shape(self, image_shape: ImageShape) -> None:
        if self.cell > min(image_shape[1:]):
            raise ValueError(f"PixelMask: cell size {self.cell} is larger than the image {image_shape[1:]}")

    def draw_mask(self, n: int, image_shape: ImageShape) -> Tensor:
        _, h, w = image_shape
        ch, cw = math.ceil(h / self.cell), math.ceil(w / self.cell)
        keep = torch.rand(n, 1, ch, cw, generator=self._generator, device=self._host) >= self.p
        keep = keep.repeat_interleave(self.cell, 2).repeat_interleave(self.cell, 3)
        return keep[:, :, :h, :w].float()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "p": self.p, "cell": self.cell, "seed": self.seed}


@register_operator("block-mask",
                   example=lambda image_shape, seed: BlockMask(size=max(1, min(image_shape[1:]) // 2), seed=seed))
class BlockMask(_Mask):
    """One ``size`` x ``size`` occluded square per image, top-left corner uniform over the
    positions that keep it inside the image (the ABP paper's M20/M30 on 64x64 faces)."""

    name = "block-mask"

    def __init__(self, size: int = 10, seed: int = 0) -> None:
        if size < 1:
            raise ValueError(f"BlockMask: block size must be >= 1 pixel, got {size}")
        super().__init__(seed)
        self.size = int(size)

    def check_image_shape(self, image_shape: ImageShape) -> None:
        if self.size > min(image_shape[1:]):
            raise ValueError(
                f"BlockMask: a {self.size}x{self.size} block does not fit in images of size "
                f"{image_shape[1]}x{image_shape[2]}"
            )

    def draw_mask(self, n: int, image_shape: ImageShape) -> Tensor:
        _, h, w = image_shape
        top = torch.randint(0, h - self.size + 1, (n,), generator=self._generator, device=self._host)
        left = torch.randint(0, w - self.size + 1, (n,), generator=self._generator, device=self._host)
        rows = torch.arange(h, device=self._host).view(1, h, 1)
        cols = torch.arange(w, device=self._host).view(1, 1, w)
        inside = ((rows >= top.view(n, 1, 1)) & (rows < (top + self.size).view(n, 1, 1))
                  & (cols >= left.view(n, 1, 1)) & (cols < (left + self.size).view(n, 1, 1)))
        return (~inside).unsqueeze(1).float()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "seed": self.seed}


@register_operator("projection", example=lambda image_shape, seed: RandomProjection(
    k=max(1, math.prod(image_shape) // 2), image_shape=image_shape, seed=seed))
class RandomProjection(Operator):
    """y = A vec(x) with K white-noise images as the rows of A, A_kj ~ N(0, 1/K).

    One matrix per operator (hence per run), drawn from the seed, shared by all images. With
    this scaling E||A v||^2 = ||v||^2, so the likelihood has the same scale as for pixels.
    """

    name = "projection"

    def __init__(self, k: int, image_shape: ImageShape, seed: int = 0) -> None:
        image_shape = tuple(int(s) for s in image_shape)
        d = math.prod(image_shape)
        if not 0 < k <= d:
            raise ValueError(
                f"RandomProjection: the number of projections K must be in 1..{d} "
                f"(the pixels of a {image_shape} image), got {k}"
            )
        super().__init__(seed)
        self.k = int(k)
        self.image_shape = image_shape
        matrix = torch.randn(k, d, generator=self._generator, device=self._host) / math.sqrt(k)
        self.register_buffer("matrix", matrix)  # (K, D)

    def check_image_shape(self, image_shape: ImageShape) -> None:
        if tuple(image_shape) != self.image_shape:
            raise ValueError(
                f"RandomProjection was built for images {self.image_shape}, got {tuple(image_shape)}"
            )

    def apply(self, x_hat: Tensor, mask: Tensor | None = None) -> Tensor:
        return x_hat.flatten(1) @ self.matrix.T  # (B, K)

    @property
    def shared_null_space(self) -> bool:
        return self.k < math.prod(self.image_shape)

    def adjoint(self, y: Tensor, mask: Tensor | None = None) -> Tensor:
        """A^T y for y (B, K), reshaped to images (B, C, H, W); also the naive inverse."""
        return (y @ self.matrix).view(y.shape[0], *self.image_shape)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "seed": self.seed}


@dataclass(frozen=True)
class Observations:
    """Observed data of N images with the operator that made it.

    ``y``: (N, C, H, W) for masks/identity, (N, K) for projections. ``mask``: (N, 1, H, W) float,
    1 = observed, or None when every entry is observed. Indexing returns the observations of a
    subset of images (masks follow), so a mini-batch carries its own masks.
    """

    y: Tensor
    op: Operator
    mask: Tensor | None
    image_shape: ImageShape

    def __len__(self) -> int:
        return self.y.shape[0]

    def __getitem__(self, idx: Any) -> Observations:
        mask = None if self.mask is None else self.mask[idx]
        return replace(self, y=self.y[idx], mask=mask)

    @property
    def device(self) -> torch.device:
        return self.y.device

    def to(self, device: torch.device | str) -> Observations:
        """The same observations on ``device`` (the operator's buffers move too)."""
        self.op.to(device)
        mask = None if self.mask is None else self.mask.to(device)
        return replace(self, y=self.y.to(device), mask=mask)

    def apply(self, x_hat: Tensor) -> Tensor:
        """A(x_hat) with this batch's masks; differentiable."""
        return self.op.apply(x_hat, self.mask)

    def naive_inverse(self) -> Tensor:
        """Image-shaped guess (N, C, H, W): zero-fill for masks, A^T y for projections."""
        return self.op.naive_inverse(self.y, self.mask, self.image_shape)

    def occluded(self) -> Tensor | None:
        """(N, 1, H, W) float, 1 = occluded (the entries inpainting is scored on); None if none."""
        return None if self.mask is None else 1.0 - self.mask

    def observed_per_image(self) -> Tensor:
        """Observed scalars of each image, (N,) in y's dtype: mask sum x channels for masks, the length
        K of y for projections, C * H * W for the identity (the n of a normalised likelihood)."""
        if self.mask is not None:
            return self.mask.expand_as(self.y).flatten(1).sum(1).to(self.y.dtype)
        return torch.full((len(self),), float(math.prod(self.y.shape[1:])), dtype=self.y.dtype, device=self.device)

    @property
    def n_observed(self) -> int:
        """Number of observed scalars per image on average (for reporting)."""
        if self.mask is not None:
            return int(round(self.mask.sum().item() * self.image_shape[0] / max(len(self), 1)))
        return math.prod(self.y.shape[1:])


def gaussian_nll(obs: Observations, x_hat: Tensor, sigma: float) -> Tensor:
    """Per-image negative Gaussian log-likelihood up to a constant, shape (B,):

        ||y - A(x_hat)||^2 / (2 sigma^2)   summed over the observed entries.

    The single likelihood term of genbench: ABP's Langevin inference and learning step, the
    VAE's decoder loss, GAN inversion and the PCA/RBM recoveries all call this function.
    Occluded entries contribute nothing because both y and A(x_hat) are zero there.
    """
    residual = obs.y - obs.apply(x_hat)
    return residual.pow(2).flatten(1).sum(1) / (2.0 * sigma * sigma)
