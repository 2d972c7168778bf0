"""Uncertainty that includes the data: a bootstrap interval over the images of each cell, and, over
seeds, an interval that covers both the seeds and the images.

**Per cell** (``ci_low``/``ci_high`` of a row): the images scored are a sample; resampling them with
replacement ``BOOTSTRAP_DRAWS`` times and recomputing the metric gives its percentile interval
(``LEVEL`` = 95 %). A metric that is a ratio of per-image sums (pooled MAE: sum of per-image absolute
errors over sum of per-image scored-pixel counts; a mean over images: values over ones) declares its
per-image parts (``Metric.per_image``), so one weight matrix serves every metric and the
resampled value is exactly the metric of the resampled images. The draws are seeded from the cell
(never from the random stream the evaluation itself uses: no number of a row changes).
Metrics that are not sums over images (FID, KID, precision/recall, AUROC, a BDMC gap) have none.

**Over seeds** (``ci_low``/``ci_high`` of ``tables/aggregated.csv``, :func:`seed_interval`): the
mean over n seeds of per-seed values v_s, each with a bootstrap standard error se_s (its interval's
half-width / 1.96), between-seed variance s^2 and w = mean se_s^2 (the image-sampling part):

- the split varies with the seed (``data.vary_split``): every seed scores other images, so s^2
  estimates the whole per-seed variance (initialisation, masks, which images were trained and tested
  on); the variance of the mean is max(s^2, w) / n (never below the image part alone, which two seeds
  can underestimate by chance);
- one split for every seed: the seeds score the *same* test images, whose sampling error does not
  average out over seeds: s^2 / n + w.

The interval is mean +- 1.96 sqrt(variance): a normal approximation (with two or three seeds, read it
as a rough guide). With one seed it is the cell's own bootstrap interval.

Example::

    >>> w = bootstrap_weights(n=500, seed=3)            # (BOOTSTRAP_DRAWS, 500) resampling counts
    >>> ratio_interval(abs_i, count_i, w)               # (low, high) of the pooled MAE
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

BOOTSTRAP_DRAWS = 1000
LEVEL = 0.95
_Z = 1.959963984540054  # the standard normal's 97.5 % quantile


def bootstrap_weights(n: int, seed: int, draws: int = BOOTSTRAP_DRAWS) -> np.ndarray:
    """``(draws, n)`` counts: how often each of ``n`` images is drawn in each resample (a multinomial
    with n trials, equal probabilities), from ``numpy``'s generator seeded with ``seed``."""
    if n < 1:
        raise ValueError(f"bootstrap_weights needs at least one image, got n={n}")
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=draws).astype(np.float64)


def ratio_interval(numerator: np.ndarray, denominator: np.ndarray, weights: np.ndarray) -> tuple[float, float]:
    """The ``LEVEL`` percentile interval of ``sum(w * numerator) / sum(w * denominator)`` over the
    resamples in ``weights`` (resamples with a zero denominator are left out)."""
    num = weights @ np.asarray(numerator, dtype=np.float64)
    den = weights @ np.asarray(denominator, dtype=np.float64)
    stats = num[den > 0] / den[den > 0]
    if stats.size == 0 or not np.isfinite(stats).all():
        return math.nan, math.nan
    tail = (1 - LEVEL) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(values: np.ndarray, seed: int) -> tuple[float, float]:
    """The bootstrap interval of the mean of per-image ``values``."""
    values = np.asarray(values, dtype=np.float64)
    return ratio_interval(values, np.ones_like(values), bootstrap_weights(len(values), seed))


def seed_interval(values: Sequence[float], lows: Sequence[float], highs: Sequence[float], *,
                  shared_images: bool = True) -> tuple[float, float]:
    """The interval of the mean of per-seed ``values`` that covers seeds and images (module docstring;
    ``shared_images``: every seed scored the same images). NaN where it cannot be had (one seed and no
    bootstrap interval, or no value)."""
    v, lo, hi = (np.asarray(a, dtype=np.float64) for a in (values, lows, highs))
    if v.size == 1 and math.isfinite(lo[0]) and math.isfinite(hi[0]):
        return float(lo[0]), float(hi[0])  # one seed: its own bootstrap interval
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    half = (hi - lo) / 2
    se = half[np.isfinite(half)] / _Z
    within = float(np.mean(se ** 2)) if se.size else math.nan
    between = float(np.var(v, ddof=1)) if v.size >= 2 else math.nan
    if not math.isfinite(between):  # one seed without an interval of its own, or none at all
        return math.nan, math.nan
    if not math.isfinite(within):  # a metric without per-cell intervals: the seeds' spread alone
        variance = between / v.size
    elif shared_images:
        variance = between / v.size + within
    else:
        variance = max(between, within) / v.size
    width = _Z * math.sqrt(variance)
    mean = float(v.mean())
    return mean - width, mean + width
