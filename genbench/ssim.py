"""SSIM over the scored region: a registered metric in one file (the pattern for adding one).

Structural similarity (Wang, Bovik, Sheikh, Simoncelli, "Image quality assessment: from error visibility
to structural similarity", IEEE TIP 2004) compares local means, variances and covariance of the clean and
recovered image in a sliding Gaussian window. We use scikit-image's implementation
(``skimage.metrics.structural_similarity`` with ``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False``: the paper's settings), on the [0, 1] pixel scale (``data_range=1``),
and average its SSIM *map* over the task's scored region (the occluded pixels for inpainting, every pixel
otherwise: the border that skimage's own mean crops is included, since occluded pixels lie there too),
then over images. The window is 7 pixels, or the largest odd size that fits a smaller image.

1.0 is a perfect recovery; higher is better. A recovery outside [-1, 1] is scored as returned (SSIM is
defined for any values; ``data_range`` stays the clean range).

It is one :class:`~genbench.metrics.Metric` and one :func:`~genbench.registry.register_metric` call;
``tasks`` names the tasks that add it to their rows (every recovery task here), so no task changes.
"""

from __future__ import annotations

import math

import numpy as np
from skimage.metrics import structural_similarity

from genbench.metrics import Metric, Recovery
from genbench.registry import register_metric

SSIM = "ssim"


def ssim_map(x01: np.ndarray, x_hat01: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM of one image pair (C, H, W) in [0, 1] -> (H, W), the mean over channels."""
    side = min(x01.shape[1:])
    win = min(7, side if side % 2 else side - 1)
    if win < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got {x01.shape[1]}x{x01.shape[2]}")
    _, full = structural_similarity(x01, x_hat01, data_range=1.0, channel_axis=0, full=True, win_size=win,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    return full.mean(axis=0)


def ssim(recovery: Recovery, region: str) -> float:
    """Mean over images of the SSIM map averaged over each image's selected pixels (images with no
    selected pixel are left out; NaN if none has one)."""
    x = ((recovery.x.detach().double().cpu() + 1) / 2).numpy()
    x_hat = ((recovery.x_hat.detach().double().cpu() + 1) / 2).numpy()
    mask = recovery.region(region)
    sel = None
    if mask is not None:
        sel = (mask.detach().cpu() != 0).expand(recovery.x.shape).any(dim=1).numpy()  # (N, H, W)
    values = []
    for i in range(len(x)):
        full = ssim_map(x[i], x_hat[i])
        if sel is None:
            values.append(float(full.mean()))
        elif sel[i].any():
            values.append(float(full[sel[i]].mean()))
    return math.fsum(values) / len(values) if values else math.nan


register_metric(Metric(SSIM, "structural similarity (Wang et al. 2004) averaged over the scored pixels",
                       higher_is_better=True, unit="1 = perfect", compute=ssim,
                       tasks=("reconstruction", "inpainting", "projection")))
