"""Classical reference rows that learn nothing: what a recovery costs without a learned model.

- ``biharmonic``: scikit-image's :func:`skimage.restoration.inpaint_biharmonic` fills the
  occluded pixels of each image by the smooth biharmonic interpolation of its observed pixels
  (masks only: :class:`PixelMask`, :class:`BlockMask`). Observed pixels are kept as observed.
- ``lasso-dct``: compressed sensing by sparsity, the baseline of CSGM (Bora et al., ICML 2017):
  each image's 2-D DCT coefficients w (orthonormal, per channel) are the solution of
  scikit-learn's ``Lasso``, ``min_w ||y01 - A D^T w||^2 / (2K) + alpha ||w||_1``, on the [0, 1]
  pixel scale (``y01 = (y + A 1) / 2`` is what A sees of x01 = (x + 1) / 2), then x = D^T w
  (projections only: :class:`RandomProjection`). All images of a batch are one multi-target fit.

Both are CPU-only by nature (numpy, scikit-image, scikit-learn): ``recover`` copies y, the mask and
the projection matrix to the host explicitly (``.detach().cpu()``) and returns a CPU tensor, which
:meth:`~genbench.model.ReferenceMethod.reconstruct` moves back to the observations' device. On a GPU
run they are the only rows that pay a device-to-host copy (tests/test_device.py checks the rest).
``fit`` learns nothing, so the two protocols give the same test recovery: the ``train`` rows of
``learn-from-corrupted`` score the same method on the training observations.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
from scipy.fft import dctn, idctn
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import Lasso
from skimage.restoration import inpaint_biharmonic
from torch import Tensor

from genbench.model import ReferenceConfig, ReferenceMethod, require
from genbench.operators import BlockMask, Observations, PixelMask, RandomProjection
from genbench.space import FloatRange
from genbench.registry import register_model


@register_model("biharmonic", description="reference: scikit-image biharmonic inpainting (masks; learns nothing)")
class Biharmonic(ReferenceMethod):
    """Biharmonic inpainting of each image from its observed pixels."""

    capabilities = replace(ReferenceMethod.capabilities, operators=(PixelMask, BlockMask))
    tiny_limits = {"pixel-mask": "it learns nothing, and 8x8 digits are too coarse for smooth interpolation "
                                 "to beat the mean image by 5% (on 28x28 MNIST it does, see the reference run)",
                   "block-mask": "it learns nothing; a 4x4 block of an 8x8 digit has no smooth fill"}

    def recover(self, obs: Observations) -> Tensor:
        y = obs.y.detach().cpu().numpy().astype(np.float64)
        missing = (obs.mask.detach().cpu().numpy()[:, 0] < 0.5)
        out = np.empty_like(y)
        for i in range(len(y)):
            if not missing[i].any():
                out[i] = y[i]
                continue
            if missing[i].all():  # nothing observed: the mid-grey image
                out[i] = 0.0
                continue
            image = np.moveaxis(y[i], 0, -1)  # (H, W, C)
            filled = inpaint_biharmonic(image, missing[i], channel_axis=-1)
            out[i] = np.moveaxis(filled, -1, 0)
        return torch.from_numpy(out).float()


@dataclass(frozen=True)
class LassoDCTConfig(ReferenceConfig):
    alpha: float = 1e-3          # L1 weight of sklearn's Lasso (tune it: `tune --objective projection:k-100`)
    basis: str = "dct"           # "dct" (CSGM's baseline) or "pixel" (sparse, non-negative pixels: digits)
    max_iter: int = 2000         # coordinate-descent sweeps
    tol: float = 1e-4

    # what the tuner searches (genbench.tuning; the default lies inside the range)
    search_space = {"alpha": FloatRange(1e-5, 1e-1, log=True)}

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self, positive=("alpha", "tol"), at_least_one=("max_iter",))
        if self.basis not in ("dct", "pixel"):
            raise ValueError(f"LassoDCTConfig.basis must be 'dct' or 'pixel', got {self.basis!r}")


@register_model("lasso-dct", description="reference: Lasso over a 2-D DCT basis (projections; learns nothing)")
class LassoDCT(ReferenceMethod):
    """Sparse recovery in the DCT basis from random projections (CSGM's baseline)."""

    Config = LassoDCTConfig
    config: LassoDCTConfig
    capabilities = replace(ReferenceMethod.capabilities, operators=(RandomProjection,))
    dry_run_overrides = {"max_iter": 50}

    def recover(self, obs: Observations) -> Tensor:
        op: RandomProjection = obs.op  # type: ignore[assignment]
        shape = tuple(obs.image_shape)
        a = op.matrix.detach().cpu().numpy().astype(np.float64)                 # (K, D)
        dct = self.config.basis == "dct"
        # design: A D^T, whose row k is the DCT of projection image k (D orthonormal)
        design = dctn(a.reshape(len(a), *shape), axes=(-2, -1), norm="ortho").reshape(len(a), -1) if dct else a
        y = obs.y.detach().cpu().numpy().astype(np.float64)                      # (N, K)
        y01 = (y + a.sum(1)) / 2
        lasso = Lasso(alpha=self.config.alpha, fit_intercept=False, max_iter=self.config.max_iter,
                      tol=self.config.tol, positive=not dct)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter bounds the cost by design
            lasso.fit(design, y01.T)
        w = np.atleast_2d(lasso.coef_)                                           # (N, D)
        w = w.reshape(len(w), *shape)
        x01 = idctn(w, axes=(-2, -1), norm="ortho") if dct else w
        return torch.from_numpy(2 * x01 - 1).float()

