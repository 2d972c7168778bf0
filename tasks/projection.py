"""Compressed sensing: recover images from K random projections onto white-noise images.

Each variant ``k-<K>`` observes y = A vec(x) with a :class:`~genbench.operators.RandomProjection`
(K rows of N(0, 1/K) noise). The matrix is drawn once per (variant, seed) and shared by the
training, test and negative observations of the run, as in the ABP paper ("learning from indirect
data") and CSGM (Bora et al., ICML 2017), whose MNIST sweep ran K from 10 to 750.

Both protocols run: ``clean-train`` (a model fitted on clean images recovers test images from
their projections) and ``learn-from-corrupted`` (the model sees only the projections of the
training images). Note: with one matrix shared by all images, the observations carry nothing
about the null space of A; a model that learns only from them can fill that space only from its
prior (its architecture), never from the data.

Scores: ``mae``, ``mse``, ``psnr`` over the whole image.

Parameter (``--set task.projection.ks=[...]``): ``ks``, the numbers of projections, each in
1..pixels; ``null`` picks by image size: 20, 50, 100, 200 on 28x28, 100, 300, 1000 on 64x64 RGB,
else the same fractions of the pixels as on 28x28.
"""

from __future__ import annotations

import math

from genbench.operators import ImageShape, RandomProjection
from genbench.registry import register_task
from genbench.task import CLEAN_TRAIN, LEARN_FROM_CORRUPTED, RecoveryTask, Variant, number_list

#: K of the ABP paper's and CSGM's experiments, by (channels, side)
PAPER_KS = {(1, 28): (20, 50, 100, 200), (3, 64): (100, 300, 1000)}


def default_ks(image_shape: ImageShape) -> tuple[int, ...]:
    """Numbers of projections for images of this shape."""
    c, h, w = image_shape
    if h == w and (c, h) in PAPER_KS:
        return PAPER_KS[(c, h)]
    pixels = c * h * w
    return tuple(sorted({max(1, round(pixels * k / 784)) for k in PAPER_KS[(1, 28)]}))


@register_task("projection")
class Projection(RecoveryTask):
    """Recovery from K random projections; scored over the whole image."""

    name = "projection"
    default_params = {"ks": None}

    def variants(self, image_shape: ImageShape) -> list[Variant]:
        ks = self.params["ks"]
        ks = list(default_ks(image_shape)) if ks is None else number_list(ks, "task.projection.ks", int)
        if not ks:
            raise ValueError("task.projection.ks is empty: give at least one number of projections")
        pixels = math.prod(image_shape)
        for k in ks:
            if not 1 <= k <= pixels:
                raise ValueError(f"task.projection.ks: K must be in 1..{pixels} (the pixels of a "
                                 f"{tuple(image_shape)} image), got {k}; set others with "
                                 f"--set 'task.projection.ks=[...]'")
        both = (CLEAN_TRAIN, LEARN_FROM_CORRUPTED)
        return [Variant(f"k-{k}", _projection(k), protocols=both, level=k, level_name="projections K")
                for k in ks]


def _projection(k: int):
    return lambda shape, seed: RandomProjection(k=k, image_shape=shape, seed=seed)
