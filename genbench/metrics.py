"""Metrics: registered objects that say what they measure, which way is better and how to show it.

A :class:`Metric` has a name, a direction (``higher_is_better``), a display format, a unit for axis
labels, what it needs (``needs``: a recovery today; the model itself for evaluation tasks) and which
region of a recovery it scores (``region``: the task's scored region, e.g. the occluded pixels, or
the whole image). Scoring (the tasks), ``summary.md``, pivots and plots all read these objects from
:data:`genbench.registry.METRICS`; no metric list lives anywhere else. Adding one is one object and
one :func:`~genbench.registry.register_metric` call (see :mod:`genbench.ssim`).

The recovery metrics registered here: MAE, MSE and PSNR between clean images and a model's recoveries.

Images are float tensors ``(N, C, H, W)`` in ``[-1, 1]``; every metric is computed on the ``[0, 1]`` pixel
scale, ``x01 = (x + 1) / 2``, over the *selected* entries (all of them, or the nonzero entries of a mask --
for inpainting the tasks pass the occluded entries):

- ``mae  = sum_sel |x01 - x_hat01| / n_sel``, pooled over all selected entries of all images. This is the
  per-pixel difference relative to the pixel range reported in the ABP paper (Han, Lu, Zhu & Wu, "Alternating
  Back-Propagation for Generator Network", AAAI 2017); multiply by 255 for the 0..255 unit.
- ``mse  = sum_sel (x01 - x_hat01)^2 / n_sel``, pooled the same way.
- ``psnr = mean_i 10 * log10(1 / max(mse_i, 1e-10))`` where ``mse_i`` is image i's MSE over its own selected
  entries. The floor makes a perfect recovery score 100 dB instead of infinity. Images with no selected entry
  are left out of the mean; if no image has one, psnr is NaN (and so are mae and mse).

Nothing is clipped: an ``x_hat`` outside ``[-1, 1]`` is scored as returned, because the scorer measures what the
model produced. A ``NaN`` or infinite ``x_hat`` raises ``ValueError`` (the model's recovery diverged).

Example::

    >>> x = torch.zeros(2, 1, 4, 4)
    >>> score(x, x)
    {'mae': 0.0, 'mse': 0.0, 'psnr': 100.0}
    >>> acc = MetricAccumulator()
    >>> for xb, xb_hat, mb in batches:
    ...     acc.update(xb, xb_hat, mask=mb)
    >>> acc.compute()["mae"]
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from genbench.registry import register_metric

MAE = "mae"
MSE = "mse"
PSNR = "psnr"
MAE_ALL = "mae_all"  # inpainting: mae over every pixel, observed ones included (tasks/inpainting.py)
#: the pixel metrics every recovery task scores (one pass of MetricAccumulator computes all three)
PIXEL_METRICS = (MAE, MSE, PSNR)

#: MSE floor used for PSNR, so that a perfect recovery gives 10 * log10(1 / 1e-10) = 100 dB.
MSE_FLOOR = 1e-10

# Tolerance on the [-1, 1] range of the clean images (they may have been through float arithmetic).
_RANGE_TOL = 1e-4

__all__ = ["MAE", "MSE", "PSNR", "PIXEL_METRICS", "MSE_FLOOR", "Metric", "Recovery", "MetricAccumulator",
           "score"]


def _check_pair(x: Tensor, x_hat: Tensor, mask: Tensor | None) -> None:
    """Raise ``ValueError`` saying what was expected when the inputs cannot be scored."""
    for name, t in (("x", x), ("x_hat", x_hat)):
        if not isinstance(t, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor of shape (N, C, H, W), got {type(t).__name__}")
        if t.dim() != 4:
            raise ValueError(f"{name} must be 4-D (N, C, H, W), got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a float tensor with values in [-1, 1], got dtype {t.dtype}")
    if x.shape != x_hat.shape:
        raise ValueError(
            f"x and x_hat must have the same shape, got x {tuple(x.shape)} and x_hat {tuple(x_hat.shape)}"
        )
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise ValueError(f"mask must be a torch.Tensor or None, got {type(mask).__name__}")
        try:
            broadcast = torch.broadcast_shapes(mask.shape, x.shape)
        except RuntimeError:
            broadcast = None
        if broadcast != x.shape:
            raise ValueError(
                f"mask of shape {tuple(mask.shape)} is not broadcastable to the images' shape {tuple(x.shape)}; "
                "expected e.g. (N, 1, H, W) or (N, C, H, W), nonzero = entry is scored"
            )


def _check_values(x: Tensor, x_hat: Tensor) -> None:
    """Check the values (on the CPU copies): finite recovery, clean images in [-1, 1]."""
    if torch.isnan(x_hat).any():
        raise ValueError("x_hat contains NaN: the model's recovery diverged")
    if torch.isinf(x_hat).any():
        raise ValueError("x_hat contains inf: the model's recovery diverged")
    if not torch.isfinite(x).all():
        raise ValueError("x (the clean images) contains NaN or inf")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1 - _RANGE_TOL or hi > 1 + _RANGE_TOL:
        raise ValueError(
            f"x (the clean images) must lie in [-1, 1], got values in [{lo:.4g}, {hi:.4g}]; "
            "rescale the data (e.g. x / 127.5 - 1 for 0..255 pixels)"
        )


class MetricAccumulator:
    """Streams batches; the result does not depend on how the images were split into batches.

    Per-image sums are kept in float64 on the CPU and added with ``math.fsum`` (exactly rounded), so splitting
    the same images into different batches gives the same numbers.

    Attributes:
        n_images: number of images seen by ``update`` (including images with an empty mask).
    """

    def __init__(self) -> None:
        self.n_images: int = 0
        self._abs: list[np.ndarray] = []  # per-image sum |x01 - x_hat01| over selected entries, (N,)
        self._sq: list[np.ndarray] = []  # per-image sum (x01 - x_hat01)^2, (N,)
        self._count: list[np.ndarray] = []  # per-image number of selected entries, (N,)

    def update(self, x: Tensor, x_hat: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch: ``x`` clean and ``x_hat`` recovered, both ``(N, C, H, W)`` in [-1, 1]; ``mask``
        broadcastable to that shape (nonzero = scored) or ``None`` for all entries."""
        _check_pair(x, x_hat, mask)
        x = x.detach().double().cpu()
        x_hat = x_hat.detach().double().cpu()
        _check_values(x, x_hat)
        diff = (x - x_hat) / 2  # x01 - x_hat01, (N, C, H, W)
        if mask is None:
            sel = torch.ones_like(diff, dtype=torch.bool)
        else:
            sel = (mask.detach().cpu() != 0).expand(x.shape)
        zero = torch.zeros((), dtype=diff.dtype, device=diff.device)
        self._abs.append(torch.where(sel, diff.abs(), zero).sum(dim=(1, 2, 3)).numpy())
        self._sq.append(torch.where(sel, diff.square(), zero).sum(dim=(1, 2, 3)).numpy())
        self._count.append(sel.sum(dim=(1, 2, 3)).numpy().astype(np.int64))
        self.n_images += x.shape[0]

    def per_image(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(abs_i, sq_i, count_i)``: per image, the sum of absolute and of squared differences over its
        selected entries and their number (mae = sum abs_i / sum count_i; what a bootstrap resamples)."""
        return tuple(np.concatenate(v) for v in (self._abs, self._sq, self._count))

    def compute(self) -> dict[str, float]:
        """Return ``{MAE: ..., MSE: ..., PSNR: ...}`` over everything seen so far (NaN where no entry was
        selected). Raises ``ValueError`` if ``update`` was never called with an image."""
        if self.n_images == 0:
            raise ValueError("no images to score: call update(x, x_hat, mask) with at least one image first")
        abs_i, sq_i, count_i = (np.concatenate(v) for v in (self._abs, self._sq, self._count))
        n_sel = int(count_i.sum())
        if n_sel == 0:
            return {MAE: math.nan, MSE: math.nan, PSNR: math.nan}
        scored = count_i > 0
        mse_i = np.maximum(sq_i[scored] / count_i[scored], MSE_FLOOR)
        psnr_i = -10.0 * np.log10(mse_i)
        return {
            MAE: math.fsum(abs_i) / n_sel,
            MSE: math.fsum(sq_i) / n_sel,
            PSNR: math.fsum(psnr_i) / len(psnr_i),
        }


def score(x: Tensor, x_hat: Tensor, mask: Tensor | None = None) -> dict[str, float]:
    """One-shot ``MetricAccumulator``: ``{MAE, MSE, PSNR}`` of ``x_hat`` against ``x`` over the selected
    entries (see the module docstring for the formulas)."""
    acc = MetricAccumulator()
    acc.update(x, x_hat, mask)
    return acc.compute()


# ------------------------------------------------------------------------------------ metric objects
@dataclass
class Recovery:
    """What a recovery metric sees: clean images ``x`` and recoveries ``x_hat`` (N, C, H, W) in [-1, 1],
    and the task's scored region (a mask broadcastable to ``x``, nonzero = scored; None = every pixel).

    :meth:`pixel_scores` caches one :func:`score` pass per region, so MAE, MSE and PSNR cost one pass."""

    x: Tensor
    x_hat: Tensor
    scored_region: Tensor | None = None
    _cache: dict = field(default_factory=dict, repr=False)

    def region(self, which: Literal["scored", "all"]) -> Tensor | None:
        return self.scored_region if which == "scored" else None

    def pixel_scores(self, which: Literal["scored", "all"]) -> dict[str, float]:
        return self._pass(which)[0]

    def per_image(self, which: Literal["scored", "all"]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`MetricAccumulator.per_image` of this recovery over the region (the same pass)."""
        return self._pass(which)[1]

    def _pass(self, which: Literal["scored", "all"]) -> tuple[dict[str, float], tuple]:
        if which not in self._cache:
            acc = MetricAccumulator()
            acc.update(self.x, self.x_hat, self.region(which))
            self._cache[which] = (acc.compute(), acc.per_image())
        return self._cache[which]


@dataclass(frozen=True)
class Metric:
    """A registered metric (see the module docstring).

    ``compute(recovery, region)`` returns the value for a recovery metric (``needs="recovery"``);
    ``region`` is ``"scored"`` (the task's region: the occluded pixels for inpainting) or ``"all"``.
    Metrics that need the model (``needs="model"``) are computed by their task, which names them.
    ``decimals`` fixes the digits after the point (PSNR in dB: 2); None shows 4 significant digits.
    ``plot``: the report draws it (bars and sweeps); ``summary``: ``summary.md`` has a table of it.
    ``tasks``: registered tasks that add this metric to the ones they name themselves (a new metric
    then reaches existing tasks with no change to them; see :meth:`genbench.task.Task.metric_names`).
    """

    name: str
    description: str
    higher_is_better: bool = False
    unit: str = ""
    decimals: int | None = None
    region: Literal["scored", "all"] = "scored"
    needs: Literal["recovery", "model"] = "recovery"
    plot: bool = False
    summary: bool = True
    compute: Callable[[Recovery, str], float] | None = None
    tasks: tuple[str, ...] = ()
    #: the report ranks ("best") this metric on the out-of-domain ``negative`` split too: True for a metric
    #: *of* out-of-domain detection (ood_auroc); an error or a likelihood there is not better when lower
    ranks_negative: bool = False
    #: for a recovery metric that is a ratio of per-image sums: ``(numerator_i, denominator_i)`` with value =
    #: sum numerator / sum denominator, what the per-cell bootstrap resamples (genbench.uncertainty); None: none
    per_image: Callable[[Recovery, str], tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def direction(self) -> str:
        """``"higher"`` or ``"lower"``: which way is better."""
        return "higher" if self.higher_is_better else "lower"

    @property
    def label(self) -> str:
        """Axis label: ``mae (occluded pixels, [0, 1])``."""
        return f"{self.name} ({self.unit})" if self.unit else self.name

    def format(self, value: float | None) -> str:
        """The value as the tables show it: ``nan`` for a missing value."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "nan"
        if self.decimals is not None:
            return f"{value:.{self.decimals}f}"
        return f"{value:#.4g}"  # '#' keeps trailing zeros: 0.4000, not 0.4

    def format_pair(self, mean: float, std: float) -> str:
        """``mean ± std`` with the std at the mean's decimals (``0.02251 ± 0.00007``, never ``± 7.189e-05``)."""
        text = self.format(mean)
        if self.decimals is None and math.isfinite(mean) and mean != 0 and "e" not in text:
            decimals = max(0, 3 - math.floor(math.log10(abs(mean))))  # the 4 significant digits of the mean
            return f"{text} ± {std:.{decimals}f}" if math.isfinite(std) else f"{text} ± nan"
        return f"{text} ± {self.format(std)}"

    def score(self, recovery: Recovery) -> float:
        """This metric of one recovery, over the region it names."""
        if self.compute is None:
            raise ValueError(f"metric {self.name!r} needs {self.needs!r}: its task computes it, not a recovery")
        return float(self.compute(recovery, self.region))


def unregistered_metric(name: str) -> Metric:
    """What the report assumes of a metric found in a table but not registered here (e.g. a plug-in's,
    not loaded): an error, lower is better, shown with 4 significant digits."""
    return Metric(name, description=f"{name} (not registered in this process)")


def _pixel(key: str) -> Callable[[Recovery, str], float]:
    return lambda recovery, region: recovery.pixel_scores(region)[key]


def _pooled(which: int) -> Callable[[Recovery, str], tuple[np.ndarray, np.ndarray]]:
    """Per-image parts of a pooled error: (sum of abs (0) or squared (1) differences, scored entries)."""
    def parts(recovery: Recovery, region: str) -> tuple[np.ndarray, np.ndarray]:
        sums = recovery.per_image(region)
        return sums[which], sums[2]
    return parts


def _psnr_parts(recovery: Recovery, region: str) -> tuple[np.ndarray, np.ndarray]:
    """PSNR is a mean over the images with a scored entry: (psnr_i or 0, 1 or 0)."""
    _, sq, count = recovery.per_image(region)
    scored = count > 0
    psnr = np.zeros(len(count))
    psnr[scored] = -10.0 * np.log10(np.maximum(sq[scored] / count[scored], MSE_FLOOR))
    return psnr, scored.astype(np.float64)


for _metric in (
    Metric(MAE, "mean |x - x_hat| on the [0, 1] pixel scale over the scored pixels (x 255: the ABP paper's unit)",
           unit="[0, 1] pixel scale", plot=True, compute=_pixel(MAE), per_image=_pooled(0)),
    Metric(MAE_ALL, "mean |x - x_hat| over every pixel, observed ones included",
           unit="all pixels, [0, 1]", region="all", compute=_pixel(MAE), per_image=_pooled(0)),
    Metric(MSE, "mean (x - x_hat)^2 on the [0, 1] scale over the scored pixels", unit="[0, 1] pixel scale",
           compute=_pixel(MSE), per_image=_pooled(1)),
    Metric(PSNR, "mean over images of 10 log10(1 / mse_i), in dB (100 dB for a perfect recovery)",
           higher_is_better=True, unit="dB", decimals=2, compute=_pixel(PSNR), per_image=_psnr_parts),
):
    register_metric(_metric)
