"""Inpainting: recover images of which some pixels were occluded.

Two kinds of occlusion, each a :class:`~genbench.operators.PixelMask` or
:class:`~genbench.operators.BlockMask` (the variant is a parameter, not a class):

- ``salt-pepper-<p>``: every ``cell`` x ``cell`` cell is occluded independently with probability
  ``p`` (the ABP paper's P50/P70/P90; cells of 1 pixel on 28x28 digits, 3x3 on 64x64 faces);
- ``block-<s>``: one ``s`` x ``s`` block per image at a uniform position (the paper's M20/M30 on
  64x64 faces; 10 and 14 pixels on 28x28).

Both protocols run: ``clean-train`` (the model fitted on clean images recovers occluded test
images) and ``learn-from-corrupted`` (the model learns only from the occluded training images;
the recovery of those training images is the paper's table, and occluded test images are
scored too).

Scores: ``mae``, ``mse`` and ``psnr`` over the **occluded** pixels (the paper's recovery error:
mean |x - x_hat| on the [0, 1] scale over the pixels the model never saw), and ``mae_all`` over
every pixel (observed pixels count: a model that changes them pays for it).

Parameters (``--set task.inpainting.<name>=...``):

- ``fractions``: occlusion probabilities of the salt-and-pepper variants, each in (0, 1);
  ``[]`` runs none;
- ``blocks``: block sizes in pixels, each at most the image side; ``null`` picks by image size
  (10 and 14 on 28x28, 20 and 30 on 64x64, else 36% and 50% of the side); ``[]`` runs none;
- ``cell``: salt-and-pepper cell size; ``null`` picks 3 for images of 64 pixels or more, else 1.
"""

from __future__ import annotations

from torch import Tensor

from genbench.metrics import MAE_ALL, PIXEL_METRICS
from genbench.operators import BlockMask, ImageShape, Observations, PixelMask
from genbench.registry import register_task
from genbench.task import CLEAN_TRAIN, LEARN_FROM_CORRUPTED, RecoveryTask, Variant, number_list

#: block sizes of the ABP paper (64x64) and ours for 28x28 digits
PAPER_BLOCKS = {28: (10, 14), 64: (20, 30)}


def default_blocks(side: int) -> tuple[int, ...]:
    """Block sizes for square images of ``side`` pixels (the paper's where it gives them)."""
    if side in PAPER_BLOCKS:
        return PAPER_BLOCKS[side]
    return tuple(sorted({max(1, round(side * 0.36)), max(1, round(side * 0.5))}))


@register_task("inpainting")
class Inpainting(RecoveryTask):
    """Salt-and-pepper and block occlusion; scored on the occluded pixels (and on all pixels)."""

    name = "inpainting"
    metrics = (*PIXEL_METRICS, MAE_ALL)
    default_params = {"fractions": [0.5, 0.7, 0.9], "blocks": None, "cell": None}

    def variants(self, image_shape: ImageShape) -> list[Variant]:
        side = min(image_shape[1:])
        fractions = number_list(self.params["fractions"], "task.inpainting.fractions", float)
        for p in fractions:
            if not 0.0 < p < 1.0:
                raise ValueError(f"task.inpainting.fractions: an occlusion fraction must be in (0, 1), got {p}")
        blocks = self.params["blocks"]
        blocks = list(default_blocks(side)) if blocks is None else number_list(blocks, "task.inpainting.blocks", int)
        for s in blocks:
            if not 1 <= s <= side:
                raise ValueError(f"task.inpainting.blocks: a block of {s} pixels does not fit in "
                                 f"{image_shape[1]}x{image_shape[2]} images (sizes 1..{side})")
        cell = self.params["cell"]
        if cell is None:
            cell = 3 if side >= 64 else 1
        if isinstance(cell, bool) or not isinstance(cell, int) or not 1 <= cell <= side:
            raise ValueError(f"task.inpainting.cell must be an integer in 1..{side}, got {cell!r}")
        if not fractions and not blocks:
            raise ValueError("task.inpainting has no variant: fractions and blocks are both empty")
        both = (CLEAN_TRAIN, LEARN_FROM_CORRUPTED)
        out = [Variant(f"salt-pepper-{p:g}", _pixel_mask(p, cell), protocols=both, level=p,
                       level_name="fraction occluded") for p in fractions]
        out += [Variant(f"block-{s}", _block_mask(s), protocols=both, level=s, level_name="block size",
                        level_unit="px") for s in blocks]
        return out

    def scored_region(self, obs: Observations) -> Tensor | None:
        """The occluded pixels: the paper's recovery error is over what the model never saw."""
        return obs.occluded()


def _pixel_mask(p: float, cell: int):
    return lambda shape, seed: PixelMask(p=p, cell=cell, seed=seed)


def _block_mask(size: int):
    return lambda shape, seed: BlockMask(size=size, seed=seed)
