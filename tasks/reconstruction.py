"""Held-out reconstruction: does the model explain images, seen and unseen?

The model learns from clean training images (operator :class:`~genbench.operators.Identity`),
then infers z for, and reconstructs, three sets of images: the training images it learned
from (``train``), held-out images of the same data set (``test``) and real out-of-domain images
(``negative``: LFW faces and background patches for digit data). The ABP paper (Han et al.,
AAAI 2017, Sec. 5.2) compares this error for ABP and PCA: a generator that explains the data
well reconstructs ``test`` nearly as well as ``train``, and a good model of digits should
*not* reconstruct faces as well as digits.

Scores: ``mae`` (mean |x - x_hat| on the [0, 1] pixel scale), ``mse`` and ``psnr`` over every
pixel.
"""

from __future__ import annotations

from genbench.operators import Identity, ImageShape
from genbench.registry import register_task
from genbench.task import CLEAN_TRAIN, RecoveryTask, Variant


@register_task("reconstruction")
class Reconstruction(RecoveryTask):
    """Fit on clean training images; reconstruct train, test and negative images."""

    name = "reconstruction"
    splits = {CLEAN_TRAIN: ("train", "test", "negative")}

    def variants(self, image_shape: ImageShape) -> list[Variant]:
        return [Variant("identity", lambda shape, seed: Identity(seed), protocols=(CLEAN_TRAIN,))]
