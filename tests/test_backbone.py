"""The shared backbone: every supported size and channel count, its mirror, clear errors."""

from __future__ import annotations

import pytest
import torch

from genbench.backbone import SUPPORTED_SIZES, ConvTrunk, Generator, recalibrate_batchnorm


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", SUPPORTED_SIZES)
def test_generator_and_trunk_shapes(size, channels):
    shape = (channels, size, size)
    g = Generator(latent_dim=5, image_shape=shape, width=4).eval()
    x = g(torch.randn(3, 5))
    assert x.shape == (3, *shape) and x.abs().max() <= 1  # tanh output
    trunk = ConvTrunk(shape, out_features=7, width=4, in_channels=channels + 1).eval()
    assert trunk(torch.randn(3, channels + 1, size, size)).shape == (3, 7)


@pytest.mark.parametrize("shape, match", [
    ((1, 12, 12), "supports square images of size"),
    ((1, 28, 32), "supports square images of size"),
    ((2, 28, 28), "1 or 3 channels"),
])
def test_unsupported_shapes_raise(shape, match):
    with pytest.raises(ValueError, match=match):
        Generator(4, shape)


def test_recalibrated_batchnorm_matches_train_mode_statistics():
    g = Generator(latent_dim=3, image_shape=(1, 8, 8), width=4)
    z = torch.randn(64, 3)
    with torch.no_grad():
        g.train()
        expected = g(z)  # batch statistics of exactly these inputs
    g.eval()
    with torch.no_grad():
        stale = (g(z) - expected).abs().max()  # running statistics of one step: far off
    recalibrate_batchnorm(g, z, batch_size=64)
    with torch.no_grad():
        fresh = (g(z) - expected).abs().max()  # only the unbiased-variance factor n / (n - 1) differs
    assert fresh < 0.02 and fresh < stale / 5, (fresh, stale)
