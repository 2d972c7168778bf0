"""Held-out reconstruction: does the model explain images, seen and unseen?

The model learns from clean training images (operator :class:`~genbench.operators.Identity`),
then infers z for, and reconstructs, three sets of images: the training images it learned
from (``train``), held-out images of the same data set (``test``) and real out-of-domain images
(``negative``: LFW faces and background patches for digit data). The ABP paper (Han et al.,
AAAI 2017, Sec. 5.2) compares this error for ABP and PCA: a generator that explains the data
well reconstructs ``test`` nearly as well as ``train``, and a good model of digits should
*not* reconstruct faces as well as digits.

Scores: ``mae`` (mean |x - x_hat| on the [0, 1] pixel scale), ``mse`` and ``psnr`` over every
pixel; on the ``negative`` split also ``ood_auroc`` and ``ood_aupr`` (:mod:`genbench.ood`): how well
the per-image reconstruction error tells the out-of-domain images from the test images.
"""

from __future__ import annotations

from genbench.ood import OOD_METRICS, ood_scores
from genbench.operators import Identity, ImageShape
from genbench.registry import register_task
from genbench.task import CLEAN_TRAIN, EvalContext, RecoveryTask, SplitResult, Variant


@register_task("reconstruction")
class Reconstruction(RecoveryTask):
    """Fit on clean training images; reconstruct train, test and negative images."""

    name = "reconstruction"
    splits = {CLEAN_TRAIN: ("train", "test", "negative")}

    def variants(self, image_shape: ImageShape) -> list[Variant]:
        return [Variant("identity", lambda shape, seed: Identity(seed), protocols=(CLEAN_TRAIN,))]

    def metrics_for(self, split: str) -> tuple[str, ...]:
        return self.metric_names() + (OOD_METRICS if split == "negative" else ())

    def evaluate(self, ctx: EvalContext, split: str) -> SplitResult:
        result = super().evaluate(ctx, split)
        _, x, x_hat = result.recovery
        error = (x - x_hat).abs().flatten(1).mean(1) / 2  # per-image mae on [0, 1]: larger = less familiar
        ctx.cache[f"error/{split}"] = error
        if split == "negative":
            result.scores.update(ood_scores(ctx.cache["error/test"], error))
        return result
